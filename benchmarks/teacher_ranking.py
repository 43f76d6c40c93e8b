"""Did the guideline pick the teacher of the best student? One table over finished studies.

    python benchmarks/teacher_ranking.py runs/synthetic runs/quickstart runs/zoo_mnist1d ...

For every (study folder, student loss): the kind with the lowest held-out NLL (the
guideline), the kind whose student is the most accurate, the paired difference of their
students and the verdict (`bayesdistill.reports.predictors`), Spearman's ρ of the guideline
and the teacher-side measurement with the highest ρ. Then, per measurement, in how many
cases its pick was the best student or within the 95 % interval of the best, and its worst
miss. Reads the run folders only (`bayesdistill.reports.collect`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from bayesdistill.reports import collect
from bayesdistill.reports.advice import GUIDELINE, Predictor, teacher_kinds
from bayesdistill.reports.predictors import (
    PERCENT,
    PredictorCheck,
    Verdict,
    predictor_checks,
    student_accuracy,
)
from bayesdistill.reports.stats import compare_paired


def _rho(check: PredictorCheck) -> str:
    c = check.correlation
    if math.isnan(c.rho):
        return "undefined"
    interval = "" if c.interval is None else f" [{c.interval[0]:+.2f}, {c.interval[1]:+.2f}]"
    return f"{c.rho:+.2f}{interval}"


def _difference(check: PredictorCheck) -> str:
    c = check.pick_vs_best
    if c is None:
        return "—"
    interval = "" if c.interval is None else f" [{c.interval[0]:+.2f}, {c.interval[1]:+.2f}]"
    return f"{c.mean:+.2f}{interval}"


def chance(results, check: PredictorCheck, loss: str) -> int:
    """How many of the check's kinds have a student that is the best or within the 95 %
    interval of the best: what a pick at random hits with probability count / kinds."""
    student = student_accuracy(results, check.kinds, loss)
    best = student[check.best]
    hits = 0
    for kind in check.kinds:
        if kind == check.best:
            hits += 1
            continue
        c = compare_paired([PERCENT * (student[kind][s] - best[s]) for s in check.seeds])
        hits += not c.excludes_zero
    return hits


def ranking_table(folders: list[Path]) -> str:
    """The markdown table of every (study, loss) and the per-measurement summary."""
    lines = [
        "| study | loss | kinds (best or within) | guideline picks | best student | picked − best, "
        "pp [95 %] | verdict | ρ, held-out NLL [95 %] | highest ρ | measurements whose pick is "
        "best/within |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    tally: dict[Predictor, list[PredictorCheck]] = {}
    expected = 0.0
    for folder in folders:
        results = collect(folder)
        specs = {x.get("label") or x["name"]: x for x in results.config["student"]["losses"]}
        for loss in results.losses:
            only = specs.get(loss, {}).get("teachers")
            checks = predictor_checks(results, loss, only)
            guideline = next((c for c in checks if c.predictor is GUIDELINE), None)
            if guideline is None:
                continue
            for c in checks:
                tally.setdefault(c.predictor, []).append(c)
            ranked = [c for c in checks if not math.isnan(c.correlation.rho)]
            top = max(ranked, key=lambda c: c.correlation.rho) if ranked else None
            good = ", ".join(c.predictor.title for c in checks if c.verdict.good)
            hits = chance(results, guideline, loss)
            expected += hits / len(guideline.kinds)
            lines.append(
                f"| {folder.name} | `{loss}` | {len(teacher_kinds(results, only))} ({hits}) | "
                f"`{guideline.pick}` | `{guideline.best}` | {_difference(guideline)} | "
                f"{guideline.verdict.value} | {_rho(guideline)} | "
                + ("—" if top is None else f"{top.predictor.title} ({top.correlation.rho:+.2f})")
                + f" | {good or 'none'} |"
            )
    cases = len(tally.get(GUIDELINE, []))
    lines += [
        "",
        f"A kind picked at random is the best or within in {expected:.1f} of {cases} cases on "
        "average (the count in brackets over the kinds, summed over cases).",
        "",
        "| teacher measurement | cases best or within | worst miss, pp [95 %] |",
        "|---|---|---|",
    ]
    for predictor, checks in tally.items():
        good = sum(c.verdict.good for c in checks)
        misses = [c for c in checks if c.verdict is Verdict.WORSE]
        worst = min(misses, key=lambda c: c.pick_vs_best.mean) if misses else None
        miss = "—" if worst is None else f"{_difference(worst)} (`{worst.pick}` vs `{worst.best}`)"
        lines.append(f"| {predictor.title} | {good} of {len(checks)} | {miss} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="finished study folders")
    print(ranking_table(parser.parse_args().folders), end="")


if __name__ == "__main__":
    main()

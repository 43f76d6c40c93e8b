"""Paired differences between teacher kinds in a study: table cells and generated findings.

A difference is student(kind) − student(baseline) per seed, in percentage points for
accuracy; `bayesdistill.reports.stats` turns the per-seed differences into a mean, a 95 %
interval, wins, p-values and the seeds needed. Prose only calls a difference a finding when
its interval excludes 0 (issue 11); every other difference is reported as not resolved, with
the number of seeds that would resolve an effect of its size at its spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bayesdistill.reports.collect import NO_TEACHER, REFERENCE_TEACHER, StudyResults
from bayesdistill.reports.stats import (
    CONFIDENCE,
    POWER,
    IntervalMethod,
    PairedComparison,
    compare_paired,
)

EXCLUDES_ZERO_MARK = "*"
"""Appended to a difference whose interval excludes 0."""

PERCENT = 100.0


@dataclass(frozen=True)
class Difference:
    """One paired comparison of a study: student(kind) − student(baseline) under one loss."""

    kind: str
    baseline: str
    comparison: PairedComparison


def seed_differences(
    results: StudyResults,
    kind: str,
    baseline: str,
    loss: str | None = None,
    metric: str = "accuracy",
    scale: float = PERCENT,
) -> list[float]:
    """``scale · (student(kind) − student(baseline))`` for every seed where both finished."""
    out = []
    for seed in results.seeds:
        a = results.value("student", kind, seed, metric, loss)
        b = results.value("student", baseline, seed, metric, loss)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            out.append(scale * (a - b))
    return out


def paired_comparison(
    results: StudyResults,
    kind: str,
    baseline: str,
    loss: str | None = None,
    metric: str = "accuracy",
    scale: float = PERCENT,
    interval: IntervalMethod | str = IntervalMethod.T,
    bootstrap_seed: int = 0,
) -> PairedComparison | None:
    """Statistics of the per-seed differences; None when no seed has both students.

    With ``interval="bootstrap"`` each comparison draws from its own generator seeded with
    ``bootstrap_seed``, so a cell does not depend on which other cells were computed.
    """
    diffs = seed_differences(results, kind, baseline, loss, metric, scale)
    if not diffs:
        return None
    return compare_paired(diffs, interval, generator=np.random.default_rng(bootstrap_seed))


def format_difference(comparison: PairedComparison | None, digits: int = 2) -> str:
    """``+1.14 [+0.32, +1.96] (5/5, p=0.0625)*``: mean [interval] (wins/n, Wilcoxon p), with
    `EXCLUDES_ZERO_MARK` when the interval excludes 0; ``—`` when there is no pair."""
    if comparison is None:
        return "—"
    c = comparison
    text = f"{c.mean:+.{digits}f}"
    if c.interval is not None:
        text += f" [{c.interval[0]:+.{digits}f}, {c.interval[1]:+.{digits}f}]"
    p = "" if c.p_wilcoxon is None or c.n < 2 else f", p={c.p_wilcoxon:.3g}"
    text += f" ({c.wins}/{c.n}{p})"
    return text + (EXCLUDES_ZERO_MARK if c.excludes_zero else "")


def baselines(results: StudyResults, kinds: list[str]) -> tuple[str | None, str | None]:
    """The one-hot student's kind and the deterministic teacher's kind among ``kinds``."""
    onehot = next((k for k in kinds if results.kind_names[k] == NO_TEACHER), None)
    reference = next((k for k in kinds if results.kind_names[k] == REFERENCE_TEACHER), None)
    return onehot, reference


def loss_differences(
    results: StudyResults,
    loss: str,
    kinds: list[str],
    interval: IntervalMethod | str = IntervalMethod.T,
    bootstrap_seed: int = 0,
) -> list[Difference]:
    """Student accuracy differences of one loss: every distilled kind against the one-hot
    student, then every other kind against the deterministic teacher's student."""
    onehot, reference = baselines(results, kinds)
    out = []
    for baseline in (onehot, reference):
        if baseline is None:
            continue
        for kind in kinds:
            if kind in (baseline, onehot):
                continue
            c = paired_comparison(
                results, kind, baseline, loss, interval=interval, bootstrap_seed=bootstrap_seed
            )
            if c is not None:
                out.append(Difference(kind, baseline, c))
    return out


def findings(differences: list[Difference], loss: str) -> list[str]:
    """Markdown lines: the differences whose interval excludes 0, then the unresolved ones
    with the seeds an effect of their size would need."""
    level = f"{100 * CONFIDENCE:g} %"
    lines = [f"### Findings for `{loss}` (student test accuracy, final epoch)", ""]
    if not differences:
        return [*lines, "No paired difference: no seed has two finished students.", ""]
    resolved = [d for d in differences if d.comparison.excludes_zero]
    unresolved = [d for d in differences if not d.comparison.excludes_zero]
    if resolved:
        lines.append(f"Differences whose {level} interval excludes 0:")
        lines += [f"- {_name(d)}: {_resolved_text(d.comparison)}" for d in resolved]
    else:
        lines.append(f"No difference is resolved: every {level} interval includes 0.")
    tested = sum(d.comparison.interval is not None for d in differences)
    if tested > 1:
        lines += ["", _chance_text(tested)]
    if unresolved:
        lines += ["", f"Not resolved (the {level} interval includes 0, or there is one seed):"]
        lines += [f"- {_name(d)}: {_unresolved_text(d.comparison)}" for d in unresolved]
    return [*lines, ""]


def _chance_text(tested: int) -> str:
    """How many of ``tested`` intervals would exclude 0 by chance if no difference were
    real (no correction for multiple comparisons is applied to the intervals)."""
    expected = (1.0 - CONFIDENCE) * tested
    return (
        f"{tested} intervals in this list: if no teacher kind differed, about {expected:.1f} of "
        f"them would exclude 0 by chance ({100 * CONFIDENCE:g} % intervals, not corrected for "
        "multiple comparisons), so a single borderline one is weak evidence."
    )


def _name(d: Difference) -> str:
    return f"`{d.kind}` − `{d.baseline}`"


def _interval_text(c: PairedComparison) -> str:
    if c.interval is None:
        return ""
    return f" [{c.interval[0]:+.2f}, {c.interval[1]:+.2f}]"


def _p_text(c: PairedComparison) -> str:
    if c.p_wilcoxon is None or c.p_sign is None:
        return ""
    return f"; Wilcoxon p = {c.p_wilcoxon:.3g}, sign test p = {c.p_sign:.3g}"


def _resolved_text(c: PairedComparison) -> str:
    direction = "higher" if c.mean > 0 else "lower"
    return (
        f"{c.mean:+.2f} pp{_interval_text(c)}, {direction} in "
        f"{c.wins if c.mean > 0 else c.losses}/{c.n} seeds{_p_text(c)}"
    )


def _unresolved_text(c: PairedComparison) -> str:
    text = f"{c.mean:+.2f} pp{_interval_text(c)} ({c.wins}/{c.n} seeds positive{_p_text(c)})"
    if math.isnan(c.seeds_needed):
        return text + "; a spread, and so a seed count, needs at least 2 seeds"
    if math.isinf(c.seeds_needed):
        return text + "; the mean difference is 0, which no number of seeds resolves"
    needed = int(c.seeds_needed)
    text += (
        f"; resolving {abs(c.mean):.2f} pp at this spread (sd {c.sd:.2f} pp) takes about "
        f"{needed} seeds ({100 * POWER:g} % power)"
    )
    if needed <= c.n:
        text += ", no more than were run: the normal approximation behind that count is "
        text += "optimistic at so few seeds"
    return text

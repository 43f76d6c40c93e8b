"""results.csv (one row per model and seed) and results.md (mean ± std, paired differences
with 95 % intervals and p-values, findings, accuracy as papers report it)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

import numpy as np

from bayesdistill.io import write_text
from bayesdistill.metrics import ECE_BINS, NLL_EPS
from bayesdistill.metrics.curves import FLUCTUATION_TAIL, FLUCTUATION_WINDOW
from bayesdistill.reports.collect import CSV_COLUMNS, NO_TEACHER, StudyResults
from bayesdistill.reports.differences import (
    EXCLUDES_ZERO_MARK,
    baselines,
    findings,
    format_difference,
    loss_differences,
    paired_comparison,
)
from bayesdistill.reports.predictors import predictor_section
from bayesdistill.reports.stats import (
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    IntervalMethod,
    interval_method,
)


def csv_text(results: StudyResults) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in results.rows:
        writer.writerow({k: _csv_value(row.get(k, "")) for k in CSV_COLUMNS})
    return buffer.getvalue()


def _csv_value(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def mean_std(values: Sequence[float | None], scale: float = 1.0, digits: int = 2) -> str:
    """``"m ± s"`` over the finite values (sample std, ddof=1); ``—`` when there are none."""
    finite = [scale * v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "—"
    mean = float(np.mean(finite))
    if len(finite) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(finite, ddof=1)):.{digits}f}"


def paired(
    results: StudyResults,
    kind: str,
    baseline: str,
    loss: str | None = None,
    metric: str = "accuracy",
    scale: float = 100.0,
    interval: IntervalMethod | str = IntervalMethod.T,
    bootstrap_seed: int = 0,
) -> str:
    """Student(kind) − student(baseline) over seeds as ``mean [lo, hi] (wins/n, p=…)``, with
    a trailing ``*`` when the 95 % interval excludes 0 (see `format_difference`)."""
    return format_difference(
        paired_comparison(results, kind, baseline, loss, metric, scale, interval, bootstrap_seed)
    )


def markdown(
    results: StudyResults,
    interval: IntervalMethod | str = IntervalMethod.T,
    bootstrap_seed: int = 0,
) -> str:
    """The study's tables: per loss, each teacher kind's teacher next to its student, the
    accuracy as papers report it, and the findings (differences whose interval excludes 0).

    ``interval`` picks the paired-difference interval: ``"t"`` (paired t, the default) or
    ``"bootstrap"`` (percentile bootstrap, resampled from a generator seeded with
    ``bootstrap_seed``).
    """
    method = interval_method(interval)
    seeds = results.seeds
    student = results.config["student"]
    subset = student.get("subset")
    lines = [
        f"# Study: {results.data.get('dataset', '?')}",
        "",
        f"- data: {results.data.get('n_train', '?')} train / {results.data.get('n_val', '?')} val / "
        f"{results.data.get('n_test', '?')} test examples, {results.data.get('num_classes', '?')} classes",
        f"- teacher network: `{results.config['teacher']['model']['name']}` "
        f"({_options_text(results.config['teacher']['model'])}); student: "
        f"`{student['model']['name']}` ({_options_text(student['model'])}) trained on "
        + (f"a per-class subset ({_subset_text(subset)})" if subset else "the full training set"),
        f"- seeds: {seeds}; each seed shares one teacher network, one student initialisation "
        "and one student training subset across teacher kinds, so differences are paired",
        "",
        "Test-set metrics, mean ± std over seeds. Accuracy in %, fluctuation in percentage "
        "points. The one-hot student (`none`) trains with `onehot_ce` and appears in every table.",
        "",
    ]
    if len(results.losses) > 1:
        lines += [*_summary_table(results), ""]
    distilled: dict[str, list[str] | None] = {}  # loss → the kinds it distils from
    for loss in results.losses:
        spec = next(
            (x for x in student["losses"] if (x.get("label") or x.get("name")) == loss),
            {"name": loss},
        )
        distilled[loss] = spec.get("teachers")
        kinds = _loss_kinds(results, spec.get("teachers"))
        lines += [f"## Student loss `{loss}`: {_loss_text(spec)}", ""]
        lines += _loss_table(results, loss, kinds, method, bootstrap_seed)
        if any(key[0] == loss for key in results.choices):
            lines += ["", *_tuning_table(results, loss, kinds)]
        lines += ["", *_literature_table(results, loss, kinds), ""]
        lines += findings(loss_differences(results, loss, kinds, method, bootstrap_seed), loss)
    distances = _teacher_distance_table(results, seeds)
    if distances:
        lines += [distances, ""]
    lines += predictor_section(results, distilled, bootstrap_seed=bootstrap_seed)
    lines.append(
        "Conventions: ECE uses "
        f"{ECE_BINS} equal-width top-label confidence bins (lo, hi], L1 (Guo et al. 2017); NLL "
        f"clamps probabilities at {NLL_EPS:g}; Brier (in results.csv) is Σ_k (p_k − e_y,k)². "
        f"Fluctuation is the std of the test-accuracy curve's residual around its centred "
        f"{FLUCTUATION_WINDOW}-point moving average over the last {int(FLUCTUATION_TAIL * 100)}% "
        "of evaluation points. "
        + _difference_conventions(results, method)
        + " Best-by-validation accuracy is the test accuracy at the evaluation point with the "
        "highest validation accuracy (ties: the earliest); best-by-test accuracy is the highest "
        "test accuracy over evaluation points, the number KD papers usually print, which is "
        "selected on the test set and so biased upwards; top-5 accuracy counts a label as "
        "correct when fewer than 5 other classes are at least as probable (shown with ≥ 10 "
        "classes)."
    )
    if not any(r["role"] == "student" for r in results.rows):
        lines.append("\n(no student has finished yet)")
    return "\n".join(lines) + "\n"


def _summary_table(results: StudyResults) -> list[str]:
    """Student test accuracy by teacher kind (rows) and loss (columns), with the teachers'
    own accuracy and NLL: the whole study at a glance."""
    specs = {x.get("label") or x.get("name"): x for x in results.config["student"]["losses"]}
    seeds = results.seeds
    header = ["teacher kind", "teacher acc", "teacher NLL"]
    header += [f"student acc, `{loss}`" for loss in results.losses]
    lines = [
        "## Summary: student test accuracy (%) by teacher kind and loss",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for kind in results.kinds:
        onehot = results.kind_names[kind] == NO_TEACHER
        cells = ["`none` (one-hot)" if onehot else f"`{kind}`"]
        if onehot:
            cells += ["—", "—"]
        else:
            cells += [
                mean_std([results.value("teacher", kind, s, "accuracy") for s in seeds], 100, 2),
                mean_std([results.value("teacher", kind, s, "nll") for s in seeds], 1, 3),
            ]
        for loss in results.losses:
            only = specs.get(loss, {}).get("teachers")
            if not onehot and only is not None and kind not in only:
                cells.append("")
                continue
            values = [results.value("student", kind, s, "accuracy", loss) for s in seeds]
            cells.append(mean_std(values, 100, 2))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _loss_text(spec: dict[str, object]) -> str:
    """``kd(alpha=0.9, temperature=4.0)``, or a composite's weighted sum of its terms, or
    a tuned loss with its grid."""
    terms = spec.get("terms")
    if spec.get("tune"):
        grid = "; ".join(
            f"{k} ∈ {{{', '.join(str(v) for v in values)}}}"
            for k, values in spec["tune"].items()  # type: ignore[attr-defined]
        )
        fixed = _options_text(spec)
        return (
            f"{spec['name']}({fixed}{', ' if fixed else ''}tuned per teacher kind over {grid}, "
            f"by {spec.get('select_by', 'val_accuracy')} averaged over seeds)"
        )
    if not terms:
        return f"{spec['name']}({_options_text(spec)})"
    parts = []
    for term in terms:  # type: ignore[attr-defined]
        options = {k: v for k, v in term.items() if k != "weight"}
        parts.append(f"{term.get('weight', 1.0):g}·{term['name']}({_options_text(options)})")
    return "weighted sum " + " + ".join(parts)


def _difference_conventions(results: StudyResults, method: IntervalMethod) -> str:
    level = f"{100 * CONFIDENCE:g} %"
    how = (
        "paired t, mean ± t₀.₉₇₅,ₙ₋₁·sd/√n"
        if method is IntervalMethod.T
        else f"percentile bootstrap of the mean, {BOOTSTRAP_RESAMPLES} resamples; narrower "
        "than the t interval with few seeds, so it calls more differences findings"
    )
    n = len(results.seeds)
    return (
        "Δ columns give paired differences of student test accuracy in percentage points: "
        f"mean over seeds [{level} interval, {how}] (seeds where the difference is positive / "
        "seeds with both students, two-sided Wilcoxon signed-rank p with zero differences "
        f"dropped); a trailing {EXCLUDES_ZERO_MARK} marks a difference whose interval excludes "
        "0, and only those are called findings. With n seeds neither the Wilcoxon nor the "
        f"exact sign test can give p below 2/2ⁿ ({2 / 2**n:.3g} at the {n} seeds here)."
    )


def _loss_kinds(results: StudyResults, only: list[str] | None) -> list[str]:
    """The one-hot student and every teacher kind a loss distils from."""
    return [
        k for k in results.kinds if only is None or k in only or results.kind_names[k] == NO_TEACHER
    ]


def _loss_table(
    results: StudyResults,
    loss: str,
    kinds: list[str],
    method: IntervalMethod = IntervalMethod.T,
    bootstrap_seed: int = 0,
) -> list[str]:
    """Rows of the one-hot student and of every teacher kind the loss distils from."""
    seeds = results.seeds
    onehot, reference = baselines(results, kinds)
    has_bcp = bool(results.data.get("has_bcp"))
    header = ["teacher kind", "teacher acc", "teacher NLL", "teacher ECE"]
    header += ["teacher ‖p−p*‖"] if has_bcp else []
    header += ["student acc", "student NLL", "student ECE", "student fluct."]
    header += ["student ‖p−p*‖"] if has_bcp else []
    level = f"{100 * CONFIDENCE:g} %"
    header += [f"Δacc vs one-hot [{level}] (wins, p)"] if onehot else []
    header += [f"Δacc vs deterministic [{level}] (wins, p)"] if reference else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for kind in kinds:

        def col(
            role: str, metric: str, scale: float = 1.0, digits: int = 3, kind: str = kind
        ) -> str:
            values = [results.value(role, kind, s, metric, loss) for s in seeds]
            return mean_std(values, scale, digits)

        is_onehot = kind == onehot
        cells = ["`none` (one-hot)" if is_onehot else f"`{kind}`"]
        if is_onehot:
            cells += ["—"] * (4 if has_bcp else 3)
        else:
            cells += [
                col("teacher", "accuracy", 100, 2),
                col("teacher", "nll"),
                col("teacher", "ece"),
            ]
            cells += [col("teacher", "l2_bcp")] if has_bcp else []
        cells += [
            col("student", "accuracy", 100, 2),
            col("student", "nll"),
            col("student", "ece"),
            col("student", "fluctuation", 1, 2),
        ]
        cells += [col("student", "l2_bcp")] if has_bcp else []

        def diff(baseline: str, kind: str = kind) -> str:
            return paired(
                results, kind, baseline, loss, interval=method, bootstrap_seed=bootstrap_seed
            )

        if onehot:
            cells.append("—" if is_onehot else diff(onehot))
        if reference:
            cells.append("—" if is_onehot or kind == reference else diff(reference))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _literature_table(results: StudyResults, loss: str, kinds: list[str]) -> list[str]:
    """Accuracy as KD papers report it: final, best by validation, best by test, top-5."""
    seeds = results.seeds
    has_top5 = any(r.get("top5_accuracy") not in (None, "") for r in results.rows)

    def col(role: str, kind: str, metric: str) -> str:
        return mean_std([results.value(role, kind, s, metric, loss) for s in seeds], 100, 2)

    header = ["teacher kind", "teacher acc"]
    header += ["teacher top-5"] if has_top5 else []
    header += [
        "student acc, final epoch",
        "student acc, best by validation",
        "student acc, best by test (selected on the test set)",
    ]
    header += ["student top-5, final epoch"] if has_top5 else []
    lines = [
        f"Accuracy (%) as papers report it, student loss `{loss}`:",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for kind in kinds:
        if results.kind_names[kind] == NO_TEACHER:
            cells = ["`none` (one-hot)", "—"] + (["—"] if has_top5 else [])
        else:
            cells = [f"`{kind}`", col("teacher", kind, "accuracy")]
            cells += [col("teacher", kind, "top5_accuracy")] if has_top5 else []
        cells += [
            col("student", kind, "accuracy"),
            col("student", kind, "best_val_accuracy"),
            col("student", kind, "best_test_accuracy"),
        ]
        cells += [col("student", kind, "top5_accuracy")] if has_top5 else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _options_text(spec: dict[str, object]) -> str:
    return ", ".join(
        f"{k}={v}"
        for k, v in spec.items()
        if k not in ("name", "label", "teachers", "terms", "tune", "select_by") and v is not None
    )


def _tuning_table(results: StudyResults, loss: str, kinds: list[str]) -> list[str]:
    """Each teacher kind's grid point chosen on validation data, and every point's score."""
    lines = [
        "Chosen on the validation set (never the test set) for each teacher kind; the "
        "table above reports the test metrics of these settings. Every grid point's mean "
        "validation score over seeds is in tuning.csv's rows.",
        "",
        "| teacher kind | chosen | mean validation score of each grid point |",
        "|---|---|---|",
    ]
    for kind in kinds:
        choice = results.choices.get((loss, kind))
        if choice is None:
            continue
        scores = ", ".join(f"{c.split('@', 1)[-1]}: {v:.4f}" for c, v in choice.scores.items())
        lines.append(f"| `{kind}` | {choice.describe()} ({choice.metric}) | {scores} |")
    return lines


def _teacher_distance_table(results: StudyResults, seeds: list[int]) -> str:
    kinds = [k for k in results.kinds if results.kind_names[k] != NO_TEACHER]
    if not kinds:
        return ""

    def cell(kind: str, metric: str, digits: int) -> str:
        return mean_std([results.value("teacher", kind, s, metric) for s in seeds], 1, digits)

    out = [
        "What the students learn from: each teacher's predictions on the training set (where "
        "it was fitted, so usually over-confident), and how far its test predictions are "
        "from the deterministic teacher's (mean total variation ½‖p − p_det‖₁):",
        "",
        "| teacher kind | train NLL | train ECE | target entropy (nats) | TV to deterministic (test) |",
        "|---|---|---|---|---|",
    ]
    out += [
        f"| `{k}` | {cell(k, 'train_nll', 3)} | {cell(k, 'train_ece', 3)} | "
        f"{cell(k, 'target_entropy', 3)} | {cell(k, 'tv_to_deterministic', 4)} |"
        for k in kinds
    ]
    return "\n".join(out)


def _subset_text(subset: dict[str, object]) -> str:
    if subset.get("per_class") is not None:
        return f"{subset['per_class']} per class"
    return f"{100 * float(subset['fraction']):g}% of each class"  # type: ignore[arg-type]


def write_tables(
    results: StudyResults,
    interval: IntervalMethod | str = IntervalMethod.T,
    bootstrap_seed: int = 0,
) -> tuple[str, str]:
    """Write results.csv and results.md into the study folder; returns their contents."""
    csv_content = csv_text(results)
    md_content = markdown(results, interval, bootstrap_seed)
    write_text(results.folder / "results.csv", csv_content)
    write_text(results.folder / "results.md", md_content)
    if results.candidate_rows:
        write_text(results.folder / "tuning.csv", tuning_csv_text(results))
    return csv_content, md_content


def tuning_csv_text(results: StudyResults) -> str:
    """Every grid point's students: the test metrics of results.csv plus the validation
    metrics the choice was made on, and the grid point's values."""
    columns = ["tuned_from", *CSV_COLUMNS[:-1], "val_accuracy", "val_nll", "tuned_values"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in results.candidate_rows:
        values = {k: _csv_value(row.get(k, "")) for k in columns}
        values["tuned_values"] = ", ".join(f"{k}={v}" for k, v in row["tuned_values"].items())
        writer.writerow(values)
    return buffer.getvalue()

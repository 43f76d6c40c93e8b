"""Read a study's run folders into rows and curves (reports never touch live objects).

Accuracy comes three ways (REFERENCE.md §9): ``accuracy`` is the final evaluation point's
test accuracy (what the run ends with); ``best_val_accuracy`` is the test accuracy at the
evaluation point with the highest validation accuracy (ties: the earliest), at epoch
``best_val_epoch``; ``best_test_accuracy`` is the highest test accuracy over evaluation points,
the number KD papers usually print, selected on the test set. Both best-epoch numbers are
read from the run's ``metrics.jsonl``: a student's own, and for the deterministic teacher
the teacher network's (the deterministic teacher *is* that network). Other teacher kinds are
built from the final network, so they have no best epoch of their own and those cells stay
empty. ``top5_accuracy`` (final) is present where the data have at least 10 classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bayesdistill.config.loading import load_config
from bayesdistill.io import JsonLines, load_torch, read_json
from bayesdistill.layout import ONE_HOT, RunLayout
from bayesdistill.metrics import best_point, mean_total_variation
from bayesdistill.reports.tuning import HIGHER_IS_BETTER, Choice, choose

METRICS = ("accuracy", "top5_accuracy", "nll", "ece", "brier")
NO_TEACHER = ONE_HOT
REFERENCE_TEACHER = "deterministic"
BEST_COLUMNS = ("best_val_accuracy", "best_val_epoch", "best_test_accuracy")
CSV_COLUMNS = (
    "role",
    "teacher_kind",
    "loss",
    "seed",
    "accuracy",
    *BEST_COLUMNS,
    "top5_accuracy",
    "nll",
    "ece",
    "brier",
    "fluctuation",
    "l2_bcp",
    "tv_to_deterministic",
    "train_nll",
    "train_ece",
    "target_entropy",
    "seconds",
    "chosen",
)


@dataclass
class StudyResults:
    """Everything the reports show, read from a study folder."""

    folder: Path
    config: dict[str, Any]
    data: dict[str, Any]
    kinds: list[str]
    kind_names: dict[str, str]
    losses: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = field(default_factory=dict)
    teacher_probs: dict[str, list[tuple[Any, Any]]] = field(default_factory=dict)
    candidate_rows: list[dict[str, Any]] = field(default_factory=list)
    """The students of every grid point of tuned losses (tuning.csv), with validation metrics."""
    choices: dict[tuple[str, str], Choice] = field(default_factory=dict)
    """(tuned loss, teacher kind) → the grid point chosen on validation data."""

    @property
    def seeds(self) -> list[int]:
        return list(self.config["seeds"])

    def value(
        self, role: str, kind: str, seed: int, metric: str, loss: str | None = None
    ) -> float | None:
        """A metric of one model; ``loss`` selects among students (ignored for one-hot)."""
        for row in self.rows:
            if (
                row["role"] == role
                and row["teacher_kind"] == kind
                and row["seed"] == seed
                and (role == "teacher" or kind == NO_TEACHER or loss is None or row["loss"] == loss)
            ):
                v = row.get(metric)
                return None if v is None or v == "" else float(v)
        return None

    def curve(self, loss: str, kind: str) -> dict[int, list[dict[str, Any]]]:
        """Per-seed learning curves of the student of (loss, kind)."""
        return self.curves.get((NO_TEACHER if kind == NO_TEACHER else loss, kind), {})


def _kind_label(kind: Any) -> tuple[str, str]:
    if isinstance(kind, str):
        return kind, kind
    return kind.get("label") or kind["name"], kind["name"]


def collect(folder: str | Path) -> StudyResults:
    """Read ``config.yaml``, ``data.json`` and every seed's summaries under ``folder``
    (a study's folder, `RunLayout`)."""
    layout = RunLayout(Path(folder))
    folder = layout.root
    config = yaml.safe_load(layout.config.read_text(encoding="utf-8"))
    data = read_json(layout.data) if layout.data.is_file() else {}
    pairs = [_kind_label(k) for k in config["teachers"]]
    losses = [loss.get("label") or loss["name"] for loss in config["student"]["losses"]]
    parsed = load_config(config)
    candidates = {loss.key: [c.key for c in loss.candidates()] for loss in parsed.student.losses}
    tuned = {loss.key: loss for loss in parsed.student.losses if loss.tune is not None}
    results = StudyResults(folder, config, data, [label for label, _ in pairs], dict(pairs), losses)
    reference = next((lab for lab, name in pairs if name == REFERENCE_TEACHER), None)
    for seed in results.seeds:
        pieces = layout.seed(seed)
        probs: dict[str, Any] = {}
        for label in results.kinds:
            test_probs = pieces.teacher(label).test_probs
            if test_probs.is_file():
                state = load_torch(test_probs, what="predictions")
                probs[label] = (state["probs"], state["labels"])
                results.teacher_probs.setdefault(label, []).append(probs[label])
        for label in results.kinds:
            tsum = pieces.teacher(label).summary
            if tsum.is_file():
                summary = read_json(tsum)
                row = _row("teacher", label, seed, summary["test"], summary)
                train = summary.get("train", {})
                row["train_nll"] = train.get("train_nll", "")
                row["train_ece"] = train.get("train_ece", "")
                row["target_entropy"] = train.get("train_entropy", "")
                # validation metrics: the held-out, teacher-side measurements that rank
                # teachers without students (bayesdistill.reports.advice); not in results.csv
                row.update(summary.get("val", {}))
                if reference in probs and label in probs:
                    row["tv_to_deterministic"] = mean_total_variation(
                        probs[label][0], probs[reference][0]
                    )
                if dict(pairs)[label] == REFERENCE_TEACHER:
                    network_curve = JsonLines(pieces.network.metrics)
                    row.update(best_accuracies(network_curve.read()))
                results.rows.append(row)
            students = (
                [(NO_TEACHER, pieces.one_hot_student)]
                if dict(pairs)[label] == NO_TEACHER
                else [
                    (candidate, pieces.student(candidate, label))
                    for loss in losses
                    for candidate in candidates[loss]
                ]
            )
            for loss, files in students:
                if files.summary.is_file():
                    summary = read_json(files.summary)
                    row = _row("student", label, seed, summary["final"], summary)
                    row["loss"] = summary.get("loss_label", loss)
                    curve = JsonLines(files.metrics).read()
                    row.update(best_accuracies(curve))
                    results.curves.setdefault((loss, label), {})[seed] = curve
                    if summary.get("tuned_from") in tuned:
                        row["tuned_from"] = summary["tuned_from"]
                        row["tuned_values"] = summary.get("tuned_values", {})
                        for metric in HIGHER_IS_BETTER:
                            row[metric] = summary["final"].get(metric, "")
                        results.candidate_rows.append(row)
                    else:
                        results.rows.append(row)
    for loss in tuned.values():
        _select(results, loss.key, loss.select_by.value)
    return results


def _select(results: StudyResults, loss: str, metric: str) -> None:
    """For each teacher kind, report the grid point of ``loss`` chosen on validation data
    (`bayesdistill.reports.tuning.choose`) under the loss's own label."""
    for kind in results.kinds:
        rows = [
            r
            for r in results.candidate_rows
            if r["tuned_from"] == loss and r["teacher_kind"] == kind
        ]
        if not rows:
            continue
        validation: dict[str, dict[int, float]] = {}
        for row in rows:  # validation metrics only: the choice never sees the test set
            value = row.get(metric)
            validation.setdefault(row["loss"], {})[row["seed"]] = (
                float(value) if isinstance(value, (int, float)) else float("nan")
            )
        best, scores = choose(validation, metric)
        chosen = next(r for r in rows if r["loss"] == best)
        choice = Choice(loss, kind, best, dict(chosen["tuned_values"]), metric, scores)
        results.choices[(loss, kind)] = choice
        for row in rows:
            if row["loss"] == best:
                results.rows.append(
                    {
                        **{k: v for k, v in row.items() if k in CSV_COLUMNS},
                        "loss": loss,
                        "chosen": choice.describe(),
                    }
                )
        results.curves[(loss, kind)] = results.curves.get((best, kind), {})


def _row(
    role: str, kind: str, seed: int, metrics: dict[str, Any], summary: dict[str, Any]
) -> dict[str, Any]:
    row: dict[str, Any] = {"role": role, "teacher_kind": kind, "loss": "", "seed": seed}
    for m in (*METRICS, "l2_bcp"):
        row[m] = metrics.get(f"test_{m}", "")
    row.update(dict.fromkeys(BEST_COLUMNS, ""))
    row["fluctuation"] = summary.get("fluctuation", "")
    row["tv_to_deterministic"] = row["train_nll"] = row["train_ece"] = row["target_entropy"] = ""
    row["seconds"] = summary.get("seconds", "")
    return row


def best_accuracies(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """``best_val_accuracy``, ``best_val_epoch`` and ``best_test_accuracy`` of a learning curve
    (records of metrics.jsonl); empty strings where the curve lacks the keys."""
    out: dict[str, Any] = dict.fromkeys(BEST_COLUMNS, "")
    by_val = best_point(curve, select="val_accuracy", report="test_accuracy")
    if by_val is not None:
        out["best_val_accuracy"] = by_val.reported
        out["best_val_epoch"] = "" if by_val.epoch is None else by_val.epoch
    by_test = best_point(curve, select="test_accuracy", report="test_accuracy")
    if by_test is not None:
        out["best_test_accuracy"] = by_test.reported
    return out

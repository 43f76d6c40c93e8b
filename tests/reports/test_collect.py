"""Reading run folders: final, best-by-validation and best-by-test accuracy per run."""

from __future__ import annotations

import csv
import io
import json

import pytest

from bayesdistill.io import JsonLines
from bayesdistill.reports import collect, csv_text
from bayesdistill.reports.collect import best_accuracies
from tests.reports.fake_study import EARLY_GAP, SEEDS, build_study, student_accuracies


def test_best_accuracies_of_a_hand_written_metrics_jsonl(tmp_path):
    records = [
        {"epoch": 0.5, "val_accuracy": 0.60, "test_accuracy": 0.55},
        {"epoch": 1.0, "val_accuracy": 0.70, "test_accuracy": 0.58},
        {"epoch": 1.5, "val_accuracy": 0.70, "test_accuracy": 0.62},
        {"epoch": 2.0, "val_accuracy": 0.65, "test_accuracy": 0.64},
        {"epoch": 2.5, "val_accuracy": 0.68, "test_accuracy": 0.61},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    best = best_accuracies(JsonLines(path).read())
    assert best == {"best_val_accuracy": 0.58, "best_val_epoch": 1.0, "best_test_accuracy": 0.64}
    assert best_accuracies([{"epoch": 1, "test_accuracy": 0.5}]) == {
        "best_val_accuracy": "",
        "best_val_epoch": "",
        "best_test_accuracy": 0.5,
    }


def test_collect_reads_best_epochs_of_students_and_of_the_teacher_network(tmp_path):
    results = collect(build_study(tmp_path / "study"))
    accs = student_accuracies()
    for i, seed in enumerate(SEEDS):
        for kind in ("none", "laplace"):
            loss = None if kind == "none" else "kd"
            final = results.value("student", kind, seed, "accuracy", loss)
            assert final == pytest.approx(accs[kind][i])
            by_val = results.value("student", kind, seed, "best_val_accuracy", loss)
            assert by_val == pytest.approx(accs[kind][i] - EARLY_GAP)
            assert results.value("student", kind, seed, "best_val_epoch", loss) == 1.0
            by_test = results.value("student", kind, seed, "best_test_accuracy", loss)
            assert by_test == pytest.approx(accs[kind][i])
        # the deterministic teacher is the teacher network: its curve gives the best epochs
        assert results.value("teacher", "deterministic", seed, "best_val_accuracy") == 0.78
        assert results.value("teacher", "deterministic", seed, "best_test_accuracy") == 0.82
        # a Laplace teacher is built from the final network and has no best epoch of its own
        assert results.value("teacher", "laplace", seed, "best_val_accuracy") is None


def test_results_csv_has_the_literature_columns(tmp_path):
    results = collect(build_study(tmp_path / "study", num_classes=10))
    rows = list(csv.DictReader(io.StringIO(csv_text(results))))
    header = list(rows[0])
    assert header[4:9] == [
        "accuracy",
        "best_val_accuracy",
        "best_val_epoch",
        "best_test_accuracy",
        "top5_accuracy",
    ]
    onehot = next(r for r in rows if r["teacher_kind"] == "none" and r["seed"] == "2")
    assert float(onehot["accuracy"]) == pytest.approx(0.48)
    assert float(onehot["best_val_accuracy"]) == pytest.approx(0.48 - EARLY_GAP)
    assert float(onehot["top5_accuracy"]) == pytest.approx(0.78)
    few = collect(build_study(tmp_path / "few", num_classes=3))
    assert all(r["top5_accuracy"] == "" for r in csv.DictReader(io.StringIO(csv_text(few))))

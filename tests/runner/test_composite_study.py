"""A study whose student loss is a weighted sum with a feature term, on tiny data."""

from __future__ import annotations

import csv

import pytest

from bayesdistill.config import load_config
from bayesdistill.errors import ConfigError
from bayesdistill.io import JsonLines, read_json
from bayesdistill.runner import run_study
from bayesdistill.runner.students import check_student_losses, uses_teacher

COMPOSITE = {
    "label": "kd_w2",
    "terms": [
        {"name": "kd", "weight": 1.0, "alpha": 0.9},
        {"name": "w2_empirical", "weight": 1.0e-3},
    ],
}

TINY = {
    "data": {
        "name": "synthetic",
        "num_samples": 240,
        "num_classes": 3,
        "dim": 5,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
    },
    "teacher": {
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.1},
    },
    "teachers": ["none", "deterministic"],
    "student": {
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.1, "evals_per_epoch": 2},
        "losses": ["kd", COMPOSITE],
    },
    "seeds": [0],
    "device": "cpu",
}


def test_study_with_a_composite_loss_runs_and_logs_its_terms(tmp_path):
    out = run_study(load_config(TINY), tmp_path / "run", progress=False)
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    students = [r for r in rows if r["role"] == "student" and r["teacher_kind"] == "deterministic"]
    assert sorted(r["loss"] for r in students) == ["kd", "kd_w2"]
    folder = out / "seed_0" / "students" / "kd_w2" / "deterministic"
    records = JsonLines(folder / "metrics.jsonl").read()
    assert len(records) == 2
    for record in records:
        combined = record["train_loss/kd"] + 1e-3 * record["train_loss/w2_empirical"]
        assert record["train_loss"] == pytest.approx(combined, rel=1e-5)
    summary = read_json(folder / "summary.json")
    assert summary["loss"] == "composite" and summary["loss_label"] == "kd_w2"
    assert [t["name"] for t in summary["loss_terms"]] == ["kd", "w2_empirical"]
    single = JsonLines(out / "seed_0" / "students" / "kd" / "deterministic" / "metrics.jsonl")
    assert not any(k.startswith("train_loss/") for k in single.read()[0])


def test_feature_terms_with_a_networkless_teacher_fail_clearly(tmp_path):
    config = load_config(
        {**TINY, "teachers": ["exact_bcp"], "student": {**TINY["student"], "losses": [COMPOSITE]}}
    )
    # refused before anything runs or is written, naming the loss and the teacher kind
    with pytest.raises(
        ConfigError,
        match=r"student loss '.*' has feature terms.*teacher 'exact_bcp' is of kind "
        r"'exact_bcp' and has no single network",
    ):
        run_study(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_student_losses_are_checked_against_the_class_count():
    config = load_config(
        {
            "student": {
                "losses": ["kd", {"label": "rank", "terms": ["onehot_ce", "distilled_ranking"]}]
            }
        }
    ).student
    check_student_losses(config, 2)
    with pytest.raises(
        ConfigError, match=r"student loss 'rank': loss 'distilled_ranking' is for binary"
    ):
        check_student_losses(config, 3)


def test_which_losses_use_the_teacher():
    losses = load_config(
        {
            "student": {
                "losses": [
                    "onehot_ce",
                    "kd",
                    {"label": "a", "terms": ["onehot_ce", "mmd"]},
                    {"label": "b", "terms": ["onehot_ce", {"name": "onehot_ce", "label": "c"}]},
                ]
            }
        }
    ).student.losses
    assert [uses_teacher(loss) for loss in losses] == [False, True, True, False]

"""The study end to end on tiny synthetic data: files, pairing, resume, refusals."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch

from bayesdistill.config import load_config
from bayesdistill.errors import ConfigError
from bayesdistill.io import read_json
from bayesdistill.runner import run_study

TINY = {
    "data": {
        "name": "synthetic",
        "num_samples": 400,
        "num_classes": 3,
        "dim": 5,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
    },
    "teacher": {
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.1},
    },
    "teachers": [
        "none",
        "deterministic",
        "temperature",
        {"name": "laplace", "grid_points": 3},
        {"name": "ivon", "epochs": 2, "num_samples": 2},
        "exact_bcp",
        {"name": "noisy_bcp", "level": 1.0},
    ],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 3, "batch_size": 16, "lr": 0.1, "evals_per_epoch": 2},
        "losses": [{"name": "soft_ce"}, {"name": "kd", "label": "kd_t4", "temperature": 4.0}],
        "subset": {"per_class": 10},
    },
    "seeds": [0, 1],
    "device": "cpu",
}


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "run"
    run_study(load_config(TINY), out, progress=False)
    return out


def _rows(out):
    with open(out / "results.csv") as handle:
        return list(csv.DictReader(handle))


def test_files_and_rows(study_dir):
    for name in (
        "config.yaml",
        "data.json",
        "results.csv",
        "results.md",
        "timing.json",
        "plots/student_learning_curves.png",
        "plots/teacher_reliability.png",
        "plots/teacher_vs_student.png",
    ):
        assert (study_dir / name).is_file(), name
    rows = _rows(study_dir)
    # per seed: 6 teachers, 1 one-hot student, 6 × 2 distilled students
    assert len(rows) == 2 * (6 + 1 + 12)
    assert set(rows[0]) >= {
        "role",
        "teacher_kind",
        "loss",
        "seed",
        "accuracy",
        "nll",
        "ece",
        "brier",
        "fluctuation",
        "l2_bcp",
    }
    exact = [r for r in rows if r["role"] == "teacher" and r["teacher_kind"] == "exact_bcp"]
    assert all(float(r["l2_bcp"]) < 1e-5 for r in exact)  # the exact teacher *is* p*
    # its targets' entropy is the conditional entropy H(Y|X) on the training points, > 0
    assert all(float(r["target_entropy"]) > 0.01 for r in exact)
    students = [r for r in rows if r["role"] == "student"]
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in students)
    summary = read_json(study_dir / "seed_0" / "students" / "none" / "summary.json")
    assert summary["n_train"] == 30  # 10 per class × 3 classes


def test_markdown_reports_the_csv_means(study_dir):
    rows = _rows(study_dir)
    text = (study_dir / "results.md").read_text()
    assert "## Student loss `soft_ce`" in text and "## Student loss `kd_t4`" in text
    accs = [
        100 * float(r["accuracy"])
        for r in rows
        if r["role"] == "student" and r["teacher_kind"] == "exact_bcp" and r["loss"] == "soft_ce"
    ]
    mean = sum(accs) / len(accs)
    line = next(line for line in text.splitlines() if line.startswith("| `exact_bcp`"))
    assert f"{mean:.2f} ±" in line


def test_students_of_one_seed_are_paired(tmp_path):
    # with the one-hot loss, a student "distilled" from any teacher must be the one-hot student
    config = load_config(
        {
            **TINY,
            "teachers": ["none", "exact_bcp"],
            "seeds": [0],
            "student": {**TINY["student"], "losses": ["onehot_ce"]},
        }
    )
    out = run_study(config, tmp_path / "run", progress=False)
    a = torch.load(out / "seed_0/students/none/student.pt", weights_only=True)["weights"]
    b = torch.load(out / "seed_0/students/onehot_ce/exact_bcp/student.pt", weights_only=True)[
        "weights"
    ]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_finishes_a_killed_study_identically(study_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(study_dir, copy)
    before = _rows(copy)
    # as if killed while training this student and before the results were written
    victim = copy / "seed_1" / "students" / "kd_t4" / "laplace"
    (victim / "summary.json").unlink()
    (victim / "student.pt").unlink()
    (copy / "results.csv").unlink()
    run_study(load_config(TINY), copy, resume=True, progress=False)
    after = _rows(copy)
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in after] == [
        {k: v for k, v in r.items() if k not in drop} for r in before
    ]


def test_refuses_to_overwrite_or_resume_with_another_config(study_dir):
    with pytest.raises(ConfigError, match="already holds a study run; pass --resume"):
        run_study(load_config(TINY), study_dir, progress=False)
    other = load_config(TINY, ["student.train.lr=0.5"])
    with pytest.raises(
        ConfigError,
        match=r"cannot resume .*: it holds a run of another config "
        r"\(config: student.train.lr: 0.1 in the folder, 0.5 here\)",
    ):
        run_study(other, study_dir, resume=True, progress=False)


def test_summary_table_crosses_teacher_kinds_and_losses(study_dir):
    rows = _rows(study_dir)
    text = (study_dir / "results.md").read_text()
    summary = text.split("## Summary")[1].split("## Student loss")[0]
    assert "student acc, `soft_ce` | student acc, `kd_t4`" in summary
    line = next(x for x in summary.splitlines() if x.startswith("| `laplace`"))
    for loss in ("soft_ce", "kd_t4"):
        accs = [
            100 * float(r["accuracy"])
            for r in rows
            if r["role"] == "student" and r["teacher_kind"] == "laplace" and r["loss"] == loss
        ]
        assert f"{sum(accs) / len(accs):.2f} ±" in line


def test_a_loss_restricted_to_teacher_kinds_trains_only_their_students(tmp_path):
    config = {
        **TINY,
        "teachers": ["none", "deterministic", "temperature"],
        "student": {
            **TINY["student"],
            "losses": [
                {"name": "kd", "label": "kd_all"},
                {"name": "kd", "label": "kd_temp", "alpha": 1.0, "teachers": ["temperature"]},
            ],
        },
        "seeds": [0],
    }
    out = run_study(load_config(config), tmp_path / "run", progress=False)
    students = {(r["loss"], r["teacher_kind"]) for r in _rows(out) if r["role"] == "student"}
    assert students == {
        ("onehot_ce", "none"),
        ("kd_all", "deterministic"),
        ("kd_all", "temperature"),
        ("kd_temp", "temperature"),
    }
    assert not (out / "seed_0" / "students" / "kd_temp" / "deterministic").exists()
    table = (out / "results.md").read_text().split("## Student loss `kd_temp`")[1]
    table = table.split("What the students learn from")[0]  # the teacher table lists all
    assert "| `temperature`" in table and "| `deterministic`" not in table
    with pytest.raises(ConfigError, match=r"names teacher kinds \['laplace'\].*\['deterministic'"):
        load_config(
            {
                **config,
                "student": {
                    **config["student"],
                    "losses": [{"name": "kd", "teachers": ["laplace"]}],
                },
            }
        )

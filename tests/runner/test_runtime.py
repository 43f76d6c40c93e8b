"""A study's runtime options and teacher caches, end to end on tiny synthetic data.

``student.teacher_cache: views`` builds one view cache per (seed, teacher kind), shared by
the students of every loss, and asks the teacher nowhere else during student training;
``runtime.precision: bf16`` trains under CPU autocast; options that cannot work here are
refused before the run folder is made.
"""

from __future__ import annotations

import copy

import pytest
import torch

from bayesdistill.config import load_config
from bayesdistill.errors import ConfigError
from bayesdistill.io import load_torch, read_json
from bayesdistill.runner import run_study
from bayesdistill.teachers.deterministic import DeterministicTeacher

TINY = {
    "data": {"name": "synthetic", "num_samples": 300, "num_classes": 3, "dim": 6},
    "teacher": {"model": {"name": "mlp", "hidden": [16]}, "train": {"epochs": 2, "batch_size": 32}},
    "teachers": ["none", "deterministic"],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 2, "batch_size": 16},
        "losses": [{"name": "soft_ce"}, {"name": "kd", "temperature": 2.0}],
        "subset": {"per_class": 12},
        "augment": [{"name": "shift", "max_shift": 1}],
        "teacher_cache": "views",
        "cache_views": 3,
    },
    "seeds": [0],
    "device": "cpu",
}


def test_views_are_built_once_per_teacher_and_shared_by_every_loss(tmp_path, monkeypatch):
    calls = []
    original = DeterministicTeacher._predict

    def counting(self, x):
        calls.append(len(x))
        return original(self, x)

    monkeypatch.setattr(DeterministicTeacher, "_predict", counting)
    out = tmp_path / "run"
    run_study(load_config(TINY), out, progress=False)
    cache_file = out / "seed_0" / "teachers" / "deterministic" / "train_views.pt"
    state = load_torch(cache_file, what="view cache", expected_format="bayesdistill.view_cache")
    n_train = read_json(out / "data.json")["n_train"]
    assert state["cache"]["params"].shape == (n_train, 3, 1)
    assert state["cache"]["values"].dtype == torch.float16
    # the teacher saw: its own evaluation sets, the training set once (summary), and
    # 3 views of the training set once; the 2 students asked it nothing more
    asked = sum(calls)
    assert asked == read_json(out / "data.json")["n_val"] + read_json(out / "data.json")[
        "n_test"
    ] + n_train * (1 + 3)
    for loss in ("soft_ce", "kd"):
        assert (out / "seed_0" / "students" / loss / "deterministic" / "student.pt").is_file()


def test_views_give_the_student_the_stored_probabilities(tmp_path):
    """Without views the student asks the teacher on every batch: another curve."""
    per_batch = copy.deepcopy(TINY)
    per_batch["student"]["teacher_cache"] = "none"
    per_batch["student"]["losses"] = [{"name": "soft_ce"}]
    views = copy.deepcopy(per_batch)
    views["student"]["teacher_cache"] = "views"
    run_study(load_config(per_batch), tmp_path / "a", progress=False)
    run_study(load_config(views), tmp_path / "b", progress=False)
    a = read_json(
        tmp_path / "a" / "seed_0" / "students" / "soft_ce" / "deterministic" / "summary.json"
    )
    b = read_json(
        tmp_path / "b" / "seed_0" / "students" / "soft_ce" / "deterministic" / "summary.json"
    )
    assert a["final"]["train_loss"] != b["final"]["train_loss"]
    # the one-hot student does not depend on the teacher cache
    c = read_json(tmp_path / "a" / "seed_0" / "students" / "none" / "summary.json")
    d = read_json(tmp_path / "b" / "seed_0" / "students" / "none" / "summary.json")
    assert c["final"]["test_accuracy"] == d["final"]["test_accuracy"]


def test_bf16_autocast_on_the_cpu_trains_close_to_fp32(tmp_path):
    config = copy.deepcopy(TINY)
    config["student"].update(augment=[], teacher_cache="auto", losses=[{"name": "kd"}])
    run_study(load_config(config), tmp_path / "fp32", progress=False)
    config["runtime"] = {"precision": "bf16"}
    run_study(load_config(config), tmp_path / "bf16", progress=False)
    student = ("seed_0", "students", "kd", "deterministic", "summary.json")
    fp32 = read_json(tmp_path.joinpath("fp32", *student))["final"]
    bf16 = read_json(tmp_path.joinpath("bf16", *student))["final"]
    assert fp32["train_loss"] != bf16["train_loss"]  # autocast ran
    assert bf16["train_loss"] == pytest.approx(fp32["train_loss"], rel=0.05)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"runtime": {"precision": "fp16"}}, "precision 'fp16' needs a CUDA device"),
        ({"runtime": {"precision": "fp8"}}, "runtime.precision"),
        ({"student": {"teacher_cache": "views", "augment": []}}, "student.augment is empty"),
        (
            {"student": {"teacher_cache": "views", "augment": [{"name": "noise"}]}},
            "'noise'",
        ),
        ({"student": {"teacher_cache": "exact"}}, "teacher_cache 'exact'"),
        ({"device": "cuda:x"}, "device must be 'auto'"),
    ],
)
def test_runtime_options_that_cannot_work_are_refused_before_the_run_folder(
    tmp_path, change, message
):
    config = copy.deepcopy(TINY)
    for key, value in change.items():
        if isinstance(value, dict) and key in config:
            config[key].update(value)
        else:
            config[key] = value
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=message):
        run_study(load_config(config), out, progress=False)
    assert not out.exists()


def test_log_tensorboard_mirrors_every_training_and_is_not_part_of_the_identity(tmp_path):
    pytest.importorskip("tensorboard")
    config = copy.deepcopy(TINY)
    config["student"].update(augment=[], teacher_cache="auto", losses=[{"name": "kd"}])
    out = tmp_path / "run"
    run_study(load_config({**config, "log": {"tensorboard": True}}), out, progress=False)
    for folder in ("teacher_network", "students/none", "students/kd/deterministic"):
        events = list((out / "seed_0" / folder / "tensorboard").glob("events.out.tfevents.*"))
        assert events, folder
    # resuming without the mirror is the same run
    run_study(load_config(config), out, resume=True, progress=False)

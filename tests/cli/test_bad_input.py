"""Bad input through the installed command: one ``error:`` line, exit status 2, no traceback,
and no run folder left behind by a command that could not start.

Every case runs the console script of the wheel in a fresh venv without click
(``installed_bayesdistill``, tests/installed.py), from a folder outside the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

TINY = {
    "data": {"name": "synthetic", "num_samples": 300, "num_classes": 3, "dim": 4},
    "teacher": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 2, "batch_size": 32}},
    "teachers": ["none", "deterministic", "temperature"],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 2, "batch_size": 32},
        "losses": [{"name": "kd", "temperature": 2.0}],
    },
    "seeds": [0],
    "device": "cpu",
}


def _config(folder: Path, **changes) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def _fails(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The command ended with one clear error naming every fragment; returns stderr."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") or "\nerror: " in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    return result.stderr


@pytest.fixture(scope="module")
def teacher_run(installed_bayesdistill, tmp_path_factory) -> Path:
    """A finished ``bayesdistill teacher`` run (seed 0) of the tiny config."""
    work = tmp_path_factory.mktemp("teacher_run")
    config = _config(work)
    result = installed_bayesdistill.run(
        "-q", "teacher", str(config), "--out", str(work / "t"), "--no-progress", cwd=work
    )
    assert result.returncode == 0, result.stderr
    return work / "t"


def test_out_that_is_a_file_or_lies_under_a_file(installed_bayesdistill, tmp_path):
    config = _config(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("keep me")
    result = installed_bayesdistill.run("study", str(config), "--out", "afile", cwd=tmp_path)
    _fails(result, "--out 'afile' is a file, not a folder")
    assert blocker.read_text() == "keep me"
    result = installed_bayesdistill.run("study", str(config), "--out", "afile/run", cwd=tmp_path)
    _fails(result, "cannot create --out 'afile/run'", f"'{blocker}' is a file, not a folder")


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create: under a read-only folder (or, as root, who
    may write anywhere, under /sys, where even root cannot make folders)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked / "run"
    probe = Path("/sys/bayesdistill-test-probe")
    try:
        probe.mkdir()
    except OSError:
        return probe
    probe.rmdir()
    pytest.skip("running as root with a writable /sys: no folder here refuses a write")


def test_out_that_cannot_be_written(installed_bayesdistill, tmp_path):
    target = _unwritable(tmp_path)
    result = installed_bayesdistill.run(
        "study", str(_config(tmp_path)), "--out", str(target), cwd=tmp_path
    )
    stderr = _fails(result, f"'{target}'")
    assert "permission denied" in stderr.lower() or "not permitted" in stderr.lower(), stderr
    assert not target.exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("device=cuda:x", "got 'cuda:x'"),
        ("device=gpu", "got 'gpu'"),
        ("teacher.train.lr=.inf", "lr must be a finite number, got inf"),
        ("student.train.weight_decay=.nan", "weight_decay must be a finite number, got nan"),
        ("teacher.train.gamma=-1", "gamma must be positive"),
        ("student.losses.0.temperature=.inf", "option 'temperature' must be finite, got inf"),
        ("student.losses.0.alpha=.nan", "option 'alpha' is NaN"),
        ("student.losses.0.alpha=1.5", "loss 'kd': alpha must lie in [0, 1], got 1.5"),
        ("student.losses.0.temperature=0", "temperature must lie in (0, inf) (positive), got 0"),
        (
            "student.losses=[{name: dkd, warmup_epochs: -1}]",
            "loss 'dkd': warmup_epochs must lie in [0, inf) (non-negative), got -1",
        ),
        ("student.subset={per_class: 1000}", "fewer than the 1000 requested per class"),
        ("student.model={name: resnet8}", "student.model 'resnet8': cifar_resnet is a 2-D"),
        ("teacher.model={name: resnet8}", "teacher.model 'resnet8': cifar_resnet is a 2-D"),
    ],
)
def test_bad_values_are_refused_before_the_run_folder_exists(
    installed_bayesdistill, tmp_path, override, message
):
    out = tmp_path / "run"
    result = installed_bayesdistill.run(
        "study", str(_config(tmp_path)), "--out", str(out), override, cwd=tmp_path
    )
    _fails(result, message)
    assert not out.exists()


def test_npz_with_no_examples(installed_bayesdistill, tmp_path):
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 4), np.float32), y=np.zeros(0, np.int64))
    out = tmp_path / "run"
    data = "data={name: npz, path: empty.npz}"
    result = installed_bayesdistill.run(
        "study", str(_config(tmp_path)), "--out", str(out), data, cwd=tmp_path
    )
    _fails(result, "'empty.npz': array 'x' holds no examples")
    assert not out.exists()


def test_test_fraction_for_a_dataset_with_its_own_test_split(installed_bayesdistill, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "own.npz",
        x=rng.normal(size=(90, 4)).astype(np.float32),
        y=np.arange(90) % 3,
        x_test=rng.normal(size=(30, 4)).astype(np.float32),
        y_test=np.arange(30) % 3,
    )
    config = _config(tmp_path)
    out = tmp_path / "run"
    data = "data={name: npz, path: own.npz, test_fraction: 0.5}"
    result = installed_bayesdistill.run("study", str(config), "--out", str(out), data, cwd=tmp_path)
    _fails(
        result, "data.test_fraction=0.5 does not apply", "has a test split of its own (30 examples)"
    )
    assert not out.exists()


def test_zero_byte_teacher_file(installed_bayesdistill, tmp_path):
    (tmp_path / "teacher.pt").write_bytes(b"")
    out = tmp_path / "run"
    result = installed_bayesdistill.run(
        "distill", str(_config(tmp_path)), "--teacher", "teacher.pt", "--out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    _fails(result, "cannot read teacher 'teacher.pt': the file is empty (0 bytes)")
    assert not out.exists()


def test_teacher_whose_input_shape_differs_from_the_data(
    installed_bayesdistill, teacher_run, tmp_path
):
    teacher = teacher_run / "teachers" / "deterministic" / "teacher.pt"
    out = tmp_path / "run"
    config = _config(tmp_path)
    result = installed_bayesdistill.run(
        "distill", str(config), "--teacher", str(teacher), "--out", str(out), "data.dim=5",
        cwd=tmp_path,
    )  # fmt: skip
    _fails(result, "takes inputs of shape [4]", "have shape [5]")
    assert not out.exists()
    # the corrected command then runs in the same --out: nothing was left behind
    result = installed_bayesdistill.run(
        "-q", "distill", str(config), "--teacher", str(teacher), "--out", str(out),
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_teacher_whose_class_count_differs_from_the_data(
    installed_bayesdistill, teacher_run, tmp_path
):
    teacher = teacher_run / "teachers" / "deterministic" / "teacher.pt"
    out = tmp_path / "run"
    result = installed_bayesdistill.run(
        "distill", str(_config(tmp_path)), "--teacher", str(teacher), "--out", str(out),
        "data.num_classes=4", cwd=tmp_path,
    )  # fmt: skip
    _fails(result, "predicts 3 classes but the training data has 4")
    assert not out.exists()


def test_a_cross_fitted_teacher_refuses_an_augmented_student(installed_bayesdistill, tmp_path):
    """Its out-of-fold targets exist for the clean training examples only: refused before
    the run folder exists, naming the teacher kind and the option; without augmentation
    the student learns from the out-of-fold table."""
    crossed = [{"name": "deterministic", "cross_fit": 2}]
    made = installed_bayesdistill.run(
        "-q", "teacher", str(_config(tmp_path, teachers=crossed)), "--out", "t",
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    config = _config(tmp_path)  # distill reads the student section only
    (teacher,) = (tmp_path / "t" / "teachers").glob("*/teacher.pt")
    out = tmp_path / "run"
    result = installed_bayesdistill.run(
        "distill", str(config), "--teacher", str(teacher), "--out", str(out),
        "student.augment=[{name: noise}]", cwd=tmp_path,
    )  # fmt: skip
    _fails(result, "teacher 'cross_fitted'", "out-of-fold", "student.augment")
    assert not out.exists()
    result = installed_bayesdistill.run(
        "-q", "distill", str(config), "--teacher", str(teacher), "--out", str(out),
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "kd" / "summary.json").read_text())["targets"] == "out_of_fold"


def test_resume_refuses_another_seed(installed_bayesdistill, teacher_run, tmp_path):
    config = _config(tmp_path)
    before = sorted(p.name for p in teacher_run.rglob("*"))
    result = installed_bayesdistill.run(
        "teacher", str(config), "--out", str(teacher_run), "--seed", "1", "--resume",
        cwd=tmp_path,
    )  # fmt: skip
    _fails(result, f"cannot resume '{teacher_run}'", "another seed", "0 in the folder, 1 here")
    assert sorted(p.name for p in teacher_run.rglob("*")) == before


def test_resume_refuses_another_teacher_and_a_finished_run_is_left_as_is(
    installed_bayesdistill, teacher_run, tmp_path
):
    config = _config(tmp_path)
    first = teacher_run / "teachers" / "deterministic" / "teacher.pt"
    second = teacher_run / "teachers" / "temperature" / "teacher.pt"
    out = tmp_path / "run"
    args = ("distill", str(config), "--out", str(out), "--no-progress")
    done = installed_bayesdistill.run(*args, "--teacher", str(first), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = out / "kd" / "summary.json"
    stamp = summary.stat().st_mtime_ns

    other = installed_bayesdistill.run(*args, "--teacher", str(second), "--resume", cwd=tmp_path)
    _fails(other, "another teacher", f"'{first}'", f"'{second}'")

    again = installed_bayesdistill.run(*args, "--teacher", str(first), "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert "holds finished students of this teacher; nothing to do" in again.stderr
    assert "student <- deterministic (kd): test accuracy" in again.stdout
    assert summary.stat().st_mtime_ns == stamp  # nothing was retrained or rewritten
    record = json.loads((out / "run.json").read_text())
    assert record["finished"] is True and record["command"] == "distill"


def test_report_refuses_folders_that_are_not_studies(installed_bayesdistill, teacher_run, tmp_path):
    result = installed_bayesdistill.run("report", str(teacher_run), cwd=tmp_path)
    _fails(result, "is not a study folder: it holds a teacher run")
    assert not (teacher_run / "results.md").exists()
    empty = tmp_path / "nothing"
    empty.mkdir()
    _fails(
        installed_bayesdistill.run("report", str(empty), cwd=tmp_path), "holds no bayesdistill run"
    )
    _fails(installed_bayesdistill.run("report", "missing", cwd=tmp_path), "study folder not found")


def test_theory_refuses_a_non_empty_out(installed_bayesdistill, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for args in (("theory", "gradient_noise", "--quick"), ("theory", "all")):
        result = installed_bayesdistill.run(*args, "--out", str(out), cwd=tmp_path)
        _fails(result, f"output folder '{out}' is not empty")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_study_out_that_is_not_empty(installed_bayesdistill, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = installed_bayesdistill.run(
        "study", str(_config(tmp_path)), "--out", str(out), cwd=tmp_path
    )
    _fails(result, "is not empty and holds no bayesdistill run")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_missing_config_and_a_bad_override(installed_bayesdistill, tmp_path):
    _fails(installed_bayesdistill.run("study", "nope.yaml", cwd=tmp_path), "config file not found")
    result = installed_bayesdistill.run(
        "study", str(_config(tmp_path)), "student.losses.0.name=kdd", cwd=tmp_path
    )
    _fails(result, "unknown loss 'kdd'", "Did you mean 'kd'?")
    result = installed_bayesdistill.run("config", str(_config(tmp_path)), "seeds", cwd=tmp_path)
    _fails(result, "override 'seeds' must look like key.sub=value")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("studyy",), "No such command 'studyy'"),
        (("study", "c.yaml", "--seed", "1"), "No such option: --seed"),
        (("teacher", "c.yaml", "--seed"), "Option '--seed' requires an argument"),
        (("teacher", "c.yaml", "--seed", "abc"), "--seed': a seed is a whole number, got 'abc'"),
        (("distill", "c.yaml", "--seed", "1.5"), "a seed is a whole number, got '1.5'"),
    ],
)
def test_usage_errors_show_usage_without_click(installed_bayesdistill, tmp_path, args, message):
    result = installed_bayesdistill.run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Usage:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_public_losses_refuse_non_finite_logits(installed_bayesdistill, tmp_path):
    """The installed package's soft_ce and kd on NaN / inf logits: a DataError naming the
    row, not a silent NaN."""
    code = (
        "import math, torch\n"
        "from bayesdistill.errors import DataError\n"
        "from bayesdistill.losses import kd, soft_ce\n"
        "teacher = torch.full((3, 4), 0.25)\n"
        "for loss, bad in ((soft_ce, math.nan), (kd, math.inf)):\n"
        "    logits = torch.zeros(3, 4)\n"
        "    logits[1, 2] = bad\n"
        "    try:\n"
        "        print('value', float(loss(logits, teacher, torch.tensor([0, 1, 2]))))\n"
        "    except DataError as exc:\n"
        "        print('refused:', exc)\n"
    )
    result = installed_bayesdistill.run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("refused: ") for line in lines), lines
    assert "loss 'soft_ce': student logits must be finite" in lines[0] and "row 1" in lines[0]
    assert "loss 'kd': student logits must be finite" in lines[1]


FEATURE_LOSS = {"label": "w2", "terms": [{"name": "onehot_ce"}, {"name": "w2_empirical"}]}


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        (
            {"student": {**TINY["student"], "model": {"name": "mlp", "hidden": [8]},
                         "losses": [FEATURE_LOSS]}},
            ["student loss 'w2' has feature terms", "student 'mlp' has D = 8",
             "teacher 'mlp' D = 16"],
        ),
        (
            {"teachers": ["none", {"name": "ensemble", "members": 2}],
             "student": {**TINY["student"], "model": {"name": "mlp", "hidden": [16]},
                         "losses": [FEATURE_LOSS]}},
            ["student loss 'w2' has feature terms", "teacher 'ensemble' is of kind 'ensemble'",
             "no single network"],
        ),
    ],
    ids=["feature-dimensions", "ensemble-teacher"],
)  # fmt: skip
def test_feature_terms_that_cannot_work_are_refused_before_the_run(
    installed_bayesdistill, tmp_path, changes, fragments
):
    changes = {"teacher": {**TINY["teacher"], "model": {"name": "mlp", "hidden": [16]}}, **changes}
    out = tmp_path / "run"
    result = installed_bayesdistill.run(
        "study", str(_config(tmp_path, **changes)), "--out", str(out), cwd=tmp_path
    )
    _fails(result, *fragments)
    assert not out.exists()


def test_a_failed_unit_shows_its_error_and_keeps_its_traceback_in_its_log(
    installed_bayesdistill, tmp_path
):
    """A unit that fails inside (here: training diverges) is reported by its error message;
    the traceback is in the unit's log, and on the console only under --debug."""
    diverging = {**TINY["teacher"], "train": {"epochs": 2, "batch_size": 32, "lr": 1.0e12}}
    config = _config(tmp_path, teacher=diverging)
    plain = installed_bayesdistill.run(
        "study", str(config), "--out", str(tmp_path / "a"), "--no-progress", cwd=tmp_path
    )
    _fails(plain, "- seed_0/network:", "FloatingPointError: seed 0 teacher network: loss became")
    assert "logs/<unit>.log" in plain.stderr
    assert "Traceback" in (tmp_path / "a" / "logs" / "seed_0__network.log").read_text()
    debug = installed_bayesdistill.run(
        "--debug", "study", str(config), "--out", str(tmp_path / "b"), "--no-progress",
        cwd=tmp_path,
    )  # fmt: skip
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr


def test_an_mc_dropout_teacher_without_dropout_is_refused_before_the_run(
    installed_bayesdistill, tmp_path
):
    config = _config(tmp_path, teachers=["none", {"name": "mc_dropout", "num_samples": 2}])
    out = tmp_path / "run"
    result = installed_bayesdistill.run("study", str(config), "--out", str(out), cwd=tmp_path)
    _fails(result, "teacher 'mc_dropout' (teacher.model 'mlp'): MC dropout needs a network")
    assert not out.exists()

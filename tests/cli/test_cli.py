"""The command line: listing, config printing, the teacher → distill path, clear errors."""

from __future__ import annotations

import subprocess
import sys

import yaml
from typer.testing import CliRunner

from bayesdistill.cli.main import app
from bayesdistill.data import AUGMENTATIONS, DATASETS
from bayesdistill.losses import LOSSES
from bayesdistill.models import MODELS
from bayesdistill.teachers import TEACHERS

runner = CliRunner()

TINY = {
    "data": {"name": "synthetic", "num_samples": 300, "num_classes": 3, "dim": 4},
    "teacher": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 2, "batch_size": 32}},
    "teachers": ["none", "deterministic", {"name": "laplace", "grid_points": 3}],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 2, "batch_size": 32},
        "losses": [{"name": "kd", "temperature": 2.0}],
    },
    "seeds": [0],
    "device": "cpu",
}


def test_list_shows_every_registered_name():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for registry in (DATASETS, MODELS, TEACHERS, LOSSES, AUGMENTATIONS):
        for name in registry.names():
            assert f"  {name} " in result.output
    assert "alpha: float in [0, 1] = 0.5" in result.output
    assert "none" in result.output


def test_config_prints_resolved_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    result = runner.invoke(app, ["config", str(path), "student.train.lr=0.3"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["student"]["train"]["lr"] == 0.3
    assert printed["student"]["train"]["momentum"] == 0.9  # default filled in


def test_teacher_then_distill(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    result = runner.invoke(
        app, ["teacher", str(path), "--out", str(tmp_path / "t"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    teacher_file = tmp_path / "t" / "teachers" / "laplace" / "teacher.pt"
    assert teacher_file.is_file()
    result = runner.invoke(
        app,
        [
            "distill",
            str(path),
            "--teacher",
            str(teacher_file),
            "--out",
            str(tmp_path / "s"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "student <- laplace (kd): test accuracy" in result.output
    assert (tmp_path / "s" / "kd" / "student.pt").is_file()
    result = runner.invoke(
        app, ["distill", str(path), "--out", str(tmp_path / "onehot"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "student <- none (onehot_ce)" in result.output


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bayesdistill.cli.main", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_errors_are_one_clear_line_and_exit_code_2(tmp_path):
    missing = _cli("study", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert "error: config file not found" in missing.stderr
    assert "Traceback" not in missing.stderr

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    bad = _cli("study", str(path), "student.losses.0.name=kdd", "--out", str(tmp_path / "o"))
    assert bad.returncode == 2
    assert "unknown loss 'kdd'" in bad.stderr and "Did you mean 'kd'?" in bad.stderr

    corrupt = tmp_path / "teacher.pt"
    corrupt.write_bytes(b"\x80\x02garbage")
    result = _cli("distill", str(path), "--teacher", str(corrupt), "--out", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "truncated, corrupt" in result.stderr


BLOCK_CLICK = (
    "import sys; sys.modules['click'] = None; "  # `import click` now raises ImportError
    "from bayesdistill.cli.main import main; sys.argv[0] = 'bayesdistill'; main()"
)


def _cli_without_click(*args: str) -> subprocess.CompletedProcess:
    """The command line in a process where `import click` fails, as in a fresh venv where
    Typer (≥ 0.26 vendors click) did not install it."""
    return subprocess.run(
        [sys.executable, "-c", BLOCK_CLICK, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_usage_errors_need_no_click_and_show_usage():
    cases = {
        ("studyy",): "No such command 'studyy'. Did you mean 'study'?",
        ("study", "--seed", "1", "c.yaml"): "No such option: --seed",
        ("teacher", "c.yaml", "--seed"): "Option '--seed' requires an argument",
        ("teacher", "c.yaml", "--seed", "x"): "Invalid value for '--seed'",
    }
    for args, message in cases.items():
        result = _cli_without_click(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)

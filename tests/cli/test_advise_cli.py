"""``bayesdistill advise`` from the command line: it prints the ranking and the next command,
and refuses, before writing anything, a config it cannot rank."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

EXACT = {
    "data": {"name": "synthetic", "num_samples": 300, "num_classes": 3, "dim": 4},
    "teachers": [
        "none",
        "exact_bcp",
        {"name": "noisy_bcp", "label": "noisy", "noise": "dirichlet", "level": 1.0},
    ],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 1, "batch_size": 32},
        "losses": [{"name": "soft_ce"}],
    },
    "seeds": [0, 1],
    "device": "cpu",
}


def _advise(folder: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "bayesdistill.cli.main", "advise", str(path), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
        stdin=subprocess.DEVNULL,
    )


def _refused(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") or "\nerror: " in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def test_advise_prints_the_ranking_and_the_study_command(tmp_path):
    result = _advise(tmp_path, EXACT, "--out", "run", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "**Recommended: `exact_bcp`**" in result.stdout
    assert "| 1 | `exact_bcp` |" in result.stdout and "| 2 | `noisy` |" in result.stdout
    assert "bayesdistill study" in result.stdout and "--out run --resume" in result.stdout
    assert (tmp_path / "run" / "advice.md").is_file()


def test_no_teacher_kind_besides_none_is_refused(tmp_path):
    result = _advise(tmp_path, {**EXACT, "teachers": ["none"]}, "--out", "run")
    _refused(result, "lists none besides 'none'", "teachers: ['none']")
    assert not (tmp_path / "run").exists()


def test_no_validation_data_is_refused(tmp_path):
    config = {**EXACT, "data": {**EXACT["data"], "val_fraction": 0.0}}
    result = _advise(tmp_path, config, "--out", "run")
    _refused(result, "held-out validation data", "data.val_fraction is 0")
    assert not (tmp_path / "run").exists()
    # the same through an override on the command line
    result = _advise(tmp_path, EXACT, "data.val_fraction=0", "--out", "run")
    _refused(result, "data.val_fraction is 0")
    assert not (tmp_path / "run").exists()

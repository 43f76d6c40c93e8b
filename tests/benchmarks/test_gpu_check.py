"""benchmarks/gpu_check.py, the prepared GPU check, in its ``--device cpu --quick`` form: every
step runs, its JSON is rewritten after each step, a failing step makes the exit status
non-zero, and the ratio lines a GPU session reads are printed at the end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _check(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "out"
    command = [sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", "--quick"]
    done = subprocess.run(
        [*command, *extra], cwd=tmp_path, capture_output=True, text=True, timeout=1500
    )
    return done, json.loads((out / "gpu_check.json").read_text())


def test_every_step_passes_on_the_cpu(tmp_path):
    done, record = _check(tmp_path)
    assert done.returncode == 0, done.stdout[-4000:]
    steps = {s["step"]: s for s in record["steps"]}
    assert list(steps) == ["pytest", "paper_study", "throughput", "student_step"]
    assert all(s["status"] == "passed" for s in steps.values())
    assert (tmp_path / "out" / "paper_results.md").is_file()
    assert {"ratio_vi_views_bf16", "fit_over_plain_fp32"} <= set(
        steps["throughput"]["numbers"]
    ) | set(steps["student_step"]["numbers"])
    assert steps["student_step"]["numbers"]["stacked_4"] > 0
    last = done.stdout.strip().splitlines()[-4:]
    assert any(line.startswith("fit_over_plain_fp32 ") for line in last)


def test_a_failing_step_fails_the_check_and_its_record_is_kept(tmp_path):
    """A step that cannot run (here: a bad device for pytest's dry run) is recorded as
    failed, the next step still runs, and the exit status is 1."""
    out = tmp_path / "out"
    command = [sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", "--quick"]
    command += ["--steps", "pytest"]
    env = {"BAYESDISTILL_GPU_TESTS_DEVICE": "no-such-device", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    record = json.loads((out / "gpu_check.json").read_text())
    assert done.returncode == 1
    assert [s["status"] for s in record["steps"]] == ["failed"]
    assert "==> step pytest: FAILED" in done.stdout


def test_an_unknown_step_is_refused(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--steps", "pytest,warp"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "unknown step(s) ['warp']" in done.stderr


def test_the_gpu_command_lines_parse_in_their_scripts(tmp_path, monkeypatch):
    """The options the check passes on a GPU (not run here) are ones its scripts take."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    check = importlib.import_module("gpu_check")
    args = check.parse_args(["--out", str(tmp_path)])
    parsed = {
        step: importlib.import_module(module).parse_args(
            check.command(step, args, tmp_path, tmp_path)[2:]
        )
        for step, module in (("throughput", "gpu_throughput"), ("student_step", "student_step"))
    }
    assert all(p.device == "cuda" and not p.quick for p in parsed.values())
    student = parsed["student_step"]
    assert (student.compiled, student.budget, student.packing) == ("bf16", 75.0, "1,2,4,8")

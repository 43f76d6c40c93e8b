"""benchmarks/gpu_throughput.py, the prepared GPU check of issue 9, in its --quick form on
the CPU: it must run as-is, report every (teacher, cache, precision) cell, and end with the
line a GPU session reads."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_throughput.py"
TEACHERS = ("deterministic", "laplace", "vi")
"""The config's teacher kinds (labels) besides one-hot."""
QUICK = ["--quick", "--device", "cpu", "--threads", "1"]


def expected_cells(precisions: list[str]) -> set[tuple[str, str | None, str]]:
    cells = {("one-hot", None, p) for p in precisions}
    return cells | {(t, c, p) for t in TEACHERS for c in ("none", "views") for p in precisions}


def check_result(result: dict, last_line: str, precisions: list[str]) -> None:
    assert result["precisions"] == precisions
    cells = {(c["teacher"], c["cache"], c["precision"]): c for c in result["cells"]}
    assert set(cells) == expected_cells(precisions)
    assert len(cells) == len(result["cells"])  # no cell twice
    for cell in cells.values():
        assert math.isfinite(cell["images_per_s"]) and cell["images_per_s"] > 0
        assert len(cell["seconds"]) == result["rounds"] == 1
    for p in precisions:
        assert cells["one-hot", None, p]["ratio_to_onehot"] == 1.0
    builds = {(b["teacher"], b["precision"]) for b in result["cache_build_seconds"]}
    assert builds == {(t, p) for t in TEACHERS for p in precisions}
    assert all(b["seconds"] > 0 for b in result["cache_build_seconds"])
    assert result["num_samples"] == {"deterministic": 1, "laplace": 1, "vi": 10}  # config's S
    vectorized = {c["precision"]: c for c in result["vectorized_cells"]}
    assert set(vectorized) == set(precisions)
    for cell in vectorized.values():
        assert cell["samples_per_pass"] == 10 and cell["cache"] == "none"
        assert math.isfinite(cell["images_per_s"]) and cell["images_per_s"] > 0
        assert math.isfinite(cell["ratio_to_one_per_pass"]) and cell["ratio_to_one_per_pass"] > 0
        assert len(cell["seconds"]) == 1
    headline = precisions[-1]
    assert result["ratio_vi_views_precision"] == headline
    ratio = cells["vi", "views", headline]["ratio_to_onehot"]
    assert result["ratio_vi_views_bf16"] == ratio
    assert last_line == f"ratio_vi_views_bf16 {ratio:.3f}"


def test_quick_run_as_a_gpu_session_would(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "gpu_throughput.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *QUICK, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    # bf16 autocast runs on the CPU, so the CPU run covers both precisions
    check_result(result, proc.stdout.strip().splitlines()[-1], ["fp32", "bf16"])
    assert result["device"] == "cpu" and result["image_shape"] == [3, 16, 16]
    assert not list(out.parent.glob(".*"))  # written atomically: no temporary left


def test_device_without_bf16_reports_fp32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    bench = importlib.import_module("gpu_throughput")
    monkeypatch.setattr(bench, "bf16_supported", lambda device: False)
    threads = torch.get_num_threads()
    try:
        bench.main([*QUICK, "--out", str(tmp_path / "r.json")])
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads((tmp_path / "r.json").read_text())
    check_result(result, lines[-1], ["fp32"])
    assert result["bf16_supported"] is False
    assert "bf16 not run here: ratio_vi_views_bf16 below is measured at fp32" in lines

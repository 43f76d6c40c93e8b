"""benchmarks/workload.py's interleaved timing: warm-up, rotated rounds, the deadline."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def workload(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("workload")


def recorder(calls: list[str], name: str):
    def run() -> float:
        calls.append(name)
        return float(len(calls))

    return run


def test_rounds_rotate_after_a_warm_up(workload) -> None:
    calls: list[str] = []
    variants = {n: recorder(calls, n) for n in "abc"}
    times = workload.interleaved(variants, 3)
    assert calls == list("abcabcbcacab")
    assert {n: len(v) for n, v in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_no_round_starts_after_the_deadline_but_the_first(workload) -> None:
    calls: list[str] = []
    variants = {n: recorder(calls, n) for n in "ab"}
    times = workload.interleaved(variants, 5, deadline=time.perf_counter() - 1.0)
    assert calls == list("abab")
    assert times == {"a": [3.0], "b": [4.0]}

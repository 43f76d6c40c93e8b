"""Executors run a unit graph in dependency order, report failures, and go on."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from bayesdistill.errors import ConfigError
from bayesdistill.runner.executors import LocalExecutor, ProcessExecutor
from bayesdistill.runner.graph import StudyFailedError, Unit, check_graph
from bayesdistill.runner.ray_executor import RayExecutor

from .toy_units import toy_runner


def _graph(root, **extra) -> list[Unit]:
    args = {"root": str(root)}
    return [
        Unit("c", "toy", 0, deps=("a", "b"), args=args | extra.get("c", {})),
        Unit("a", "toy", 0, args=args | extra.get("a", {})),
        Unit("b", "toy", 0, deps=("a",), args=args | extra.get("b", {})),
        Unit("d", "toy", 0, args=args | extra.get("d", {})),
        Unit("e", "toy", 0, deps=("d",), args=args | extra.get("e", {})),
    ]


EXPECTED_C = "(c (a) (b (a)))"


def _executors():
    yield "local", LocalExecutor()
    yield "processes", ProcessExecutor(workers=2, devices=["cpu"], threads=1)


@pytest.mark.parametrize("name", ["local", "processes"])
def test_units_run_after_their_dependencies(tmp_path, name):
    executor = dict(_executors())[name]
    outcome = executor.run(_graph(tmp_path), toy_runner)
    assert sorted(outcome.finished) == ["a", "b", "c", "d", "e"] and not outcome.failed
    assert (tmp_path / "c.txt").read_text() == EXPECTED_C
    assert (tmp_path / "e.txt").read_text() == "(e (d))"


@pytest.mark.parametrize("name", ["local", "processes"])
def test_a_failing_unit_is_reported_and_the_others_go_on(tmp_path, name):
    executor = dict(_executors())[name]
    outcome = executor.run(_graph(tmp_path, b={"raise": True}), toy_runner)
    assert list(outcome.failed) == ["b"]
    assert "unit b was told to fail" in outcome.failed["b"]
    assert outcome.skipped == {"c": "b"}  # c needs b
    assert sorted(outcome.finished) == ["a", "d", "e"]
    with pytest.raises(
        StudyFailedError, match=r"(?s)1 unit\(s\) failed.*- b:.*told to fail.*not run.*c"
    ):
        outcome.raise_for_failures()


def test_a_killed_worker_is_reported_replaced_and_a_rerun_finishes(tmp_path):
    executor = ProcessExecutor(workers=2, devices=["cpu"], threads=1)
    outcome = executor.run(_graph(tmp_path, a={"kill_once": True}), toy_runner)
    assert list(outcome.failed) == ["a"]
    assert "worker process running it died" in outcome.failed["a"]
    assert set(outcome.skipped) == {"b", "c"}
    assert sorted(outcome.finished) == ["d", "e"]  # the replacement worker went on
    rerun = executor.run(_graph(tmp_path, a={"kill_once": True}), toy_runner)
    assert not rerun.failed and (tmp_path / "c.txt").read_text() == EXPECTED_C


def _idle_graph(root, **extra) -> list[Unit]:
    """a and b start together; b kills a's worker once it is idle; c (after a and b) and d
    (after b) are handed out next, e after c."""
    args = {"root": str(root)} | extra
    return [
        Unit("a", "toy", 0, args=args),
        Unit("b", "toy", 0, args=args | {"kill_idle": "a"}),
        Unit("c", "toy", 0, deps=("a", "b"), args=args),
        Unit("d", "toy", 0, deps=("b",), args=args),
        Unit("e", "toy", 0, deps=("c",), args=args),
    ]


def test_a_worker_killed_while_idle_is_replaced_and_nothing_is_lost(tmp_path):
    executor = ProcessExecutor(workers=2, devices=["cpu"], threads=1)
    outcome = executor.run(_idle_graph(tmp_path), toy_runner)
    assert not outcome.failed and not outcome.skipped
    assert sorted(outcome.finished) == ["a", "b", "c", "d", "e"]
    assert (tmp_path / "e.txt").read_text() == "(e (c (a) (b)))"
    pids = {(tmp_path / f"{name}.pid").read_text() for name in "cd"}
    assert (tmp_path / "a.pid").read_text() not in pids  # the killed worker ran nothing more


def test_a_unit_handed_to_a_worker_that_just_died_fails_alone_and_a_resume_redoes_it(
    tmp_path, monkeypatch
):
    """The worker dies between the pool's look at it and the hand-over (here: the pool
    takes every worker for alive): the unit is reported failed, the others go on, and a
    rerun that skips finished units runs only the failed one and what needs it."""
    with monkeypatch.context() as patch:
        patch.setattr(mp.process.BaseProcess, "is_alive", lambda self: True)
        executor = ProcessExecutor(workers=2, devices=["cpu"], threads=1)
        outcome = executor.run(_idle_graph(tmp_path, skip_done=True), toy_runner)
    assert list(outcome.failed) == ["c"]
    assert "worker process it was handed to died" in outcome.failed["c"]
    assert outcome.skipped == {"e": "c"}
    assert sorted(outcome.finished) == ["a", "b", "d"]
    (tmp_path / "ran.txt").unlink()
    rerun = executor.run(_idle_graph(tmp_path, skip_done=True), toy_runner)
    assert not rerun.failed and sorted(rerun.finished) == ["a", "b", "c", "d", "e"]
    assert sorted((tmp_path / "ran.txt").read_text().split()) == ["c", "e"]
    assert (tmp_path / "e.txt").read_text() == "(e (c (a) (b)))"


def test_ray_runs_the_graph_and_reports_failures(tmp_path):
    pytest.importorskip("ray")
    executor = RayExecutor(num_cpus=2)
    outcome = executor.run(_graph(tmp_path, e={"raise": True}), toy_runner)
    assert sorted(outcome.finished) == ["a", "b", "c", "d"]
    assert list(outcome.failed) == ["e"] and "told to fail" in outcome.failed["e"]
    assert (tmp_path / "c.txt").read_text() == EXPECTED_C


def test_bad_graphs_are_refused():
    with pytest.raises(ConfigError, match="unknown units"):
        check_graph([Unit("a", "toy", 0, deps=("zz",))])
    with pytest.raises(ConfigError, match="depend on each other"):
        check_graph([Unit("a", "toy", 0, deps=("b",)), Unit("b", "toy", 0, deps=("a",))])


def test_error_summary_is_the_last_exception_of_a_traceback():
    import traceback

    from bayesdistill.errors import ConfigError
    from bayesdistill.runner.graph import error_summary

    try:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise ConfigError("config 'x' is invalid:\n  student.losses.0: bad") from exc
    except ConfigError:
        text = traceback.format_exc()
    assert error_summary(text) == (
        "bayesdistill.errors.ConfigError: config 'x' is invalid:\n  student.losses.0: bad"
    )
    died = "the worker process running it died (exit code -9: killed, or out of memory)"
    assert error_summary(died) == died

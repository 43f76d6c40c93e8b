"""Several units on one device: ``--units-per-device`` and ``--gpus-per-unit`` and how they
combine with the other executor options; `DeviceBudget`'s decisions (with made-up memory
figures); a unit that does not fit waits, and one that runs out of GPU memory beside others
is rerun once, alone (with fake memory figures and a fake out-of-memory error, on the CPU);
a packed study gives the sequential study's results."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from bayesdistill.cli.main import app
from bayesdistill.cli.options import executor_overrides
from bayesdistill.config import dump_config, load_config
from bayesdistill.config.runtime import ExecutorConfig, ExecutorName
from bayesdistill.errors import ConfigError
from bayesdistill.runner.executors import LocalExecutor, ProcessExecutor
from bayesdistill.runner.graph import Placement, Unit
from bayesdistill.runner.packing import (
    GIB,
    HEADROOM_BYTES,
    DeviceBudget,
    has_room,
    is_out_of_memory,
)
from bayesdistill.runner.ray_executor import RayExecutor
from bayesdistill.runner.study import make_executor, run_study

from .packing_units import FakeMemory, packing_runner, ray_runner
from .test_parallel_study import TINY, _rows


@pytest.fixture
def cli_logging():
    """The command line sets up bayesdistill's logger on the stream CliRunner captures and
    then closes; put the logger back as it was for the tests that follow."""
    logger = logging.getLogger("bayesdistill")
    state = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = state


def _student(seed: int, loss: str = "kd") -> Unit:
    args = {"loss": loss, "kind": "laplace"}
    return Unit(f"seed_{seed}/student/{loss}/laplace", "student", seed, (), args)


# --- the options -----------------------------------------------------------------------


def _executor(**values) -> ExecutorConfig:
    return load_config(
        None, [f"runtime.executor.{k}={v}" for k, v in values.items()]
    ).runtime.executor


def test_units_per_device_gives_each_device_that_many_workers():
    config = _executor(name="processes", devices="[cuda:0,cuda:1]", units_per_device=4)
    assert config.pool_size() == 8
    executor = make_executor(config, torch.device("cuda"))
    assert isinstance(executor, ProcessExecutor) and executor.workers == 8
    devices = [executor.placement(i).device for i in range(8)]
    assert devices.count("cuda:0") == devices.count("cuda:1") == 4
    assert executor.threads == max(1, (os.cpu_count() or 1) // 8)
    same = _executor(name="processes", devices="[cuda:0,cuda:1]", units_per_device=4, workers=8)
    assert same.pool_size() == 8  # a consistent workers count is accepted
    assert _executor(name="processes").pool_size() == 2  # neither: the old default
    assert _executor(name="processes", workers=3).pool_size() == 3


def test_the_resolved_config_reloads():
    """A study's config.yaml is what its units load: the options must survive the trip."""
    config = load_config(
        {**TINY, "runtime": {"executor": {"name": "processes", "units_per_device": 2}}}
    )
    again = load_config(yaml.safe_load(dump_config(config)))
    assert again.runtime.executor == config.runtime.executor


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "name": "processes",
                "devices": "[cuda:0,cuda:1]",
                "units_per_device": 2,
                "workers": 3,
            },
            r"workers=3 disagrees with units_per_device=2 on 2 device\(s\) \(cuda:0, cuda:1\), "
            r"which makes 4 workers",
        ),
        (
            {"name": "processes", "units_per_device": 0},
            r"units_per_device.*greater than or equal to 1",
        ),
        (
            {"units_per_device": 2},
            r"units_per_device=2 is an option of executor 'processes'.*'local'",
        ),
        (
            {"name": "ray", "units_per_device": 4},
            r"'processes'.*'ray'.*gpus_per_unit=1/K packs K per GPU",
        ),
        (
            {"name": "ray", "gpus_per_unit": 0},
            r"gpus_per_unit must be a share of one GPU in \(0, 1\].*got 0",
        ),
        ({"name": "ray", "gpus_per_unit": 2}, r"gpus_per_unit must be .* got 2"),
        ({"name": "ray", "gpus_per_unit": -0.5}, r"gpus_per_unit .* got -0.5"),
        ({"name": "ray", "gpus_per_unit": ".nan"}, r"gpus_per_unit .* got nan"),
        (
            {"name": "processes", "gpus_per_unit": 0.5},
            r"gpus_per_unit=0.5 is an option of executor 'ray'",
        ),
        ({"name": "processes", "unit_memory_gib": 0}, r"unit_memory_gib.*greater than 0"),
    ],
)
def test_bad_combinations_are_refused_naming_the_values(values, message):
    with pytest.raises(ConfigError, match=message):
        _executor(**values)


def test_the_command_line_flags_become_these_options(cli_logging):
    flags = executor_overrides("processes", None, "cuda:0,cuda:1", None, 4, None)
    assert "runtime.executor.units_per_device=4" in flags
    assert "runtime.executor.workers=null" in flags  # the flag sizes the pool, not the file
    config = load_config({**TINY, "runtime": {"executor": {"workers": 3}}}, flags)
    assert config.runtime.executor.pool_size() == 8
    with pytest.raises(ConfigError, match="workers=3 disagrees"):
        load_config(None, executor_overrides("processes", 3, "cuda:0,cuda:1", None, 4, None))
    ray = load_config(None, executor_overrides("ray", None, None, None, None, 0.25))
    assert ray.runtime.executor.gpus_per_unit == 0.25
    result = CliRunner().invoke(app, ["study", "--help"])
    assert "--units-per-device" in result.output and "--gpus-per-unit" in result.output


def test_gpus_per_unit_is_what_each_ray_task_asks_for():
    pytest.importorskip("ray")
    config = _executor(name="ray", gpus_per_unit=0.25, threads=2)
    on_gpu = make_executor(config, torch.device("cuda"))
    assert isinstance(on_gpu, RayExecutor)
    assert on_gpu.task_options() == {"num_cpus": 2, "num_gpus": 0.25, "max_retries": 0}
    assert make_executor(config, torch.device("cpu")).task_options()["num_gpus"] == 0.0
    whole = make_executor(_executor(name="ray"), torch.device("cuda"))
    assert whole.task_options()["num_gpus"] == 1.0  # the default: a GPU per unit
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ConfigError, match=f"gpus_per_task must be .*got {bad}"):
            RayExecutor(gpus_per_task=bad)


def test_a_pool_refuses_a_bad_memory_figure():
    with pytest.raises(ConfigError, match="unit_memory_gib must be > 0 GiB, got -1"):
        ProcessExecutor(2, ["cuda:0"], unit_memory_gib=-1)


# --- DeviceBudget ----------------------------------------------------------------------


def test_nothing_known_starts_unchecked_and_an_empty_device_takes_anything():
    budget = DeviceBudget()
    a, b = _student(0), _student(0, "soft_ce")
    assert budget.may_start(a, "cuda:0") and budget.required(a, "cuda:0") is None
    budget.started(a, "cuda:0")
    assert budget.may_start(b, "cuda:0")
    assert budget.required(b, "cuda:0") is None  # no estimate yet: optimistic


def test_the_estimate_is_the_peak_of_the_same_unit_else_of_its_kind_else_the_configured():
    budget = DeviceBudget()
    budget.started(_student(0), "cuda:0")
    budget.started(_student(0, "soft_ce"), "cuda:0")
    budget.ended(_student(0), "cuda:0", peak=3 * GIB)
    budget.ended(_student(0, "soft_ce"), "cuda:0", peak=5 * GIB)
    assert budget.need(_student(1)) == 3 * GIB  # the same unit of another seed
    assert budget.need(_student(1, "dkd")) == 5 * GIB  # else the largest of its kind
    assert budget.need(Unit("seed_1/network", "network", 1)) is None
    budget.started(_student(1, "soft_ce"), "cuda:0")
    assert budget.required(_student(1), "cuda:0") == 3 * GIB + HEADROOM_BYTES
    configured = DeviceBudget(unit_bytes=2 * GIB)
    assert configured.need(_student(1)) == 2 * GIB
    assert has_room(2 * GIB + HEADROOM_BYTES, 3 * GIB)
    assert not has_room(2 * GIB + HEADROOM_BYTES, 2 * GIB)
    assert has_room(None, 0) and has_room(GIB, None)


def test_a_unit_that_does_not_fit_waits_for_a_unit_on_its_device_to_end():
    budget = DeviceBudget(headroom=0)
    big, small, other = Unit("big", "teacher", 0), _student(0), _student(0, "soft_ce")
    budget.started(other, "cuda:0")
    budget.ended(other, "cuda:0", peak=2 * GIB)  # students are known to need 2 GiB
    budget.started(other, "cuda:0")
    budget.started(_student(1), "cuda:0")
    budget.held(big, "cuda:0", free=5 * GIB)  # its worker found 5 GiB free: not enough
    assert not budget.may_start(big, "cuda:0")
    assert budget.may_start(big, "cuda:1")  # another device may take it
    assert budget.may_start(small, "cuda:0")  # 2 GiB fits in the 5 measured
    budget.started(small, "cuda:0")
    assert budget.may_start(_student(2), "cuda:0")  # 2 more fit in the 3 left
    budget.started(_student(2), "cuda:0")
    assert not budget.may_start(_student(3), "cuda:0")  # 1 GiB left
    assert not budget.may_start(Unit("n", "network", 0), "cuda:0")  # unknown: not now
    budget.ended(small, "cuda:0", peak=2 * GIB)
    assert budget.may_start(big, "cuda:0")  # memory came back: it may look again
    assert budget.required(big, "cuda:0") is None  # nothing known of it


def test_a_held_unit_never_waits_for_an_empty_device():
    budget = DeviceBudget(unit_bytes=GIB)
    a, b = _student(0), _student(1)
    budget.started(a, "cuda:0")
    budget.ended(a, "cuda:0")  # a ended before b's worker answered
    budget.held(b, "cuda:0", free=0)
    assert budget.may_start(b, "cuda:0") and budget.required(b, "cuda:0") is None
    budget.started(a, "cuda:0")
    budget.held(b, "cuda:0", free=0)
    budget.ended(a, "cuda:0")
    assert budget.may_start(b, "cuda:0") and budget.required(b, "cuda:0") is None


def test_out_of_memory_beside_others_reruns_once_alone_after_they_end():
    budget = DeviceBudget()
    a, b, c = _student(0), _student(1), _student(2)
    budget.started(a, "cuda:0")
    budget.started(b, "cuda:0")
    assert budget.out_of_memory(a, "cuda:0")  # it had company: rerun
    assert not budget.may_start(a, "cuda:0")  # not while b runs
    assert not budget.may_start(a, "cuda:1")  # where it ran out, alone
    assert not budget.may_start(c, "cuda:0")  # nothing new starts there meanwhile
    assert budget.may_start(c, "cuda:1")
    budget.ended(b, "cuda:0")
    assert budget.may_start(a, "cuda:0") and not budget.may_start(c, "cuda:0")
    budget.started(a, "cuda:0")
    assert not budget.may_start(c, "cuda:0")  # it runs alone
    assert not budget.out_of_memory(a, "cuda:0")  # again: reported
    assert budget.may_start(c, "cuda:0")


def test_out_of_memory_alone_is_not_rerun():
    budget = DeviceBudget()
    budget.started(_student(0), "cuda:0")
    assert not budget.out_of_memory(_student(0), "cuda:0")
    assert budget.may_start(_student(0), "cuda:0")  # nothing pending on the device


def test_out_of_memory_errors_are_told_from_other_errors():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not torch's


# --- the pool, with fake memory figures and a fake out-of-memory error ----------------


def _attempts(root: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (root / f"{name}.attempts").read_text().splitlines()]


def _pair(root: Path, a: dict, b: dict) -> list[Unit]:
    return [
        Unit("a", "toy", 0, args={"root": str(root), **a}),
        Unit("b", "toy", 0, args={"root": str(root), **b}),
    ]


def test_units_share_a_device_where_their_memory_is_free(tmp_path):
    pool = ProcessExecutor(2, ["cpu"], threads=1, memory=FakeMemory(free=100 * GIB))
    units = _pair(tmp_path, {"wait_for": "b"}, {"wait_for": "a"})
    outcome = pool.run(units, packing_runner)
    assert sorted(outcome.finished) == ["a", "b"], outcome.failed
    assert _attempts(tmp_path, "a")[0]["other_started"]  # they ran at the same time
    assert _attempts(tmp_path, "b")[0]["other_started"]


def test_a_unit_that_does_not_fit_waits_until_the_other_ends(tmp_path):
    pool = ProcessExecutor(
        2, ["cpu"], threads=1, unit_memory_gib=1.0, memory=FakeMemory(free=GIB // 10)
    )
    outcome = pool.run(_pair(tmp_path, {"sleep": 1.0}, {"sleep": 1.0}), packing_runner)
    assert sorted(outcome.finished) == ["a", "b"], outcome.failed
    (a,), (b,) = _attempts(tmp_path, "a"), _attempts(tmp_path, "b")
    first, second = sorted([a, b], key=lambda r: r["start"])
    assert second["start"] >= first["end"]  # one after the other, never both at once


def test_out_of_memory_beside_another_unit_reruns_alone_after_it(tmp_path):
    pool = ProcessExecutor(2, ["cpu"], threads=1, memory=FakeMemory(free=100 * GIB))
    units = _pair(tmp_path, {"wait_for": "b", "oom": "once"}, {"wait_for": "a", "sleep": 0.5})
    outcome = pool.run(units, packing_runner)
    assert sorted(outcome.finished) == ["a", "b"] and not outcome.failed
    first, rerun = _attempts(tmp_path, "a")
    assert first["other_started"] and not first["other_ended"]  # ran out beside b
    assert rerun["other_ended"]  # rerun once b had ended


def test_out_of_memory_again_when_alone_is_reported(tmp_path):
    pool = ProcessExecutor(2, ["cpu"], threads=1, memory=FakeMemory(free=100 * GIB))
    units = _pair(tmp_path, {"wait_for": "b", "oom": "always"}, {"wait_for": "a"})
    outcome = pool.run(units, packing_runner)
    assert outcome.finished == ["b"] and list(outcome.failed) == ["a"]
    assert len(_attempts(tmp_path, "a")) == 2
    report = outcome.failed["a"]
    assert "OutOfMemoryError" in report
    assert report.rstrip().endswith(
        "it ran out of GPU memory on cpu beside other units, and again when rerun alone "
        "there: lower its batch size or network width"
    )


def test_out_of_memory_alone_is_reported_at_once(tmp_path):
    pool = ProcessExecutor(1, ["cpu"], threads=1, memory=FakeMemory(free=100 * GIB))
    units = _pair(tmp_path, {"oom": "always"}, {})
    outcome = pool.run(units, packing_runner)
    assert outcome.finished == ["b"] and list(outcome.failed) == ["a"]
    assert len(_attempts(tmp_path, "a")) == 1
    assert "with no other unit there" in outcome.failed["a"]


def test_ray_packs_units_on_a_share_of_one_gpu(tmp_path):
    """A local Ray told it has one GPU (none is used: the runner only records)."""
    pytest.importorskip("ray")
    ray_executor = RayExecutor(num_cpus=2, num_gpus=1, cpus_per_task=1, gpus_per_task=0.5)
    units = _pair(tmp_path, {"wait_for": "b"}, {"wait_for": "a"})
    outcome = ray_executor.run(units, ray_runner)
    assert sorted(outcome.finished) == ["a", "b"], outcome.failed
    for name in ("a", "b"):
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert record["resources"] == {"CPU": 1.0, "GPU": 0.5}
        assert record["device"] == "cuda" and record["other_started"]  # both on the one GPU


# --- a packed study --------------------------------------------------------------------


def test_a_packed_study_gives_the_sequential_results(tmp_path, cli_logging):
    threads = torch.get_num_threads()
    try:
        run_study(
            load_config(TINY),
            tmp_path / "sequential",
            progress=False,
            executor=LocalExecutor(Placement(threads=1)),
        )
    finally:
        torch.set_num_threads(threads)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "packed"
    command = ["study", str(config_file), "runtime.executor.threads=1", "--out", str(out)]
    command += ["--no-progress", "--executor", "processes", "--devices", "cpu"]
    result = CliRunner().invoke(app, [*command, "--units-per-device", "2"])
    assert result.exit_code == 0, result.output
    assert _rows(out) == _rows(tmp_path / "sequential")  # one thread each: bit for bit
    executor = yaml.safe_load((out / "config.yaml").read_text())["runtime"]["executor"]
    assert executor["units_per_device"] == 2 and executor["name"] == ExecutorName.PROCESSES.value

"""A study's units on several processes or on Ray give the sequential study's results;
a killed worker is reported and a resume finishes; merged folders give one table."""

from __future__ import annotations

import csv
import os
import re
import signal
import threading
import time

import pytest
import torch

from bayesdistill.config import load_config
from bayesdistill.errors import ConfigError
from bayesdistill.runner import run_study
from bayesdistill.runner.executors import LocalExecutor, ProcessExecutor
from bayesdistill.runner.graph import Placement, StudyFailedError
from bayesdistill.runner.merge import merge_studies
from bayesdistill.runner.ray_executor import RayExecutor

TINY = {
    "data": {"name": "synthetic", "num_samples": 240, "num_classes": 3, "dim": 5},
    "teacher": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 2, "batch_size": 32}},
    "teachers": ["none", "deterministic", {"name": "laplace", "grid_points": 3}],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 2, "batch_size": 16},
        "losses": [{"name": "kd", "temperature": 2.0}, "soft_ce"],
    },
    "seeds": [0, 1],
    "device": "cpu",
}


def _rows(folder) -> list[dict[str, str]]:
    with open(folder / "results.csv", encoding="utf-8") as handle:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("sequential") / "run"
    try:
        run_study(
            load_config(TINY), out, progress=False, executor=LocalExecutor(Placement(threads=1))
        )
    finally:
        torch.set_num_threads(threads)
    return out


def test_a_process_pool_gives_the_sequential_results(tmp_path, sequential):
    out = tmp_path / "run"
    run_study(
        load_config(TINY), out, progress=False, executor=ProcessExecutor(2, ["cpu"], threads=1)
    )
    assert _rows(out) == _rows(sequential)
    assert (out / "logs" / "seed_1__student__kd__laplace.log").is_file()


def test_ray_gives_the_sequential_results(tmp_path, sequential):
    pytest.importorskip("ray")
    out = tmp_path / "run"
    run_study(
        load_config(TINY), out, progress=False, executor=RayExecutor(num_cpus=2, cpus_per_task=1)
    )
    assert _rows(out) == _rows(sequential)


def test_a_killed_worker_is_reported_and_a_resume_finishes_the_same_study(tmp_path, sequential):
    config = {**TINY, "teacher": {**TINY["teacher"], "train": {"epochs": 2, "batch_size": 32}}}
    out = tmp_path / "run"
    log = out / "logs" / "seed_0__network.log"
    killed = []

    def kill_the_network_unit() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if log.is_file():
                match = re.search(r"process (\d+)", log.read_text())
                if match:
                    os.kill(int(match.group(1)), signal.SIGKILL)
                    killed.append(int(match.group(1)))
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_the_network_unit)
    watcher.start()
    with pytest.raises(
        StudyFailedError, match=r"(?s)seed_0/network.*worker process running it died"
    ):
        run_study(
            load_config(config),
            out,
            progress=False,
            executor=ProcessExecutor(2, ["cpu"], threads=1),
        )
    watcher.join()
    assert killed
    assert not (out / "results.csv").is_file() or _rows(out) != _rows(sequential)
    run_study(
        load_config(config),
        out,
        resume=True,
        progress=False,
        executor=ProcessExecutor(2, ["cpu"], threads=1),
    )
    assert _rows(out) == _rows(sequential)


def test_merging_runs_of_other_seeds_gives_the_table_of_one_run(tmp_path, sequential, one_thread):
    local = LocalExecutor(Placement(threads=1))
    run_study(load_config({**TINY, "seeds": [0]}), tmp_path / "a", progress=False, executor=local)
    run_study(load_config({**TINY, "seeds": [1]}), tmp_path / "b", progress=False, executor=local)
    merged = merge_studies([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert _rows(merged) == _rows(sequential)
    assert "seeds: [0, 1]" in (merged / "results.md").read_text()


def test_incompatible_runs_are_refused_with_the_difference_named(tmp_path, one_thread):
    local = LocalExecutor(Placement(threads=1))
    run_study(load_config({**TINY, "seeds": [0]}), tmp_path / "a", progress=False, executor=local)
    other = {
        **TINY,
        "seeds": [1],
        "student": {**TINY["student"], "train": {"epochs": 3, "batch_size": 16}},
    }
    run_study(load_config(other), tmp_path / "b", progress=False, executor=local)
    with pytest.raises(ConfigError, match=r"differ in .*student\.train\.epochs.*2.*3"):
        merge_studies([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert not (tmp_path / "m").exists()

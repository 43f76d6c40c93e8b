"""The teacher network trains on a seed stream of its own, not its initialisation's (so
dropout's randomness and the batch order are not tied to the initial weights); folders
recorded before keep the old stream when resumed and give their old results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from bayesdistill.config import load_config
from bayesdistill.errors import ConfigError
from bayesdistill.runner import RunLayout, run_study, run_teachers
from bayesdistill.runner import teachers as teacher_stage
from bayesdistill.runner.common import TEACHER_INIT_STREAM, TEACHER_TRAIN_STREAM, load_data
from bayesdistill.runner.executors import LocalExecutor
from bayesdistill.runner.graph import Placement
from bayesdistill.runner.identity import TEACHER_TRAIN_STREAM_FACT
from bayesdistill.runner.merge import merge_studies
from bayesdistill.seeding import derive_seed

SEED = 3
TINY = {
    "data": {"name": "synthetic", "num_samples": 200, "num_classes": 3, "dim": 4},
    "teacher": {
        "model": {"name": "mlp", "hidden": [16], "dropout": 0.3},
        "train": {"epochs": 2, "batch_size": 32},
    },
    "teachers": ["none", "deterministic"],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 1, "batch_size": 32},
        "losses": ["soft_ce"],
    },
    "seeds": [SEED],
    "device": "cpu",
}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["weights"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained_on(tmp_path_factory) -> dict[int, dict[str, torch.Tensor]]:
    """The teacher network of ``SEED`` trained on each stream (initialised alike)."""
    config = load_config(TINY)
    splits = load_data(config.data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for stream in (TEACHER_INIT_STREAM, TEACHER_TRAIN_STREAM):
            network = teacher_stage.train_teacher_network(
                config,
                splits,
                SEED,
                tmp_path_factory.mktemp(f"stream_{stream}"),
                torch.device("cpu"),
                train_stream=stream,
                resume=False,
                progress=False,
            )
            out[stream] = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    finally:
        torch.set_num_threads(threads)
    return out


def _as_old_folder(folder: Path, pieces: Path) -> None:
    """Make ``folder`` look like a run recorded before the fact, killed before its teacher
    network finished: run.json without ``teacher_train_stream``, the pieces removed."""
    identity = RunLayout(folder).identity
    record = json.loads(identity.read_text())
    del record[TEACHER_TRAIN_STREAM_FACT]
    record["finished"] = False
    identity.write_text(json.dumps(record))
    for name in ("teacher_network", "teachers", "students"):
        shutil.rmtree(pieces / name, ignore_errors=True)
    for name in ("results.csv", "results.md"):
        (folder / name).unlink(missing_ok=True)


def test_a_new_run_trains_its_teacher_network_on_its_own_stream(
    tmp_path, monkeypatch, trained_on, one_thread
):
    seeds: list[int] = []
    fit = teacher_stage.fit

    def recording(*args, **kwargs):
        seeds.append(kwargs["seed"])
        return fit(*args, **kwargs)

    monkeypatch.setattr(teacher_stage, "fit", recording)
    out = tmp_path / "run"
    run_teachers(load_config(TINY), out, progress=False)
    assert seeds == [derive_seed(SEED, TEACHER_TRAIN_STREAM)]
    assert derive_seed(SEED, TEACHER_TRAIN_STREAM) != derive_seed(SEED, TEACHER_INIT_STREAM)
    layout = RunLayout(out)
    record = json.loads(layout.identity.read_text())
    assert record[TEACHER_TRAIN_STREAM_FACT] == TEACHER_TRAIN_STREAM
    network = _weights(layout.pieces.network.network)
    assert _same(network, trained_on[TEACHER_TRAIN_STREAM])
    assert not _same(network, trained_on[TEACHER_INIT_STREAM])


def test_an_old_teacher_run_resumes_on_the_old_stream(tmp_path, trained_on, one_thread):
    out = tmp_path / "run"
    run_teachers(load_config(TINY), out, progress=False)
    _as_old_folder(out, out)
    run_teachers(load_config(TINY), out, resume=True, progress=False)
    layout = RunLayout(out)
    assert _same(_weights(layout.pieces.network.network), trained_on[TEACHER_INIT_STREAM])
    record = json.loads(layout.identity.read_text())
    assert record["finished"] and TEACHER_TRAIN_STREAM_FACT not in record


def test_an_old_study_resumes_on_the_old_stream_and_is_not_merged_with_a_new_one(
    tmp_path, trained_on, one_thread
):
    local = LocalExecutor(Placement(threads=1))
    new = tmp_path / "new"
    run_study(load_config(TINY), new, progress=False, executor=local)
    network = RunLayout(new).seed(SEED).network.network
    assert _same(_weights(network), trained_on[TEACHER_TRAIN_STREAM])
    old = Path(shutil.copytree(new, tmp_path / "old"))
    _as_old_folder(old, RunLayout(old).seed(SEED).folder)
    run_study(load_config(TINY), old, resume=True, progress=False, executor=local)
    network = RunLayout(old).seed(SEED).network.network
    assert _same(_weights(network), trained_on[TEACHER_INIT_STREAM])
    assert TEACHER_TRAIN_STREAM_FACT not in json.loads(RunLayout(old).identity.read_text())
    with pytest.raises(ConfigError, match=r"teacher_train_stream \(run.json\): 1 in .*, 6 in"):
        merge_studies([old, new], tmp_path / "merged")

"""DDP on the CPU (gloo, 2 processes under torchrun): the same trajectory as one process.

A 2-process run whose ranks each take half of every global batch of B examples ends with
the weights of a 1-process run with batch B (up to float summation order), for one-hot
training and for KD, including an uneven last batch; a killed 2-process run resumes to
the weights of an uninterrupted one; only rank 0 writes files; the CLI runs a study under
``torchrun -m bayesdistill`` with the results of a 1-process study.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bayesdistill.errors import ConfigError
from bayesdistill.train.batches import Shard, TensorBatches

SCRIPT = Path(__file__).with_name("ddp_script.py")
TOLERANCE = 1e-5


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("WORLD_SIZE", None)
    return env


def _torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", *args],
        capture_output=True,
        text=True,
        env=_env(),
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


def _single(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=_env(),
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "weights.pt", weights_only=True)


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("loss", ["onehot_ce", "kd"])
def test_two_processes_follow_the_one_process_trajectory(tmp_path, loss):
    # 609 examples → 487 for training: 15 batches of 32 and a last one of 7 (ranks 4 + 3)
    one = _single(str(SCRIPT), str(tmp_path / "one"), "--loss", loss, "--samples", "609")
    assert one.returncode == 0, one.stderr
    two = _torchrun(str(SCRIPT), str(tmp_path / "two"), "--loss", loss, "--samples", "609")
    assert two.returncode == 0, two.stderr
    assert "world 2" in two.stdout and two.stdout.count("examples_per_second") == 1
    difference = _max_difference(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
    assert difference < TOLERANCE
    # the logged losses are global means (the uneven last batch included): the same curve
    curves = [
        [json.loads(r)["train_loss"] for r in (tmp_path / d / "run" / "metrics.jsonl").open()]
        for d in ("one", "two")
    ]
    assert curves[0] == pytest.approx(curves[1], abs=TOLERANCE)


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_weights(tmp_path):
    full = _torchrun(str(SCRIPT), str(tmp_path / "full"), "--loss", "kd")
    assert full.returncode == 0, full.stderr
    stopped = _torchrun(str(SCRIPT), str(tmp_path / "part"), "--loss", "kd", "--stop-at", "2")
    assert stopped.returncode != 0
    assert (tmp_path / "part" / "run" / "checkpoint.pt").is_file()
    assert not list((tmp_path / "part").rglob("*.tmp"))
    saved = torch.load(tmp_path / "part" / "run" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 2 and len(saved["rng"]) == 2  # every rank's random state
    assert not torch.equal(saved["rng"][0]["cpu"], saved["rng"][1]["cpu"])
    resumed = _torchrun(str(SCRIPT), str(tmp_path / "part"), "--loss", "kd", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert _max_difference(_weights(tmp_path / "full"), _weights(tmp_path / "part")) == 0.0
    lines = (tmp_path / "part" / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 4  # evals_per_epoch × epochs, no duplicates from rank 1


def test_a_world_size_that_does_not_divide_the_batch_is_refused(tmp_path):
    with pytest.raises(
        ConfigError, match=r"batch_size 32 .* divisible by the number of processes \(3\)"
    ):
        Shard(0, 3).check_batch_size(32)
    result = _torchrun(str(SCRIPT), str(tmp_path / "three"), nproc=3)
    assert result.returncode != 0
    assert "divisible by the number of processes (3)" in result.stderr


def test_shards_split_every_global_batch_and_weight_uneven_parts():
    from bayesdistill.data import ArrayData

    data = ArrayData(torch.randn(11, 2), torch.arange(11) % 2, 2)
    whole = [b.index.tolist() for b in TensorBatches(data, 4, seed=0).epoch(0)]
    parts = [
        [
            (b.index.tolist(), b.weight)
            for b in TensorBatches(data, 4, seed=0, shard=Shard(r, 2)).epoch(0)
        ]
        for r in range(2)
    ]
    for b, index in enumerate(whole):
        (first, w0), (second, w1) = parts[0][b], parts[1][b]
        assert first + second == index
        assert w0 == pytest.approx(2 * len(first) / len(index))
        assert w1 == pytest.approx(2 * len(second) / len(index))
    assert parts[0][-1][1] == pytest.approx(2 * 2 / 3) and parts[1][-1][1] == pytest.approx(2 / 3)
    # a last batch smaller than the world is skipped, so no rank is left without examples
    tiny = ArrayData(torch.randn(9, 2), torch.arange(9) % 2, 2)
    assert len(TensorBatches(tiny, 4, seed=0, shard=Shard(0, 4))) == 2
    assert len(TensorBatches(tiny, 4, seed=0)) == 3


def test_a_study_under_torchrun_gives_the_one_process_results(tmp_path):
    config = {
        "data": {"name": "synthetic", "num_samples": 300, "num_classes": 3, "dim": 4},
        "teacher": {
            "model": {"name": "mlp", "hidden": [8]},
            "train": {"epochs": 2, "batch_size": 32},
        },
        "teachers": ["none", "deterministic", {"name": "laplace", "grid_points": 3}],
        "student": {
            "model": {"name": "linear"},
            "train": {"epochs": 2, "batch_size": 32},
            "losses": [{"name": "kd", "temperature": 2.0}],
        },
        "seeds": [0],
        "device": "cpu",
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    one = _single("-m", "bayesdistill", "-q", "study", str(path), "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = _torchrun("-m", "bayesdistill", "-q", "study", str(path), "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("finished in") == 1  # rank 0 prints, rank 1 does not

    def rows(folder: str) -> list[dict[str, str]]:
        with open(tmp_path / folder / "results.csv", encoding="utf-8") as handle:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]

    a, b = rows("one"), rows("two")
    assert len(a) == len(b) == 5
    for row_a, row_b in zip(a, b, strict=True):
        for key in ("role", "teacher_kind", "loss", "accuracy"):
            assert row_a[key] == row_b[key]
        assert float(row_a["nll"]) == pytest.approx(float(row_b["nll"]), abs=1e-4)

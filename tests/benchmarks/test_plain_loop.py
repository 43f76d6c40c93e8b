"""benchmarks/plain_loop.py: K students trained as one stacked (vmapped) model follow the
same training as each one trained alone by the plain loop, and keep their own batch-norm
statistics; the KD written out is the library's `kd`."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from bayesdistill.losses import kd
from bayesdistill.train.accel import Acceleration

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("plain_loop")


def test_stacked_students_match_students_trained_alone(loop) -> None:
    cpu = torch.device("cpu")
    data, probs = loop.random_data(128, (3, 16, 16), cpu)  # 2 batches of 64 per epoch
    targets = loop.distinct_targets(probs, 3)
    stacked = [loop.student("resnet8", (3, 16, 16), cpu, seed=i) for i in range(3)]
    alone = [loop.student("resnet8", (3, 16, 16), cpu, seed=i) for i in range(3)]
    before = {k: v.clone() for k, v in stacked[1].state_dict().items()}

    loop.stacked_run("resnet8", data, targets, 2, Acceleration(), networks=stacked)
    for network, target in zip(alone, targets, strict=True):
        loop.plain_run("resnet8", data, target, 2, Acceleration(), True, network=network)

    for mine, reference in zip(stacked, alone, strict=True):
        got, want = mine.state_dict(), reference.state_dict()
        assert got.keys() == want.keys()
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)
    # each student trained (4 steps: more and the float-order differences of the grouped
    # convolutions grow past 1e-5 on these random data), and not as its neighbour did
    moved = stacked[1].state_dict()
    assert int(moved["body.0.1.num_batches_tracked"]) == 4
    assert not torch.allclose(moved["head.weight"], before["head.weight"])
    assert not torch.allclose(
        moved["body.0.1.running_mean"], stacked[0].state_dict()["body.0.1.running_mean"]
    )


def test_distinct_targets_are_class_rolls(loop) -> None:
    probs = torch.softmax(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), 1)
    targets = loop.distinct_targets(probs, 3)
    assert targets.shape == (3, 5, 4)
    torch.testing.assert_close(targets[0], probs)
    torch.testing.assert_close(targets[2][:, 2], probs[:, 0])


def test_plain_kd_is_the_library_kd(loop) -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 6, generator=gen)
    y = torch.randint(6, (8,), generator=gen)
    soft = torch.softmax(torch.randn(8, 6, generator=gen), 1)
    want = kd(logits, soft, y, **loop.KD_OPTIONS)
    torch.testing.assert_close(loop.plain_kd(logits, y, soft), want)

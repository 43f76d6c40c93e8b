"""Teacher targets end on the device where the student trains, and the CPU draws (batch
order, stored views) stay on the CPU whatever torch's default device.

No GPU here: the "meta" device stands in for a CUDA device. A CPU table indexed by a meta
index silently gives a CPU result and a CPU tensor meeting a meta one in a loss raises, as a
CPU table meets a CUDA batch; a draw made without a device under ``torch.device("meta")``
lands on meta, as one under ``torch.set_default_device("cuda")`` lands on the GPU (where a
CPU generator then fails).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayesdistill.data import DataSplits
from bayesdistill.data.augment import RandomShift
from bayesdistill.teachers import DeterministicTeacher
from bayesdistill.train.batches import epoch_order
from bayesdistill.train.targets import CachedTargets, OnlineTargets
from bayesdistill.train.views import ViewCache, ViewTargets
from tests.conftest import make_mlp

META = torch.device("meta")
ROW_SUM_TOLERANCE = 1e-6
"""How far from 1 a float32 row renormalised after bfloat16 inference may sum."""


class CpuTableTeacher:
    """A teacher with no network, like ``exact_bcp``: it lives on the CPU and answers with
    CPU probabilities (its first ``len(x)`` rows) whatever device ``x`` is on."""

    num_classes = 3
    device = torch.device("cpu")

    def __init__(self, rows: int = 8) -> None:
        self.probs = torch.softmax(torch.linspace(-1.0, 1.0, rows * 3).view(rows, 3), 1)

    def predict_proba(self, x: Tensor) -> Tensor:
        return self.probs[: len(x)]


def test_online_targets_come_back_on_the_inputs_device() -> None:
    teacher = CpuTableTeacher()
    x = torch.empty(5, 4, device=META)
    probs = OnlineTargets(teacher)(x, torch.arange(5, device=META))
    assert probs.device == META
    assert probs.shape == (5, 3)


def test_online_targets_on_the_cpu_are_the_teachers_own(tiny_splits: DataSplits) -> None:
    teacher = DeterministicTeacher(make_mlp(tiny_splits))
    x = tiny_splits.train.x[:64]
    probs = OnlineTargets(teacher)(x, torch.arange(64))
    assert torch.equal(probs, teacher.predict_proba(x))  # fp32: untouched, bit for bit


def test_online_targets_are_renormalised_in_float32_under_autocast(
    tiny_splits: DataSplits,
) -> None:
    teacher = DeterministicTeacher(make_mlp(tiny_splits))
    x = tiny_splits.train.x[:64]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = teacher.predict_proba(x)
        probs = OnlineTargets(teacher)(x, torch.arange(64))
    assert raw.dtype == torch.bfloat16  # what the teacher gives: rows off by ~1e-3
    assert probs.dtype == torch.float32
    assert float((probs.sum(1) - 1).abs().max()) <= ROW_SUM_TOLERANCE
    expected = raw.float() / raw.float().sum(1, keepdim=True)
    assert torch.equal(probs, expected)


def test_cached_targets_follow_the_index_to_its_device() -> None:
    table = torch.softmax(torch.linspace(-2.0, 2.0, 30).view(10, 3), 1)
    targets = CachedTargets(table)
    index = torch.tensor([7, 0, 3])
    assert torch.equal(targets(torch.empty(3, 4), index), table[index])
    on_meta = targets(torch.empty(3, 4, device=META), index.to(META))
    assert on_meta.device == META
    assert on_meta.shape == (3, 3)
    assert targets.probs.device == META  # moved once, not per step


def _view_cache(n: int = 6, views: int = 4, length: int = 5) -> ViewCache:
    gen = torch.Generator().manual_seed(3)
    params = RandomShift(max_shift=2).sample(n * views, gen, (length,)).view(n, views, 1)
    values = torch.softmax(torch.randn(n, views, 3, generator=gen), 2).half()
    return ViewCache(params.short(), values, None, 3)


def test_view_draws_stay_on_the_cpu_whatever_the_default_device() -> None:
    cache = _view_cache()
    targets = ViewTargets(cache, RandomShift(max_shift=2), torch.device("cpu"))
    x = torch.arange(30.0).view(6, 5)
    index = torch.tensor([4, 1, 5])
    expected = targets.draw(x[index], index, torch.Generator().manual_seed(9))
    with torch.device(META):
        got = targets.draw(x[index], index, torch.Generator().manual_seed(9))
    for a, b in zip(got, expected, strict=True):
        assert a.device == torch.device("cpu")
        assert torch.equal(a, b)


def test_batch_order_is_drawn_on_the_cpu_whatever_the_default_device() -> None:
    expected = epoch_order(50, seed=4, epoch=2)
    unshuffled = epoch_order(50, seed=4, epoch=2, shuffle=False)
    with torch.device(META):
        order = epoch_order(50, seed=4, epoch=2)
        plain = epoch_order(50, seed=4, epoch=2, shuffle=False)
    assert order.device == plain.device == torch.device("cpu")
    assert torch.equal(order, expected)
    assert torch.equal(plain, unshuffled)

"""Mini-batches of in-memory tensors, drawn by indexing (no per-sample collation).

Each epoch's order is a permutation drawn from a generator seeded by (seed, epoch), so
any epoch can be replayed exactly, e.g. after resuming a killed run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from bayesdistill.data.base import ArrayData
from bayesdistill.seeding import generator


@dataclass(frozen=True)
class Batch:
    """Inputs ``(B, ...)``, labels ``(B,)`` and their positions ``(B,)`` in the dataset."""

    x: Tensor
    y: Tensor
    index: Tensor


class TensorBatches:
    """Shuffled mini-batches over an `ArrayData` held on one device."""

    def __init__(
        self,
        data: ArrayData,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last and len(data) >= batch_size

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self, epoch: int) -> Tensor:
        n = len(self.data)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=generator(self.seed, epoch))

    def epoch(self, epoch: int) -> Iterator[Batch]:
        order = self.order(epoch).to(self.data.x.device)
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield Batch(self.data.x[index], self.data.y[index], index)

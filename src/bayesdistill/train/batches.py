"""Batch sources: where the training loop's mini-batches come from.

A *batch source* yields, for each epoch, the mini-batches ``Batch(x, y, index, weight)`` on
the training device. Two implementations share one batch order, so they train to the same
weights:

- `TensorBatches`: an in-memory `ArrayData` on the device, batched by indexing (no
  per-sample collation: the fast default for data that fits in memory);
- `LoaderBatches`: a `StreamData` (any map-style ``Dataset``) read through a
  ``DataLoader`` with workers and pinned memory, for data that does not.

Each epoch's order is a permutation drawn from a generator seeded by (seed, epoch), so any
epoch can be replayed exactly, e.g. after resuming a killed run. With a `Shard` (one rank
of a distributed run) every *global* batch of the order is split into ``world_size``
near-equal parts and the source yields this rank's part, weighted so that the ranks'
averaged gradients equal the global batch's (see `Batch.weight`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from bayesdistill.data.arrays import ArrayData
from bayesdistill.data.labelled import LabelledData, StreamData, check_labels
from bayesdistill.errors import ConfigError
from bayesdistill.seeding import derive_seed, generator

LOADER_STREAM = 17
"""Seed stream of a DataLoader's own generator (its workers' seeds): (seed, epoch, 17)."""
INFERENCE_BATCH_SIZE = 1024
"""Examples per forward pass when predicting over a whole set (no gradients)."""


@dataclass(frozen=True)
class Batch:
    """Inputs ``(B, ...)``, labels ``(B,)`` and their positions ``(B,)`` in the dataset.

    ``weight`` scales the batch-mean loss of one rank of a distributed run so that the
    mean over ranks of the weighted losses is the global batch's mean loss:
    ``weight = B_rank · world_size / B_global`` (1 on a single process, and whenever the
    ranks' parts are equal).
    """

    x: Tensor
    y: Tensor
    index: Tensor
    weight: float = 1.0


@dataclass(frozen=True)
class Shard:
    """This process's part of every global batch: rank ``rank`` of ``world_size``."""

    rank: int
    world_size: int

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank must lie in [0, {self.world_size}), got {self.rank}")

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise ConfigError(
                f"batch_size {batch_size} is the global batch of a distributed run and must "
                f"be divisible by the number of processes ({self.world_size}); use a "
                f"multiple of {self.world_size} (e.g. {self.world_size * max(1, batch_size // self.world_size)})"
            )

    def part(self, index: Tensor) -> tuple[Tensor, float]:
        """This rank's positions of a global batch ``index`` and its loss weight."""
        parts = torch.tensor_split(index, self.world_size)
        mine = parts[self.rank]
        return mine, len(mine) * self.world_size / len(index)


class BatchSource(Protocol):
    """Mini-batches on the training device, epoch by epoch."""

    def __len__(self) -> int:
        """Batches (optimisation steps) per epoch."""
        ...

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` (0-based); the same every time it is asked."""
        ...


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Optimisation steps per epoch over ``n`` examples (one process)."""
    return len(_Batching(n, batch_size, seed=0, shuffle=False, drop_last=drop_last, shard=None))


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> Tensor:
    """The order of examples in epoch ``epoch``: a permutation seeded by (seed, epoch).

    Drawn on the CPU whatever the training device (or torch's default device), so a run
    visits its examples in the same order on every device; batch sources move positions.
    """
    if not shuffle:
        return torch.arange(n, device="cpu")
    return torch.randperm(n, generator=generator(seed, epoch), device="cpu")


class _Batching:
    """Global batches of positions, shared by both sources."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool,
        drop_last: bool,
        shard: Shard | None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if shard is not None:
            shard.check_batch_size(batch_size)
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last and n >= batch_size
        self.shard = shard

    def __len__(self) -> int:
        n = self.n
        steps = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        remainder = 0 if self.drop_last else n % self.batch_size
        if self.shard is not None and 0 < remainder < self.shard.world_size:
            steps -= 1  # a last batch smaller than the world: see `positions`
        return steps

    def order(self, epoch: int) -> Tensor:
        return epoch_order(self.n, self.seed, epoch, self.shuffle)

    def positions(self, epoch: int) -> Iterator[tuple[Tensor, float]]:
        """This process's positions of each batch of ``epoch``, with their loss weights.

        In a distributed run, a last incomplete batch with fewer examples than processes
        is skipped (some rank would get none); every other batch is split across ranks.
        """
        order = self.order(epoch)
        for b in range(len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield (index, 1.0) if self.shard is None else self.shard.part(index)


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
        shard: Shard | None = None,
    ) -> None:
        self.data = data
        self.batching = _Batching(
            len(data), batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last, shard=shard
        )

    def __len__(self) -> int:
        return len(self.batching)

    def order(self, epoch: int) -> Tensor:
        """The order of the examples in epoch ``epoch`` (before sharding)."""
        return self.batching.order(epoch)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        device = self.data.x.device
        for index, weight in self.batching.positions(epoch):
            index = index.to(device)
            yield Batch(self.data.x[index], self.data.y[index], index, weight)


class _EpochBatchSampler:
    """The DataLoader's batch sampler: this process's positions of each batch of ``epoch``
    (set before each iteration)."""

    def __init__(self, batching: _Batching) -> None:
        self.batching = batching
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.batching)

    def __iter__(self) -> Iterator[list[int]]:
        for index, _ in self.batching.positions(self.epoch):
            yield index.tolist()


class LoaderBatches:
    """Mini-batches of a `StreamData` read through a ``DataLoader``, in the same order as
    `TensorBatches` would give for the same examples, moved to ``device``.

    Labels of every batch are checked against ``[0, C)`` as they arrive.
    """

    def __init__(
        self,
        data: StreamData,
        batch_size: int,
        *,
        seed: int,
        device: torch.device | str,
        shuffle: bool = True,
        drop_last: bool = False,
        shard: Shard | None = None,
    ) -> None:
        self.data = data
        self.device = torch.device(device)
        self.batching = _Batching(
            len(data), batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last, shard=shard
        )
        self.sampler = _EpochBatchSampler(self.batching)
        self.seed = seed
        # its own generator: iterating a DataLoader draws its workers' base seed from it,
        # which would otherwise come from (and move) the global generator, so dropout masks
        # would differ from the in-memory path; reseeded per epoch for exact resume
        self.generator = torch.Generator(device="cpu")  # a DataLoader takes a CPU one only
        self.loader = DataLoader(
            data.dataset,
            batch_sampler=self.sampler,
            generator=self.generator,
            **data.loader.keywords(self.device),
        )

    def __len__(self) -> int:
        return len(self.batching)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        self.sampler.epoch = epoch
        self.generator.manual_seed(derive_seed(self.seed, epoch, LOADER_STREAM))
        positions = list(self.batching.positions(epoch))
        for (x, y), (index, weight) in zip(self.loader, positions, strict=True):
            yield _to_device_batch(self.data, x, y, index, weight, self.device)


def _to_device_batch(
    data: StreamData, x: Tensor, y: Tensor, index: Tensor, weight: float, device: torch.device
) -> Batch:
    y = torch.as_tensor(y, dtype=torch.int64)
    check_labels(y, data.num_classes, "labels read from the dataset")
    non_blocking = device.type == "cuda"
    x = data.prepare(x.to(device, non_blocking=non_blocking))
    return Batch(x, y.to(device, non_blocking=non_blocking), index.to(device), weight)


def make_batches(
    data: LabelledData,
    batch_size: int,
    *,
    seed: int,
    device: torch.device | str,
    shuffle: bool = True,
    drop_last: bool = False,
    shard: Shard | None = None,
) -> TensorBatches | LoaderBatches:
    """The batch source for ``data``: `TensorBatches` (moved to ``device`` once) for
    `ArrayData`, `LoaderBatches` for `StreamData`."""
    if isinstance(data, StreamData):
        return LoaderBatches(
            data,
            batch_size,
            seed=seed,
            device=device,
            shuffle=shuffle,
            drop_last=drop_last,
            shard=shard,
        )
    if isinstance(data, ArrayData):
        return TensorBatches(
            data.to(device),
            batch_size,
            seed=seed,
            shuffle=shuffle,
            drop_last=drop_last,
            shard=shard,
        )
    raise TypeError(
        f"training data must be ArrayData or StreamData (or a batch source), got "
        f"{type(data).__name__}"
    )


def data_loader(
    data: LabelledData, device: torch.device | str, batch_size: int = INFERENCE_BATCH_SIZE
) -> DataLoader:
    """A ``DataLoader`` of ``(x, y)`` batches of ``data`` in order, for libraries that take
    one (laplace-torch): in-memory data on ``device``, streamed data read with its loader
    options (the library moves batches to its device)."""
    device = torch.device(device)
    if isinstance(data, ArrayData):
        return DataLoader(
            TensorDataset(data.x.to(device), data.y.to(device)), batch_size=batch_size
        )
    return DataLoader(data.prepared(), batch_size=batch_size, **data.loader.keywords(device))


def iterate(
    data: LabelledData, device: torch.device | str, batch_size: int = INFERENCE_BATCH_SIZE
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(x, y)`` batches of ``data`` in order, on ``device`` (for predictions and metrics)."""
    device = torch.device(device)
    if isinstance(data, ArrayData):
        for start in range(0, len(data), batch_size):
            yield (
                data.x[start : start + batch_size].to(device),
                data.y[start : start + batch_size].to(device),
            )
        return
    if not isinstance(data, StreamData):
        raise TypeError(f"expected ArrayData or StreamData, got {type(data).__name__}")
    loader = DataLoader(data.dataset, batch_size=batch_size, **data.loader.keywords(device))
    for start, (x, y) in zip(range(0, len(data), batch_size), loader, strict=False):
        index = torch.arange(start, start + len(y), device="cpu")  # moved with the batch
        batch = _to_device_batch(data, x, y, index, 1.0, device)
        yield batch.x, batch.y


def input_batches(
    data: Tensor | LabelledData, device: torch.device | str, batch_size: int = INFERENCE_BATCH_SIZE
) -> Iterator[Tensor]:
    """Consecutive input batches of ``data`` (a tensor of inputs, or labelled data) on
    ``device``."""
    if isinstance(data, Tensor):
        for start in range(0, len(data), batch_size):
            yield data[start : start + batch_size].to(device)
        return
    for x, _ in iterate(data, device, batch_size):
        yield x

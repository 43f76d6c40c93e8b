"""Train / validation / test splits and per-class subsets, each chosen by a seed.

`make_splits` turns what a dataset factory returns into standardised `DataSplits`: a
`RawDataset` into in-memory `ArrayData`, a `RawStream` into `StreamData` read from disk.
Both follow the same rules and checks (`_positions`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from bayesdistill.data.arrays import ArrayData
from bayesdistill.data.labelled import LoaderOptions, StreamData
from bayesdistill.data.raw import RawDataset, RawStream
from bayesdistill.data.standardize import Standardization, Standardizer, fit_in_batches
from bayesdistill.errors import ConfigError, DataError

STATS_BATCH_SIZE = 512
"""Examples per batch when fitting the standardisation to a streamed training split."""


@dataclass(frozen=True)
class DataSplits:
    """Standardised train / validation / test sets of one dataset: in-memory `ArrayData`,
    or `StreamData` for a dataset read from disk batch by batch."""

    name: str
    train: ArrayData | StreamData
    val: ArrayData | StreamData
    test: ArrayData | StreamData
    standardizer: Standardizer
    bayes_posterior: Callable[[Tensor], Tensor] | None = None
    bayes_state: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    @property
    def has_bcp(self) -> bool:
        return self.train.bcp is not None

    def with_train(self, train: ArrayData | StreamData) -> DataSplits:
        return replace(self, train=train)


def _generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: splits and subsets are drawn on the CPU (with
    ``device="cpu"``, whatever torch's default device), the same on every machine."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def split_indices(n: int, fractions: tuple[float, ...], seed: int) -> list[Tensor]:
    """Randomly partition ``range(n)`` into parts of the given fractions (summing to 1).

    Part sizes are ``floor(f·n)`` with the remainder added to the first part; each part's
    indices are sorted. The same (n, fractions, seed) always gives the same parts.
    """
    if any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
        raise ConfigError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    sizes = [math.floor(f * n) for f in fractions]
    sizes[0] += n - sum(sizes)
    perm = torch.randperm(n, generator=_generator(seed), device="cpu")
    parts, start = [], 0
    for size in sizes:
        parts.append(perm[start : start + size].sort().values)
        start += size
    return parts


def make_splits(
    raw: RawDataset | RawStream,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    standardize: Standardization | str = Standardization.FEATURE,
    loader: LoaderOptions | None = None,
) -> DataSplits:
    """Split a raw dataset into standardised train / validation / test sets.

    If the source has its own test set, it is kept and ``val_fraction`` of the remaining
    examples form the validation set; otherwise the examples are split into
    ``(1 − val − test, val, test)``. Inputs are standardised with training statistics,
    or with the source's published constants for ``Standardization.DATASET``.

    A `RawDataset` gives `ArrayData` splits, standardised once; a `RawStream` gives
    `StreamData` splits, read with ``loader`` and standardised batch by batch with
    statistics fitted in one pass over the training split (in-memory data is batched from
    its tensors: ``loader`` does not apply to it).

    Raises `ConfigError` for a fraction outside ``[0, 1)`` or fractions that leave no
    training share, and `DataError` for a split that would be empty.
    """
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ConfigError(f"{name} must lie in [0, 1), got {frac}")
    if isinstance(raw, RawStream):
        n, own_test = len(raw.train), raw.test
    else:
        n, own_test = len(raw.y), raw.y_test
    train_idx, val_idx, test_idx = _positions(
        raw.name, n, None if own_test is None else len(own_test), val_fraction, test_fraction, seed
    )
    mode = Standardization(standardize)
    if isinstance(raw, RawStream):
        return _stream_splits(raw, train_idx, val_idx, test_idx, mode, loader)
    return _array_splits(raw, train_idx, val_idx, test_idx, mode)


make_stream_splits = make_splits
"""The name streamed datasets were split with before `make_splits` took both kinds."""


def _positions(
    name: str,
    n: int,
    own_test: int | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Positions of the training, validation and test examples in the pool of ``n``; the
    test positions are None where the source has a test set of its own (of ``own_test``
    examples). Raises when a split would be empty."""
    test_idx = None
    if own_test is not None:
        train_idx, val_idx = split_indices(n, (1.0 - val_fraction, val_fraction), seed)
    else:
        if val_fraction + test_fraction >= 1.0:
            raise ConfigError(
                f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
            )
        train_idx, val_idx, test_idx = split_indices(
            n, (1.0 - val_fraction - test_fraction, val_fraction, test_fraction), seed
        )
    for part, idx in (("train", train_idx), ("validation", val_idx)):
        if len(idx) == 0:
            raise DataError(f"dataset '{name}' with {n} examples leaves an empty {part} set")
    if (own_test if test_idx is None else len(test_idx)) == 0:
        raise DataError(f"dataset '{name}' leaves an empty test set; raise test_fraction")
    return train_idx, val_idx, test_idx


def _array_splits(
    raw: RawDataset,
    train_idx: Tensor,
    val_idx: Tensor,
    test_idx: Tensor | None,
    mode: Standardization,
) -> DataSplits:
    if test_idx is None:
        test = (raw.x_test, raw.y_test, raw.bcp_test)
    else:
        test = (raw.x[test_idx], raw.y[test_idx], _take(raw.bcp, test_idx))
    if mode is Standardization.DATASET:
        standardizer = _published(raw, mode)
    else:
        standardizer = Standardizer.fit(raw.x[train_idx], mode)

    def build(x: Tensor, y: Tensor, bcp: Tensor | None) -> ArrayData:
        return ArrayData(standardizer(x), y, raw.num_classes, bcp)

    return DataSplits(
        name=raw.name,
        train=build(raw.x[train_idx], raw.y[train_idx], _take(raw.bcp, train_idx)),
        val=build(raw.x[val_idx], raw.y[val_idx], _take(raw.bcp, val_idx)),
        test=build(*test),  # type: ignore[arg-type]
        standardizer=standardizer,
        bayes_posterior=raw.bayes_posterior,
        bayes_state=raw.bayes_state,
    )


def _stream_splits(
    raw: RawStream,
    train_idx: Tensor,
    val_idx: Tensor,
    test_idx: Tensor | None,
    mode: Standardization,
    loader: LoaderOptions | None,
) -> DataSplits:
    train = raw.train.subset(train_idx)
    test = raw.test if test_idx is None else raw.train.subset(test_idx)
    if mode is Standardization.DATASET:
        standardizer = _published(raw, mode)
    else:
        batches = (x for x, _ in DataLoader(train.dataset, batch_size=STATS_BATCH_SIZE))
        standardizer = fit_in_batches(batches, tuple(train.input_shape), mode)
    options = {"standardizer": standardizer, "loader": loader or LoaderOptions()}
    return DataSplits(
        name=raw.name,
        train=replace(train, **options),  # type: ignore[arg-type]
        val=replace(raw.train.subset(val_idx), **options),  # type: ignore[arg-type]
        test=replace(test, **options),  # type: ignore[arg-type]
        standardizer=standardizer,
    )


def _published(raw: RawDataset | RawStream, mode: Standardization) -> Standardizer:
    """The normalisation constants ``raw`` publishes, for ``Standardization.DATASET``."""
    if raw.normalization is None:
        fitted = ", ".join(repr(m.value) for m in Standardization if m is not mode)
        raise ConfigError(
            f"dataset '{raw.name}' publishes no normalisation constants, so standardize="
            f"'dataset' is not available for it; use one of {fitted}"
        )
    return raw.normalization


def per_class_subset(
    labels: Tensor,
    *,
    count: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
    num_classes: int | None = None,
) -> Tensor:
    """Indices of a per-class subset: ``count`` examples or ``fraction`` of each class.

    With a fraction, each class keeps ``max(1, round(fraction · n_c))`` examples, computed
    exactly on the decimal the fraction is written as, ties to even like Python's `round`
    (5 % of 4490 = 224.5 → 224, 35 % of 90 = 31.5 → 32; in floating point 0.35 · 90 is
    31.4999…). The choice within each class is uniform at random from ``seed``; the result
    is sorted.
    Raises `ConfigError` if both or neither are given, or a class has too few examples.
    """
    if (count is None) == (fraction is None):
        raise ConfigError(
            f"give exactly one of count or fraction, got count={count}, fraction={fraction}"
        )
    if count is not None and count < 1:
        raise ConfigError(f"count per class must be >= 1, got {count}")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction per class must lie in (0, 1], got {fraction}")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    exact = None if fraction is None else Fraction(str(float(fraction)))
    gen = _generator(seed)
    chosen = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        n_c = len(members)
        k = count if exact is None else max(1, round(exact * n_c))
        if k > n_c:
            raise ConfigError(
                f"class {c} has {n_c} training examples, fewer than the {k} requested per class"
            )
        chosen.append(members[torch.randperm(n_c, generator=gen, device="cpu")[:k]])
    return torch.cat(chosen).sort().values


def _take(t: Tensor | None, idx: Tensor) -> Tensor | None:
    return None if t is None else t[idx]

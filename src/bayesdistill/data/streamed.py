"""Datasets read from disk example by example: image folders and memory-mapped arrays.

A streamed dataset's factory returns a `RawStream` (a training pool and optionally its own
test set, as `StreamData` without standardisation); `make_stream_splits` splits it into
train / validation / test `StreamData` like `make_splits` does for in-memory data, and
fits the standardisation to the training split in one pass over it (batch by batch, in
float64). Nothing but the labels is held in memory.

- ``image_folder``: torchvision's ``ImageFolder`` (``root/train/<class>/*.png`` and
  optionally ``root/test/<class>/*``), images resized to ``size × size`` RGB.
- ``arrays_on_disk``: arrays written by `bayesdistill.data.ondisk.save_arrays`
  (``root/train/{x,y}.npy`` and optionally ``root/test/``), memory-mapped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from bayesdistill.data.base import DataSplits, Standardization, Standardizer
from bayesdistill.data.ondisk import ondisk_data
from bayesdistill.data.splits import split_indices
from bayesdistill.data.stream import LoaderOptions, StreamData, stream_data
from bayesdistill.errors import ConfigError, DataError, DataFileNotFoundError

STATS_BATCH_SIZE = 512
"""Examples per batch when fitting the standardisation to a streamed training split."""


@dataclass(frozen=True)
class RawStream:
    """What a streamed dataset's factory returns: a training pool and maybe a test set."""

    name: str
    train: StreamData
    test: StreamData | None = None
    normalization: Standardizer | None = None

    def __post_init__(self) -> None:
        if self.test is not None:
            if self.test.num_classes != self.train.num_classes:
                raise DataError(
                    f"dataset '{self.name}': the test set has {self.test.num_classes} classes, "
                    f"the training set {self.train.num_classes}"
                )
            if self.test.input_shape != self.train.input_shape:
                raise DataError(
                    f"dataset '{self.name}': test inputs have shape {self.test.input_shape}, "
                    f"training inputs {self.train.input_shape}"
                )


def image_folder(*, root: str, size: int = 32) -> RawStream:
    """Images in class folders (torchvision ``ImageFolder``): ``root/train/<class>/...``
    and, if present, ``root/test/<class>/...``; resized to ``size × size`` RGB in [0, 1].

    Class indices follow the sorted folder names of ``root/train``.
    """
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import Compose, Resize, ToTensor

    if size < 1:
        raise ConfigError(f"size must be >= 1, got {size}")
    base = Path(root)
    train_dir = base / "train"
    if not train_dir.is_dir():
        raise DataFileNotFoundError(
            f"image_folder: no training folder '{train_dir}'; expected "
            f"{base}/train/<class name>/<image files> (and optionally {base}/test/...)"
        )
    transform = Compose([Resize((size, size)), _RGB(), ToTensor()])
    train = ImageFolder(str(train_dir), transform=transform)
    test = None
    if (base / "test").is_dir():
        test = ImageFolder(str(base / "test"), transform=transform)
        if test.classes != train.classes:
            raise DataError(
                f"image_folder: the test classes {test.classes} differ from the training "
                f"classes {train.classes}"
            )
    num_classes = len(train.classes)
    return RawStream(
        "image_folder",
        stream_data(train, num_classes=num_classes),
        None if test is None else stream_data(test, num_classes=num_classes),
    )


class _RGB:
    """Convert a PIL image to RGB (grey and palette images get three channels)."""

    def __call__(self, image):  # type: ignore[no-untyped-def]
        return image.convert("RGB")


def arrays_on_disk(*, root: str, num_classes: int | None = None) -> RawStream:
    """Memory-mapped arrays ``root/train/{x,y}.npy`` (and ``root/test/`` if present),
    written by `bayesdistill.data.ondisk.save_arrays`."""
    base = Path(root)
    train = ondisk_data(base / "train", num_classes=num_classes)
    test = None
    if (base / "test").is_dir():
        test = ondisk_data(base / "test", num_classes=train.num_classes)
    return RawStream("arrays_on_disk", train, test)


def make_stream_splits(
    raw: RawStream,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    standardize: Standardization | str = Standardization.FEATURE,
    loader: LoaderOptions | None = None,
) -> DataSplits:
    """Split a streamed dataset into standardised train / validation / test `StreamData`.

    The same rules as `make_splits`: a source's own test set is kept (``test_fraction`` is
    then unused), else ``(1 − val − test, val, test)`` of the pool; the standardisation is
    fitted to the training split (or the source's published constants for ``dataset``).
    """
    n = len(raw.train)
    if raw.test is not None:
        train_idx, val_idx = split_indices(n, (1.0 - val_fraction, val_fraction), seed)
        test = raw.test
    else:
        if val_fraction + test_fraction >= 1.0:
            raise ConfigError(
                f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
            )
        train_idx, val_idx, test_idx = split_indices(
            n, (1.0 - val_fraction - test_fraction, val_fraction, test_fraction), seed
        )
        test = raw.train.subset(test_idx)
    for part, idx in (("train", train_idx), ("validation", val_idx)):
        if len(idx) == 0:
            raise DataError(f"dataset '{raw.name}' with {n} examples leaves an empty {part} set")
    train = raw.train.subset(train_idx)
    standardizer = fit_stream_standardizer(train, Standardization(standardize), raw)
    options = {"standardizer": standardizer, "loader": loader or LoaderOptions()}
    return DataSplits(
        name=raw.name,
        train=replace(train, **options),  # type: ignore[arg-type]
        val=replace(raw.train.subset(val_idx), **options),  # type: ignore[arg-type]
        test=replace(test, **options),  # type: ignore[arg-type]
        standardizer=standardizer,
    )


@torch.no_grad()
def fit_stream_standardizer(
    data: StreamData, mode: Standardization, raw: RawStream | None = None
) -> Standardizer:
    """`Standardizer.fit` on a streamed set: one pass, sums in float64 (sample std, as
    ``Tensor.std``)."""
    shape = tuple(data.input_shape)
    if mode is Standardization.DATASET:
        if raw is None or raw.normalization is None:
            raise ConfigError(
                f"dataset '{raw.name if raw else '?'}' publishes no normalisation constants, "
                "so standardize='dataset' is not available for it; use feature, global, "
                "channel or none"
            )
        return raw.normalization
    if mode is Standardization.NONE or len(data) < 2:
        return Standardizer(torch.zeros(shape), torch.ones(shape))
    reduce_dims = {
        Standardization.FEATURE: (0,),
        Standardization.GLOBAL: tuple(range(len(shape) + 1)),
        Standardization.CHANNEL: (0, *range(2, len(shape) + 1)),
    }[mode]
    total: Tensor | float = 0.0
    squares: Tensor | float = 0.0
    count = 0
    for x, _ in DataLoader(data.dataset, batch_size=STATS_BATCH_SIZE):
        x = x.double()
        total = total + x.sum(reduce_dims)
        squares = squares + x.square().sum(reduce_dims)
        count += x.numel() // _kept_size(x, reduce_dims)
    mean = total / count  # type: ignore[operator]
    var = (squares - count * mean.square()) / (count - 1)  # type: ignore[union-attr]
    std = var.clamp_min(0).sqrt().clamp_min(1e-12)
    return Standardizer(_broadcast(mean, mode, shape), _broadcast(std, mode, shape))


def _kept_size(x: Tensor, reduce_dims: tuple[int, ...]) -> int:
    """Number of statistics (entries not reduced over) in batch ``x``."""
    kept = 1
    for d in range(x.ndim):
        if d not in reduce_dims:
            kept *= x.shape[d]
    return kept


def _broadcast(stat: Tensor, mode: Standardization, shape: tuple[int, ...]) -> Tensor:
    stat = stat.float()
    if mode is Standardization.GLOBAL:
        return stat.expand(shape).clone()
    if mode is Standardization.CHANNEL:
        return stat.view(-1, *([1] * (len(shape) - 1))).expand(shape).clone()
    return stat.reshape(shape).clone()

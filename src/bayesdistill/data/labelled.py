"""Labelled data: what training, teachers and metrics accept (`LabelledData`), and
`StreamData`, labelled data read example by example from a map-style ``Dataset``.

`ArrayData` (`bayesdistill.data.arrays`) holds a whole set as tensors on one device: the
fast default. `StreamData` is its counterpart for sets that do not fit in memory (an
``ImageFolder``, arrays on disk): a ``Dataset`` whose item ``i`` is ``(x_i, y_i)``, read
through a ``DataLoader`` (worker processes, pinned memory) one batch at a time. Both are
*labelled data*: they have a length, labels ``y`` ``(N,)`` held in memory (small: they are
needed for per-class subsets, stratified folds and metrics), ``num_classes`` and
``input_shape``. An example's stable id is its position ``i``: cached teacher predictions
and features are looked up by it.

Inputs are standardised per batch on the training device (``standardizer``), so the
``Dataset`` yields raw tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from bayesdistill.data.arrays import ArrayData
from bayesdistill.data.standardize import Standardizer
from bayesdistill.errors import ConfigError, DataError


@dataclass(frozen=True)
class LoaderOptions:
    """How a `StreamData` is read (the keywords of ``torch.utils.data.DataLoader``).

    Attributes:
        num_workers: worker processes reading examples (0: read in the training process).
        pin_memory: page-locked host batches for faster, asynchronous copies to a GPU
            (ignored on the CPU).
        prefetch_factor: batches each worker reads ahead (None: the DataLoader's default).
        persistent_workers: keep workers alive between epochs.
    """

    num_workers: int = 0
    pin_memory: bool = True
    prefetch_factor: int | None = None
    persistent_workers: bool = False

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.prefetch_factor is not None and (self.prefetch_factor < 1 or self.num_workers == 0):
            raise ConfigError(
                f"prefetch_factor={self.prefetch_factor} needs num_workers > 0 and a value >= 1"
            )
        if self.persistent_workers and self.num_workers == 0:
            raise ConfigError("persistent_workers needs num_workers > 0")

    def keywords(self, device: torch.device) -> dict[str, Any]:
        """DataLoader keywords for loading batches destined for ``device``."""
        out: dict[str, Any] = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory and device.type == "cuda",
            "persistent_workers": self.persistent_workers,
        }
        if self.prefetch_factor is not None:
            out["prefetch_factor"] = self.prefetch_factor
        return out


@dataclass(frozen=True, eq=False)
class StreamData:
    """A labelled set read from a map-style ``Dataset`` through a ``DataLoader``.

    Attributes:
        dataset: item ``i`` is ``(x_i, y_i)`` with ``x_i`` a float tensor of ``input_shape``
            and ``y_i`` its integer label.
        y: all labels ``(N,)`` int64 in ``[0, num_classes)`` (item ``i``'s label is ``y[i]``).
        num_classes: number of classes C.
        input_shape: shape of one input.
        standardizer: applied to each batch on the training device (None: inputs as read).
        loader: DataLoader options.
    """

    dataset: Dataset
    y: Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    standardizer: Standardizer | None = None
    loader: LoaderOptions = field(default_factory=LoaderOptions)

    bcp = None
    """Streamed sets carry no exact Bayes class probabilities."""

    def __post_init__(self) -> None:
        y = self.y
        if not isinstance(y, Tensor) or y.ndim != 1 or y.dtype != torch.int64:
            raise DataError(
                f"labels must be a 1-D int64 tensor, got "
                f"{type(y).__name__} {getattr(y, 'dtype', '')} {tuple(getattr(y, 'shape', ()))}"
            )
        if self.num_classes < 2:
            raise DataError(f"need at least 2 classes, got num_classes={self.num_classes}")
        if len(self.dataset) != len(y):  # type: ignore[arg-type]
            raise DataError(
                f"the dataset has {len(self.dataset)} examples but {len(y)} labels were given"  # type: ignore[arg-type]
            )
        if len(y) == 0:
            raise DataError("the dataset is empty")
        check_labels(y, self.num_classes, "dataset labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: Tensor) -> StreamData:
        """The examples at ``index`` (a 1-D long tensor), in that order."""
        index = index.cpu()
        return StreamData(
            Subset(self.dataset, index.tolist()),
            self.y[index],
            self.num_classes,
            self.input_shape,
            self.standardizer,
            self.loader,
        )

    def to(self, device: torch.device | str) -> StreamData:
        """Itself: batches move to the device one at a time."""
        return self

    def prepare(self, x: Tensor) -> Tensor:
        """A batch (or one example) as read, made ready for a network: float32,
        standardised."""
        x = x.float()
        return x if self.standardizer is None else self.standardizer(x)

    def prepared(self) -> Dataset:
        """The dataset with every item's input made ready (`prepare`), for code that reads
        a ``Dataset`` itself (laplace-torch)."""
        return _Prepared(self)


class _Prepared(Dataset):
    def __init__(self, data: StreamData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x, y = self.data.dataset[i]
        return self.data.prepare(x), int(y)


LabelledData = ArrayData | StreamData
"""What training, teachers and metrics accept: tensors in memory, or a streamed Dataset."""


def check_labels(y: Tensor, num_classes: int, what: str = "labels") -> None:
    """Raise `DataError` unless every label lies in ``[0, num_classes)``."""
    if y.numel() == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(
            f"{what} must lie in [0, {num_classes}) (num_classes = {num_classes}), "
            f"found values in [{lo}, {hi}]"
        )


def dataset_labels(dataset: Dataset) -> Tensor:
    """The labels of a map-style dataset, ``(N,)`` int64.

    Read from ``dataset.targets`` or ``dataset.labels`` (torchvision's datasets, e.g.
    ``ImageFolder``, carry them) where present, else by reading every item once.
    """
    for name in ("targets", "labels"):
        labels = getattr(dataset, name, None)
        if labels is not None:
            return torch.as_tensor(np.asarray(labels), dtype=torch.int64).flatten()
    return torch.as_tensor(
        [int(dataset[i][1]) for i in range(len(dataset))],  # type: ignore[arg-type]
        dtype=torch.int64,
    )


def stream_data(
    dataset: Dataset,
    *,
    num_classes: int | None = None,
    labels: Sequence[int] | Tensor | None = None,
    standardizer: Standardizer | None = None,
    loader: LoaderOptions | None = None,
) -> StreamData:
    """Wrap a map-style ``Dataset`` of ``(x, y)`` items as `StreamData`.

    Labels come from ``labels``, else from the dataset (`dataset_labels`); the number of
    classes from ``num_classes``, else the largest label + 1; the input shape from item 0.

    Example:
        >>> from torchvision.datasets import ImageFolder  # doctest: +SKIP
        >>> from torchvision.transforms import ToTensor
        >>> train = stream_data(ImageFolder("data/train", transform=ToTensor()),
        ...                     loader=LoaderOptions(num_workers=4))
    """
    y = (
        dataset_labels(dataset)
        if labels is None
        else torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    )
    if len(y) == 0:
        raise DataError("the dataset is empty")
    if num_classes is None:
        num_classes = int(y.max()) + 1
    first = dataset[0]
    if not isinstance(first, (tuple, list)) or len(first) != 2:
        raise DataError(f"dataset items must be (x, y) pairs, item 0 is a {type(first).__name__}")
    x0 = first[0]
    if not isinstance(x0, Tensor):
        raise DataError(
            f"dataset inputs must be tensors, item 0's is a {type(x0).__name__}; give the "
            "dataset a transform that returns tensors (e.g. torchvision's ToTensor)"
        )
    return StreamData(
        dataset,
        y,
        num_classes,
        tuple(x0.shape),
        standardizer,
        loader or LoaderOptions(),
    )

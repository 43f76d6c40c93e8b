"""A dataset as its factory returns it, before splitting and standardisation.

An in-memory source (synthetic data, MNIST-1D, ``.npz`` files, CIFAR, SVHN) returns a
`RawDataset` of tensors; a source read from disk example by example (image folders,
memory-mapped arrays) returns a `RawStream` of `StreamData`. Each holds a training pool and
optionally the source's own test set; `bayesdistill.data.splits.make_splits` turns either
into standardised train / validation / test sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bayesdistill.data.arrays import validate_arrays
from bayesdistill.data.labelled import StreamData
from bayesdistill.data.standardize import Standardizer
from bayesdistill.errors import DataError


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


@dataclass(frozen=True)
class RawDataset:
    """What a dataset factory returns, before splitting and standardisation.

    ``x_test``/``y_test`` are set when the source defines its own test split.
    ``bayes_posterior`` maps *raw* inputs to exact p*(y|x) when the generative model is
    known (synthetic data), and ``bayes_state`` holds what is needed to rebuild it.
    ``normalization`` is the standardisation the source publishes (the standard per-channel
    mean/std of an image benchmark), used with ``Standardization.DATASET``.
    """

    name: str
    x: Tensor
    y: Tensor
    num_classes: int
    bcp: Tensor | None = None
    x_test: Tensor | None = None
    y_test: Tensor | None = None
    bcp_test: Tensor | None = None
    bayes_posterior: Callable[[Tensor], Tensor] | None = None
    bayes_state: dict[str, Any] = field(default_factory=dict)
    normalization: Standardizer | None = None

    def __post_init__(self) -> None:
        try:
            validate_arrays(self.x, self.y, self.num_classes, self.bcp)
            if self.normalization is not None:
                input_shape = tuple(self.x.shape[1:])
                for part in (self.normalization.loc, self.normalization.scale):
                    if not _broadcasts_to(tuple(part.shape), input_shape):
                        raise DataError(
                            f"normalization constants of shape {tuple(part.shape)} do not "
                            f"broadcast to inputs of shape {input_shape}"
                        )
            if self.x_test is not None or self.y_test is not None:
                if self.x_test is None or self.y_test is None:
                    raise DataError("x_test and y_test must be given together")
                validate_arrays(self.x_test, self.y_test, self.num_classes, self.bcp_test)
                if self.x_test.shape[1:] != self.x.shape[1:]:
                    raise DataError(
                        f"test inputs have shape {tuple(self.x_test.shape[1:])}, "
                        f"training inputs {tuple(self.x.shape[1:])}"
                    )
        except DataError as exc:
            raise DataError(f"dataset '{self.name}': {exc}") from None


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

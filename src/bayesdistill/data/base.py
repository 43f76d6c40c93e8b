"""In-memory classification data: validated tensors, standardisation and splits.

Shapes: inputs ``x`` are ``(N, *input_shape)`` float32 (``(N, d)`` vectors, ``(N, L)``
1-D signals or ``(N, C, H, W)`` images), labels ``y`` are ``(N,)`` int64 in ``[0, C)``,
and the exact Bayes class probabilities ``bcp`` (only on synthetic data) are ``(N, C)``
rows summing to one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from bayesdistill.errors import ConfigError, DataError

if TYPE_CHECKING:  # stream.py builds on this module
    from bayesdistill.data.stream import StreamData

BCP_SUM_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ArrayData:
    """A labelled set of examples held as tensors.

    Attributes:
        x: inputs, ``(N, *input_shape)`` float32.
        y: labels, ``(N,)`` int64 in ``[0, num_classes)``.
        num_classes: number of classes C.
        bcp: exact Bayes class probabilities p*(y|x), ``(N, C)``, or None when unknown.
    """

    x: Tensor
    y: Tensor
    num_classes: int
    bcp: Tensor | None = None

    def __post_init__(self) -> None:
        validate_arrays(self.x, self.y, self.num_classes, self.bcp)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, index: Tensor) -> ArrayData:
        """The examples at ``index`` (a 1-D long tensor), in that order."""
        return ArrayData(
            self.x[index],
            self.y[index],
            self.num_classes,
            None if self.bcp is None else self.bcp[index],
        )

    def to(self, device: torch.device | str) -> ArrayData:
        return ArrayData(
            self.x.to(device),
            self.y.to(device),
            self.num_classes,
            None if self.bcp is None else self.bcp.to(device),
        )


def as_tensor_data(
    x: Any, y: Any, num_classes: int | None = None, bcp: Any = None, *, source: str = "data"
) -> ArrayData:
    """Build `ArrayData` from array-likes, inferring C from the labels if not given.

    Raises `DataError` naming ``source`` when the arrays are malformed.
    """
    try:
        x_t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        y_arr = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: cannot convert inputs/labels to arrays ({exc})") from exc
    if y_arr.dtype.kind == "f":
        if not np.all(np.isfinite(y_arr)) or not np.all(y_arr == np.round(y_arr)):
            raise DataError(f"{source}: labels must be integers, got non-integer floats")
    elif y_arr.dtype.kind not in "iub":
        raise DataError(f"{source}: labels must be integers, got dtype {y_arr.dtype}")
    y_t = torch.as_tensor(y_arr.astype(np.int64))
    if num_classes is None:
        num_classes = int(y_t.max().item()) + 1 if y_t.numel() else 0
    bcp_t = None if bcp is None else torch.as_tensor(np.asarray(bcp), dtype=torch.float32)
    try:
        return ArrayData(x_t, y_t, num_classes, bcp_t)
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None


def validate_arrays(x: Tensor, y: Tensor, num_classes: int, bcp: Tensor | None = None) -> None:
    """Raise `DataError` unless x, y (and bcp) form a valid classification set."""
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise DataError(f"x and y must be tensors, got {type(x).__name__}, {type(y).__name__}")
    if x.ndim < 2:
        raise DataError(f"x must have shape (N, *input_shape), got shape {tuple(x.shape)}")
    if y.ndim != 1:
        raise DataError(f"y must have shape (N,), got shape {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise DataError(f"x has {x.shape[0]} examples but y has {y.shape[0]} labels")
    if not x.is_floating_point():
        raise DataError(f"x must be floating point, got {x.dtype}")
    if y.dtype != torch.int64:
        raise DataError(f"y must be int64 class indices, got {y.dtype}")
    if num_classes < 2:
        raise DataError(f"need at least 2 classes, got num_classes={num_classes}")
    n_bad = int((~torch.isfinite(x)).sum())
    if n_bad:
        rows = torch.nonzero(~torch.isfinite(x.reshape(x.shape[0], -1)).all(1)).flatten()
        raise DataError(
            f"x contains {n_bad} NaN/inf values (first rows: {rows[:5].tolist()}); "
            "clean or impute the data first"
        )
    if y.numel():
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise DataError(f"labels must lie in [0, {num_classes}), found values in [{lo}, {hi}]")
    if bcp is not None:
        if bcp.shape != (x.shape[0], num_classes):
            raise DataError(
                f"bcp must have shape (N, C) = ({x.shape[0]}, {num_classes}), "
                f"got {tuple(bcp.shape)}"
            )
        if not torch.isfinite(bcp).all() or (bcp < 0).any():
            raise DataError("bcp must contain finite non-negative probabilities")
        worst = float((bcp.sum(1) - 1).abs().max()) if bcp.numel() else 0.0
        if worst > BCP_SUM_TOLERANCE:
            raise DataError(f"bcp rows must sum to 1 (largest deviation {worst:.2e})")


class Standardization(str, Enum):
    """How inputs are standardised with statistics of the training split."""

    FEATURE = "feature"
    """Per input coordinate: subtract the mean and divide by the std of each feature."""
    GLOBAL = "global"
    """One mean and one std over all training inputs (keeps the shape of a signal)."""
    CHANNEL = "channel"
    """Per channel (axis 1 of ``(N, C, ...)``): one mean and std per image colour channel,
    from the training split. For ``(N, d)`` vectors each feature is a channel (= feature)."""
    DATASET = "dataset"
    """The fixed constants the dataset publishes (`RawDataset.normalization`, e.g. the
    standard CIFAR per-channel mean/std), whatever the training split; an error for a
    source that has none."""
    NONE = "none"
    """Leave inputs as they are."""


@dataclass(frozen=True)
class Standardizer:
    """``x ↦ (x − loc) / scale`` with ``loc`` and ``scale`` broadcastable to one example."""

    loc: Tensor
    scale: Tensor

    @classmethod
    def fit(cls, x: Tensor, mode: Standardization | str) -> Standardizer:
        """Statistics of ``x`` ``(N, *input_shape)``; ``loc``/``scale`` have ``input_shape``.

        ``Standardization.DATASET`` has nothing to fit: use `Standardizer.per_channel` with
        the published constants (`make_splits` does).
        """
        mode = Standardization(mode)
        shape = x.shape[1:]
        if mode is Standardization.DATASET:
            raise ConfigError(
                "standardisation 'dataset' uses the constants the dataset publishes, not "
                "statistics fitted to data; build it with Standardizer.per_channel"
            )
        if mode is Standardization.NONE or x.shape[0] < 2:
            return cls(torch.zeros(shape), torch.ones(shape))
        if mode is Standardization.GLOBAL:
            loc = x.mean().expand(shape).clone()
            scale = x.std().clamp_min(1e-12).expand(shape).clone()
        elif mode is Standardization.CHANNEL:
            per_channel = x.transpose(0, 1).reshape(shape[0], -1)  # (C, N·rest)
            loc = _expand_channels(per_channel.mean(1), shape)
            scale = _expand_channels(per_channel.std(1).clamp_min(1e-12), shape)
        else:
            loc = x.mean(0)
            scale = x.std(0).clamp_min(1e-12)
        return cls(loc, scale)

    @classmethod
    def per_channel(
        cls, mean: tuple[float, ...], std: tuple[float, ...], shape: tuple[int, ...]
    ) -> Standardizer:
        """Fixed per-channel constants for inputs of ``shape = (C, ...)``: channel c maps
        ``x ↦ (x − mean[c]) / std[c]`` (what ``torchvision.transforms.Normalize`` does)."""
        if len(mean) != shape[0] or len(std) != shape[0]:
            raise DataError(
                f"per-channel constants need {shape[0]} values each for inputs of shape "
                f"{tuple(shape)}, got {len(mean)} means and {len(std)} stds"
            )
        if min(std) <= 0:
            raise DataError(f"per-channel stds must be positive, got {tuple(std)}")
        return cls(
            _expand_channels(torch.tensor(mean, dtype=torch.float32), shape),
            _expand_channels(torch.tensor(std, dtype=torch.float32), shape),
        )

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.loc.to(x)) / self.scale.to(x)

    def inverse(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x) + self.loc.to(x)

    def state(self) -> dict[str, Tensor]:
        return {"loc": self.loc, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> Standardizer:
        return cls(state["loc"], state["scale"])


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def _expand_channels(values: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """A ``(C,)`` vector broadcast to ``shape = (C, ...)``, as its own tensor."""
    return values.view(-1, *([1] * (len(shape) - 1))).expand(tuple(shape)).clone()


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

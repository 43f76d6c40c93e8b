"""Labelled examples held as tensors: `ArrayData` and its checks.

Shapes: inputs ``x`` are ``(N, *input_shape)`` float32 (``(N, d)`` vectors, ``(N, L)``
1-D signals or ``(N, C, H, W)`` images), labels ``y`` are ``(N,)`` int64 in ``[0, C)``,
and the exact Bayes class probabilities ``bcp`` (only on synthetic data) are ``(N, C)``
rows summing to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bayesdistill.errors import DataError

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

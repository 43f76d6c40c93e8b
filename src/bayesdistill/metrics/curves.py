"""Learning-curve statistics.

Fluctuation (our definition of the paper's "learning-curve noise"): take the last
``tail`` fraction of the evaluation points of a curve (default: the second half), smooth
it with a centred moving average of ``window`` points (shrinking at the ends), and report
the standard deviation of the residual ``curve − smoothed``. For an accuracy curve in
[0, 1] multiply by 100 for percentage points. A constant or linear curve has fluctuation 0;
white noise of std σ has fluctuation ≈ σ·sqrt(1 − 1/window).

Best evaluation point (`best_point`): among the records of a run's ``metrics.jsonl`` (one per
evaluation point), the one with the highest value of a selection key, ties resolved to the
earliest, and the value of a reported key there. Selecting on ``val_accuracy`` and reporting
``test_accuracy`` gives best-by-validation accuracy (early stopping without the test set);
selecting and reporting ``test_accuracy`` gives best-by-test accuracy, the maximum over
epochs that KD papers commonly print, which is selected on the test set and biased upwards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FLUCTUATION_WINDOW = 5
FLUCTUATION_TAIL = 0.5


def moving_average(values: Sequence[float], window: int = FLUCTUATION_WINDOW) -> np.ndarray:
    """Centred moving average; near the ends the window shrinks symmetrically."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    v = np.asarray(values, dtype=np.float64)
    half = window // 2
    out = np.empty_like(v)
    for i in range(len(v)):
        h = min(half, i, len(v) - 1 - i)
        out[i] = v[i - h : i + h + 1].mean()
    return out


def fluctuation(
    values: Sequence[float], window: int = FLUCTUATION_WINDOW, tail: float = FLUCTUATION_TAIL
) -> float:
    """Std of the residual around a centred moving average over the last ``tail`` of a curve.

    Returns NaN for curves with fewer than 3 points in the tail.
    """
    if not 0.0 < tail <= 1.0:
        raise ValueError(f"tail must lie in (0, 1], got {tail}")
    v = np.asarray(values, dtype=np.float64)
    part = v[len(v) - max(1, round(tail * len(v))) :]
    if len(part) < 3:
        return float("nan")
    residual = part - moving_average(part, window)
    return float(residual.std())


@dataclass(frozen=True)
class BestPoint:
    """The evaluation point a selection rule picks from a learning curve."""

    epoch: float | None
    """The record's ``epoch`` (fractional with several evaluations per epoch), if it has one."""
    selected: float
    """The value of the selection key there (the maximum over the curve)."""
    reported: float
    """The value of the reported key there."""


def best_point(
    records: Sequence[Mapping[str, Any]],
    select: str = "val_accuracy",
    report: str = "test_accuracy",
) -> BestPoint | None:
    """The record with the highest finite ``select`` (ties: the earliest) and its ``report``.

    Records lacking either key, or holding a non-finite value, are skipped (a run without a
    validation split has no ``val_accuracy``); returns None when no record qualifies.
    """
    best: BestPoint | None = None
    for record in records:
        chosen, shown = record.get(select), record.get(report)
        if not (_finite(chosen) and _finite(shown)):
            continue
        if best is None or float(chosen) > best.selected:  # strict: the earliest of ties wins
            epoch = record.get("epoch")
            best = BestPoint(None if epoch is None else float(epoch), float(chosen), float(shown))
    return best


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

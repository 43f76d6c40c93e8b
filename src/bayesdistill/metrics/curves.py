"""Learning-curve statistics.

Fluctuation (our definition of the paper's "learning-curve noise"): take the last
``tail`` fraction of the evaluation points of a curve (default: the second half), smooth
it with a centred moving average of ``window`` points (shrinking at the ends), and report
the standard deviation of the residual ``curve − smoothed``. For an accuracy curve in
[0, 1] multiply by 100 for percentage points. A constant or linear curve has fluctuation 0;
white noise of std σ has fluctuation ≈ σ·sqrt(1 − 1/window).
"""

from __future__ import annotations

from collections.abc import Sequence

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

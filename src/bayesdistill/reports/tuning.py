"""Fair tuning per teacher kind: each tuned loss's grid point chosen on validation data.

A loss with ``tune`` (`bayesdistill.config.schema.LossConfig`) trains one student per grid
point of its options. For each teacher kind, `choose` picks the grid point whose students
have the best validation metric, averaged over seeds (highest ``val_accuracy`` or lowest
``val_nll``; ties go to the first point in grid order), and the study reports the test
metrics of that point's students under the tuned loss's label. The choice sees validation
metrics only: `choose` is given a table of candidate → seed → validation value and nothing
else, so the test set cannot enter it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HIGHER_IS_BETTER = {"val_accuracy": True, "val_nll": False}


@dataclass(frozen=True)
class Choice:
    """The grid point chosen for one (tuned loss, teacher kind)."""

    loss: str
    kind: str
    candidate: str
    values: dict[str, Any]
    metric: str
    scores: dict[str, float] = field(default_factory=dict)
    """Every candidate's mean validation metric over seeds."""

    def describe(self) -> str:
        """``alpha=0.5, temperature=4`` (the chosen values)."""
        return ", ".join(f"{k}={_number(v)}" for k, v in self.values.items())


def choose(
    validation: Mapping[str, Mapping[int, float]], metric: str
) -> tuple[str, dict[str, float]]:
    """The candidate with the best mean validation ``metric`` over seeds, and every
    candidate's mean (candidates without a finite value for some seed count over the seeds
    they have; a candidate with none is never chosen).

    Args:
        validation: candidate label → seed → validation metric (nothing else).
        metric: ``val_accuracy`` (higher is better) or ``val_nll`` (lower is better).
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"select_by must be one of {sorted(HIGHER_IS_BETTER)}, got '{metric}'")
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    means: dict[str, float] = {}
    for candidate, by_seed in validation.items():
        finite = [v for v in by_seed.values() if v is not None and math.isfinite(v)]
        means[candidate] = sum(finite) / len(finite) if finite else math.nan
    ranked = [c for c in validation if math.isfinite(means[c])]
    if not ranked:
        raise ValueError("no candidate has a validation metric yet")
    best = max(ranked, key=lambda c: (sign * means[c], -list(validation).index(c)))
    return best, means


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

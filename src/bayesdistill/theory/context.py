"""What every theory experiment gets: its folder, its seeds, and resumable steps."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bayesdistill.io import read_json, save_figure, write_json, write_text

log = logging.getLogger("bayesdistill")

STEPS_DIR = "steps"
FIGURES_DIR = "figures"
METRICS_NAME = "metrics.jsonl"

T = TypeVar("T")


@dataclass
class ExperimentContext:
    """Run folder, seeds and progress flag of one experiment.

    Every unit of work (one seed, one target, ...) goes through `step`, which stores its
    JSON result in ``steps/<name>.json`` atomically; a rerun with ``resume`` skips the
    steps already done, so a killed experiment continues where it stopped.
    """

    out: Path
    seeds: list[int]
    progress: bool = True
    resume: bool = False

    def __post_init__(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / FIGURES_DIR).mkdir(exist_ok=True)
        (self.out / STEPS_DIR).mkdir(exist_ok=True)

    def step(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``'s JSON-serialisable result, reused from disk when resuming."""
        path = self.out / STEPS_DIR / f"{name}.json"
        if self.resume and path.is_file():
            return read_json(path)["result"]
        result = compute()
        write_json(path, {"result": result})
        return read_json(path)["result"]  # the same types whether computed or resumed

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Write ``metrics.jsonl`` (one record per measured point) atomically, whole."""
        write_text(
            self.out / METRICS_NAME,
            "".join(json.dumps(_finite(r), sort_keys=True) + "\n" for r in records),
        )

    def save_figure(self, figure: Any, name: str) -> str:
        """Save a matplotlib figure as ``figures/<name>.png``; returns its relative path."""
        import matplotlib.pyplot as plt

        relative = f"{FIGURES_DIR}/{name}.png"
        save_figure(self.out / relative, figure, dpi=130, bbox_inches="tight")
        plt.close(figure)
        return relative


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf floats become None (JSON has no NaN)."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
    }

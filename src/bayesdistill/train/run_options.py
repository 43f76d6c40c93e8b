"""How a training runs, not what it learns: one object for the options trainers pass on.

`bayesdistill.train.fit` takes these options as keywords; the teacher trainers built on it
(``train_ivon``, ``train_mfvi``, ``finetune_mcmi``, ``train_mse_teacher``, and the ensemble
members and cross-fitting folds that `TeacherContext.fit_network` trains) take one
`RunOptions` and hand it to ``fit`` whole (`RunOptions.fit_options`), so an option added
here reaches every trainer without touching it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from torch import nn

from bayesdistill.data.augment import Augmentation
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration


@dataclass(frozen=True)
class RunOptions:
    """The keywords of `bayesdistill.train.fit` that say how a training runs.

    Attributes:
        evaluate: metrics of the network at each evaluation point (None: none logged).
        augment: batch augmentation (None: none).
        run_dir: where ``metrics.jsonl`` and ``checkpoint.pt`` go (None: keep nothing).
        resume: continue from ``run_dir/checkpoint.pt`` if it exists.
        progress: show a progress bar.
        accel: speed options (mixed precision, channels-last, compilation).
    """

    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None
    augment: Augmentation | None = None
    run_dir: str | Path | None = None
    resume: bool = False
    progress: bool = True
    accel: Acceleration = DEFAULT_ACCELERATION

    def in_dir(self, run_dir: str | Path | None) -> RunOptions:
        """The same options writing to ``run_dir`` (None: keep nothing)."""
        return replace(self, run_dir=run_dir)

    def fit_options(self) -> dict[str, Any]:
        """These options as keywords of `bayesdistill.train.fit` (one per field)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


DEFAULT_RUN = RunOptions()
"""No evaluation, augmentation or run folder; a progress bar; default speed options."""

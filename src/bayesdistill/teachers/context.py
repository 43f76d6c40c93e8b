"""The teacher registry and what its builders may use.

`TEACHERS` registers *builders*: ``builder(context, **options) -> Teacher``. The context
holds what a builder may use (the trained network, the data, a seed); the keyword-only
options are what a config sets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from bayesdistill.data.augment import Augmentation
from bayesdistill.data.base import DataSplits
from bayesdistill.data.synthetic import GaussianMixture
from bayesdistill.errors import ConfigError
from bayesdistill.models import Classifier
from bayesdistill.registry import Registry
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.settings import TrainSettings


@dataclass
class TeacherContext:
    """What a teacher builder may use.

    Attributes:
        splits: the standardised data (train for fitting, val for calibration choices).
        seed: the run's seed.
        network: the trained deterministic network (None where a teacher needs none).
        init_network: builds a fresh network with the *same initial weights* as
            ``network`` had, for teachers trained from scratch (IVON).
        train_settings: how ``network`` was trained (defaults for IVON's training).
        run_dir: a folder the builder may write to (learning curves, checkpoints).
        resume: resume interrupted training in ``run_dir``.
        progress: show progress bars.
        evaluate: metrics of a network at evaluation points of training.
        train_network: trains the network on first use where ``network`` is None
            (ensemble members: a member kind that needs no trained network costs none).
        augment: the batch augmentation ``network`` was trained with; teachers that train
            networks (IVON, MFVI, MSE, MCMI, ensemble members) train with it too.
        accel: speed options (mixed precision, ...) for those trainings.
    """

    splits: DataSplits
    seed: int = 0
    network: Classifier | None = None
    init_network: Callable[[], Classifier] | None = None
    train_settings: TrainSettings | None = None
    run_dir: Path | None = None
    resume: bool = False
    progress: bool = True
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None
    train_network: Callable[[], Classifier] | None = None
    augment: Augmentation | None = None
    accel: Acceleration = DEFAULT_ACCELERATION

    def training_options(self) -> dict[str, Any]:
        """The keywords every teacher trainer (``train_ivon``, ``train_mfvi``, ...) takes
        from the context: evaluation, augmentation, run folder, resume, progress."""
        return {
            "evaluate": self.evaluate,
            "augment": self.augment,
            "run_dir": self.run_dir,
            "resume": self.resume,
            "progress": self.progress,
            "accel": self.accel,
        }

    def need_network(self, kind: str) -> Classifier:
        if self.network is None and self.train_network is not None:
            self.network = self.train_network()
        if self.network is None:
            raise ConfigError(
                f"teacher '{kind}' is built from a trained network, but none was given"
            )
        return self.network

    def need_init_network(self, kind: str) -> Classifier:
        if self.init_network is None:
            raise ConfigError(f"teacher '{kind}' trains a network and needs context.init_network")
        return self.init_network()

    def need_mixture(self, kind: str) -> GaussianMixture:
        state = self.splits.bayes_state.get("mixture")
        if state is None:
            raise ConfigError(
                f"teacher '{kind}' needs exact Bayes probabilities, which only the 'synthetic' "
                f"dataset has (this data is '{self.splits.name}')"
            )
        return GaussianMixture.from_state(state)


TEACHERS: Registry = Registry("teacher")


def needs_network(name: str) -> bool:
    """Whether teacher ``name`` is built from a trained network."""
    return bool(TEACHERS.entry(name).tags.get("needs_network", True))

"""The teacher registry and what its builders may use.

`TEACHERS` registers *builders*: ``builder(context, **options) -> Teacher``. The context
holds what a builder may use (the trained network, the data, a seed); the keyword-only
options are what a config sets. Each teacher kind registers its builder, with its tags,
in the kind's own module (``teachers/<kind>.py``), next to its class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bayesdistill.data.augment import Augmentation
from bayesdistill.data.labelled import LabelledData
from bayesdistill.data.splits import DataSplits
from bayesdistill.data.synthetic import GaussianMixture
from bayesdistill.errors import ConfigError
from bayesdistill.losses import onehot_ce
from bayesdistill.models import Classifier
from bayesdistill.registry import Registry
from bayesdistill.train.accel import Acceleration
from bayesdistill.train.loop import fit
from bayesdistill.train.run_options import DEFAULT_RUN, RunOptions
from bayesdistill.train.settings import OptimizerName, TrainSettings


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
        train_network: trains the network on first use where ``network`` is None
            (ensemble members: a member kind that needs no trained network costs none).
        device: the run's device (where teachers are loaded when nothing else says).
        run: how the builder's trainings run (IVON, MFVI, MSE, MCMI, ensemble members,
            cross-fitting folds), one `RunOptions`: the folder they may write to (learning
            curves, checkpoints), resume, progress bars, the metrics logged at evaluation
            points, the batch augmentation ``network`` was trained with (those trainings
            use it too) and the speed options. Read under its own names too
            (``context.run_dir``, ``context.accel``, ...); an option added to `RunOptions`
            reaches every builder with no change here.
    """

    splits: DataSplits
    seed: int = 0
    network: Classifier | None = None
    init_network: Callable[[], Classifier] | None = None
    train_settings: TrainSettings | None = None
    train_network: Callable[[], Classifier] | None = None
    device: torch.device | None = None
    run: RunOptions = DEFAULT_RUN

    def in_run_dir(self, run_dir: Path | None) -> TeacherContext:
        """This context with its trainings writing to ``run_dir`` (None: keep nothing)."""
        return replace(self, run=self.run.in_dir(run_dir))

    def run_options(self) -> RunOptions:
        """How the trainings of a builder run (``train_ivon``, ``train_mfvi``, ...,
        `fit_network`): `run`."""
        return self.run

    @property
    def run_dir(self) -> Path | None:
        return None if self.run.run_dir is None else Path(self.run.run_dir)

    @property
    def resume(self) -> bool:
        return self.run.resume

    @property
    def progress(self) -> bool:
        return self.run.progress

    @property
    def evaluate(self) -> Callable[[nn.Module], Mapping[str, float]] | None:
        return self.run.evaluate

    @property
    def augment(self) -> Augmentation | None:
        return self.run.augment

    @property
    def accel(self) -> Acceleration:
        return self.run.accel

    def settings_with(
        self,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        optimizer: OptimizerName | None = None,
        weight_decay: float | None = None,
    ) -> TrainSettings:
        """The teacher network's training settings with the given overrides (None keeps
        one); fewer epochs also drop the LR milestones past the end and a warm-up as long as
        the run."""
        base = self.train_settings or TrainSettings()
        changes: dict[str, Any] = {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": optimizer,
            "weight_decay": weight_decay,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        if "epochs" in changes and base.milestones:
            changes["milestones"] = tuple(m for m in base.milestones if m <= changes["epochs"])
        if "epochs" in changes and base.warmup_epochs >= changes["epochs"]:
            changes["warmup_epochs"] = 0.0
        return replace(base, **changes)

    def fit_network(
        self,
        network: Classifier,
        train: LabelledData,
        *,
        settings: TrainSettings,
        seed: int,
        run_dir: Path | None,
        description: str,
    ) -> Classifier:
        """Train ``network`` on ``train`` with one-hot cross-entropy, with this context's
        evaluation, augmentation, resume, progress and speed options (ensemble members,
        cross-fitting folds)."""
        result = fit(
            network,
            train,
            loss_fn=onehot_ce,
            settings=settings,
            seed=seed,
            description=description,
            **self.run_options().in_dir(run_dir).fit_options(),
        )
        return result.model  # type: ignore[return-value]

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
"""Teacher kinds by name. Every entry is registered in its kind's module with these tags:

- ``saves``: the `SavableTeacher` class the builder returns; its ``kind`` is the entry's
  name, and `bayesdistill.teachers.files.load_teacher` finds the class of a saved file here;
- ``needs_network``: the builder uses the trained teacher network
  (`TeacherContext.need_network`), so a study trains one for it;
- ``learns_from_data``: the teacher is fitted to the training set (so cross-fitting it
  changes its training targets);
- ``bayesian``: the teacher averages over a posterior (Laplace, VI, MC dropout, deep
  ensembles), as opposed to a point estimate or the known p*.

A tag is a bool, or a function of the entry's options (defaults filled in) where the
answer depends on them (``mfvi`` with ``init: scratch`` needs no trained network).
"""

TagValue = bool | Callable[[Mapping[str, Any]], bool]


def tag(name: str, key: str, options: Mapping[str, Any] | None = None) -> bool:
    """Tag ``key`` of teacher ``name`` for ``options`` (missing options take their
    defaults); `UnknownNameError` lists the valid names."""
    entry = TEACHERS.entry(name)
    value: TagValue = entry.tags[key]
    if callable(value):
        defaults = {o.name: o.default for o in entry.options if not o.required}
        return bool(value(defaults | dict(options or {})))
    return bool(value)


def kinds_tagged(key: str) -> list[str]:
    """The teacher kinds whose tag ``key`` holds with their default options, sorted."""
    return [name for name in TEACHERS if tag(name, key)]


def needs_network(name: str, options: Mapping[str, Any] | None = None) -> bool:
    """Whether teacher ``name`` (with ``options``) is built from the trained network."""
    return tag(name, "needs_network", options)


def learns_from_data(name: str, options: Mapping[str, Any] | None = None) -> bool:
    """Whether teacher ``name`` (with ``options``) is fitted to the training set."""
    return tag(name, "learns_from_data", options)

"""Study builders of the MC-dropout, ensemble, mean-field VI, MSE and MCMI teachers.

Each turns a `TeacherContext` and validated options into a teacher; the library classes
and training functions live in their own modules.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch.nn.functional as F

from bayesdistill.errors import ConfigError
from bayesdistill.models import Classifier, ModelSpec, build_from_spec
from bayesdistill.seeding import derive_seed, seeded
from bayesdistill.teachers.base import SavableTeacher
from bayesdistill.teachers.baselines import (
    MCMITeacher,
    MSETeacher,
    TargetSpace,
    finetune_mcmi,
    train_mse_teacher,
)
from bayesdistill.teachers.context import TEACHERS, TeacherContext
from bayesdistill.teachers.ensemble import EnsembleTeacher
from bayesdistill.teachers.mc_dropout import MCDropoutTeacher
from bayesdistill.teachers.variational import (
    DEFAULT_INIT_STD,
    KL_ANNEAL_FRACTION,
    KL_ZERO_FRACTION,
    Estimator,
    MeanFieldTeacher,
    to_mean_field,
    train_mfvi,
)
from bayesdistill.train.loop import fit
from bayesdistill.train.settings import OptimizerName, TrainSettings

ENSEMBLE_STREAM = 11
"""Seed stream of ensemble members: member m ≥ 1 uses derive_seed(seed, 11, m)."""

MFVI_LR = 1e-3
"""Adam learning rate of mean-field VI (the public code of Morad et al. 2026)."""
MCMI_DEFAULT_EPOCHS = 5
MCMI_DEFAULT_LR_FACTOR = 0.1
"""MCMI fine-tunes at this fraction of the teacher network's learning rate by default."""


def _settings(
    context: TeacherContext,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    optimizer: OptimizerName | None = None,
    weight_decay: float | None = None,
) -> TrainSettings:
    """The teacher network's training settings with the given overrides."""
    base = context.train_settings or TrainSettings()
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


def _sub_dir(context: TeacherContext, name: str) -> Path | None:
    return None if context.run_dir is None else context.run_dir / name


@TEACHERS.register("mc_dropout", needs_network=True)
def build_mc_dropout(
    context: TeacherContext, *, num_samples: int = 10, p: float | None = None
) -> MCDropoutTeacher:
    """MC dropout (Gal & Ghahramani 2016): mean softmax over S dropout masks of the network.

    The teacher network must have been trained with dropout; ``p`` overrides its rate at
    prediction (0 gives the deterministic teacher).
    """
    return MCDropoutTeacher(
        context.need_network("mc_dropout"), num_samples=num_samples, p=p, seed=context.seed
    )


def _member_factory(context: TeacherContext, member: int) -> Classifier:
    """A fresh network of the teacher's architecture with member ``member``'s own init."""
    template = (
        context.network if context.network is not None else context.need_init_network("ensemble")
    )
    spec = getattr(template, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise ConfigError(
            "ensemble members are built from the teacher network's ModelSpec; use a network "
            "made by bayesdistill.models.create_model"
        )
    device = next(template.parameters()).device
    with seeded(derive_seed(context.seed, ENSEMBLE_STREAM, member)):
        network = build_from_spec(spec)
    return network.to(device)


def _member_context(context: TeacherContext, member: int) -> TeacherContext:
    """Member 0 is the study's own network; member m ≥ 1 gets its own init, seed and run."""
    run_dir = _sub_dir(context, f"member_{member}")
    if member == 0:
        return replace(context, run_dir=run_dir)
    seed = derive_seed(context.seed, ENSEMBLE_STREAM, member)
    settings = context.train_settings or TrainSettings()

    def init_network() -> Classifier:
        return _member_factory(context, member)

    def train_network() -> Classifier:
        result = fit(
            init_network(),
            context.splits.train,
            loss_fn=lambda logits, _teacher, y: F.cross_entropy(logits, y),
            settings=settings,
            seed=seed,
            evaluate=context.evaluate,
            augment=context.augment,
            run_dir=None if run_dir is None else run_dir / "network",
            resume=context.resume,
            progress=context.progress,
            description=f"ensemble member {member}",
            accel=context.accel,
        )
        return result.model  # type: ignore[return-value]

    return replace(
        context,
        seed=seed,
        network=None,
        init_network=init_network,
        train_network=train_network,
        run_dir=run_dir,
    )


@TEACHERS.register("ensemble", needs_network=True)
def build_ensemble(
    context: TeacherContext,
    *,
    members: int = 5,
    member_kind: str = "deterministic",
    member_options: dict[str, Any] | None = None,
) -> EnsembleTeacher:
    """Deep ensemble (Lakshminarayanan et al. 2017): mean of M teachers of one kind.

    Member 0 is built from the study's network; members 1..M−1 from networks trained
    from their own initialisation and batch order (seed derived from the run's seed), only
    if the member kind needs a trained network. Each member is a ``member_kind`` teacher
    built with ``member_options`` (e.g. ``{num_samples: 10}`` for sampling kinds).
    """
    if members < 1:
        raise ConfigError(f"members must be >= 1, got {members}")
    options = TEACHERS.validate_options(member_kind, dict(member_options or {}))
    built: list[SavableTeacher] = []
    for m in range(members):
        built.append(TEACHERS.get(member_kind)(_member_context(context, m), **options))
    return EnsembleTeacher(built)


@TEACHERS.register("mfvi", needs_network=True)
def build_mfvi(
    context: TeacherContext,
    *,
    init: Literal["network", "scratch"] = "network",
    estimator: Estimator = Estimator.REPARAM,
    prior_std: float | None = None,
    init_std: float = DEFAULT_INIT_STD,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float = MFVI_LR,
    optimizer: OptimizerName = OptimizerName.ADAM,
    weight_decay: float = 0.0,
    kl_zero_fraction: float = KL_ZERO_FRACTION,
    kl_anneal_fraction: float = KL_ANNEAL_FRACTION,
    num_samples: int = 10,
) -> MeanFieldTeacher:
    """Mean-field Gaussian VI (Bayes by backprop; reparameterisation or Flipout).

    Posterior means start at the trained network's weights (``init: network``) or at its
    initialisation (``scratch``); prior N(0, 1/fan_in) per layer unless ``prior_std``; KL
    weight 0 for the first ``kl_zero_fraction`` of steps, then linear to 1 over the next
    ``kl_anneal_fraction``. Epochs, batch size and schedule default to the teacher
    network's; the optimiser to Adam at lr 1e-3 (as the paper's VI teachers: SGD barely
    moves the softplus-parameterised stds) with weight decay 0 (the prior regularises).
    Predictive: mean softmax over S samples.
    """
    need = context.need_network if init == "network" else context.need_init_network
    start = need("mfvi")
    network = to_mean_field(start, prior_std=prior_std, init_std=init_std)
    settings = _settings(
        context,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
    )
    teacher, _ = train_mfvi(
        network,
        context.splits.train,
        settings=settings,
        seed=context.seed,
        estimator=estimator,
        kl_zero_fraction=kl_zero_fraction,
        kl_anneal_fraction=kl_anneal_fraction,
        num_samples=num_samples,
        **context.training_options(),
    )
    return teacher


@TEACHERS.register("mse_teacher", needs_network=True)
def build_mse_teacher(
    context: TeacherContext,
    *,
    target_space: TargetSpace = "softmax",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    optimizer: OptimizerName | None = None,
) -> MSETeacher:
    """Network trained from the teacher's init with the Brier/MSE loss (Hamidi et al. 2024).

    Same architecture, initial weights and training settings as the teacher network;
    only the loss differs. ``target_space: logits`` regresses logits on one-hot labels.
    """
    settings = _settings(context, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer)
    teacher, _ = train_mse_teacher(
        context.need_init_network("mse_teacher"),
        context.splits.train,
        settings=settings,
        seed=context.seed,
        target_space=target_space,
        **context.training_options(),
    )
    return teacher


@TEACHERS.register("mcmi", needs_network=True)
def build_mcmi(
    context: TeacherContext,
    *,
    cmi_weight: float = 0.1,
    epochs: int = MCMI_DEFAULT_EPOCHS,
    lr: float | None = None,
    batch_size: int | None = None,
    optimizer: OptimizerName | None = None,
) -> MCMITeacher:
    """The trained network fine-tuned with CE − λ·CMI (MCMI, Ye et al. 2024).

    ``lr`` defaults to a tenth of the teacher network's; centroids are refreshed every
    epoch. A negative ``cmi_weight`` minimises the CMI instead.
    """
    base = context.train_settings or TrainSettings()
    settings = _settings(
        context,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr if lr is not None else base.lr * MCMI_DEFAULT_LR_FACTOR,
        optimizer=optimizer,
    )
    teacher, _ = finetune_mcmi(
        context.need_network("mcmi"),
        context.splits.train,
        settings=settings,
        seed=context.seed,
        cmi_weight=cmi_weight,
        **context.training_options(),
    )
    return teacher

"""One call to distil a student from a teacher: the library form of ``bayesdistill distill``."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from bayesdistill.data.augment import Augmentation
from bayesdistill.data.base import ArrayData
from bayesdistill.errors import ConfigError
from bayesdistill.losses import (
    LOSSES,
    check_num_classes,
    loss_kind,
    needs_teacher,
    onehot_ce,
    runtime_inputs,
)
from bayesdistill.teachers.base import Teacher, check_teacher_matches
from bayesdistill.train.features import (
    OnlineFeatures,
    check_feature_dims,
    feature_network,
    features_in_batches,
)
from bayesdistill.train.loop import Evaluator, FitResult, LossFn, fit
from bayesdistill.train.objective import LogitLoss, LossTerm, Objective, WeightedSum, check_terms
from bayesdistill.train.settings import TrainSettings
from bayesdistill.train.targets import (
    CachedTargets,
    OnlineTargets,
    TargetSource,
    predict_in_batches,
)
from bayesdistill.train.variance_reduction import (
    SVRGCorrection,
    check_same_architecture,
    full_gradient,
)

LossSpec = str | LossFn | Sequence[LossTerm]
"""A registered loss name, a loss function, or the terms of a weighted sum."""


def distill(
    student: nn.Module,
    train: ArrayData,
    teacher: Teacher | None,
    *,
    loss: LossSpec = "kd",
    loss_options: Mapping[str, Any] | None = None,
    settings: TrainSettings | None = None,
    seed: int = 0,
    teacher_probs: Tensor | None = None,
    teacher_features: Tensor | None = None,
    evaluate: Evaluator | None = None,
    augment: Augmentation | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    description: str = "student",
) -> FitResult:
    """Train ``student`` on ``train`` from ``teacher`` (one-hot labels if None).

    ``loss`` is one of:

    - a name in `LOSSES` (``loss_options`` validated by the registry); a loss that warms
      up (registry tag ``runtime=("epoch",)``, e.g. ``dkd``) receives the fractional epoch;
    - a function ``(logits, teacher_probs, labels) -> scalar`` (``loss_options`` are bound
      to it as keywords);
    - a sequence of `LossTerm`, the objective ``Σ_i weight_i · term_i`` whose terms are
      names in `LOSSES` (on logits) or `FEATURE_LOSSES` (on penultimate features, e.g.
      KD²M's ``CE + λ·W2``); each term's batch mean is logged as ``train_loss/<label>``.

    Teacher probabilities: without augmentation the teacher is asked once for the whole
    training set (or ``teacher_probs``, ``(N, C)``, is used as given); with augmentation on
    every augmented batch. Teacher features (feature terms only) come from the teacher's
    network (its mean/MAP network for a Bayesian teacher, see
    `bayesdistill.train.features`), likewise cached once (or ``teacher_features``,
    ``(N, D)``, as given) or computed per augmented batch; student and teacher feature
    dimensions must agree.

    Example:
        >>> result = distill(student, splits.train, LaplaceTeacher(...), loss="kd",
        ...                  loss_options={"alpha": 0.7, "temperature": 4.0})  # doctest: +SKIP
        >>> result = distill(student, splits.train, teacher, loss=[
        ...     LossTerm("onehot_ce"), LossTerm("w2_empirical", weight=1e-4)])  # doctest: +SKIP
    """
    settings = settings or TrainSettings()
    objective, targets = _objective(
        student, train, teacher, loss, loss_options, teacher_probs, teacher_features, augment
    )
    return fit(
        student,
        train,
        objective=objective,
        settings=settings,
        seed=seed,
        targets=targets,
        evaluate=evaluate,
        augment=augment,
        run_dir=run_dir,
        resume=resume,
        progress=progress,
        description=description,
        fingerprint_extra={
            "teacher": type(teacher).__name__,
            "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", list(loss)),
            "options": dict(loss_options or {}),
        },
    )


def _objective(
    student: nn.Module,
    train: ArrayData,
    teacher: Teacher | None,
    loss: LossSpec,
    loss_options: Mapping[str, Any] | None,
    teacher_probs: Tensor | None,
    teacher_features: Tensor | None,
    augment: Augmentation | None,
) -> tuple[Objective, TargetSource | None]:
    """The step objective for ``loss`` and where its teacher probabilities come from."""
    if teacher is None:
        return LogitLoss(onehot_ce), None
    check_teacher_matches(teacher, train.num_classes, "training data")
    if isinstance(loss, str):
        if loss_kind(loss) == "feature":
            check_terms([LossTerm(loss)])  # a feature distance alone: explains what to add
        check_num_classes(loss, train.num_classes)
        options = LOSSES.validate_options(loss, dict(loss_options or {}))
        objective: Objective = LogitLoss(
            functools.partial(LOSSES.get(loss), **options), runtime_inputs(loss)
        )
        if LOSSES.entry(loss).tags.get("svrg"):
            objective = _svrg(loss, objective, student, teacher, train, options)
        uses_probs = needs_teacher(loss)
    elif callable(loss):
        objective = LogitLoss(functools.partial(loss, **dict(loss_options or {})))
        uses_probs = True
    else:
        if loss_options:
            raise ConfigError(
                "loss_options apply to a single loss; give a weighted sum's options in each "
                "LossTerm's options"
            )
        terms = check_terms(list(loss))
        for term in terms:
            if loss_kind(term.name) == "response" and LOSSES.entry(term.name).tags.get("svrg"):
                raise ConfigError(
                    f"'{term.name}' corrects the student's gradient with the teacher's and "
                    "cannot be a term of a weighted sum; use it as the whole loss"
                )
        for term in terms:
            check_num_classes(term.name, train.num_classes)
        features = None
        if any(loss_kind(t.name) == "feature" for t in terms):
            features = _teacher_features(student, teacher, train, teacher_features, augment)
        objective = WeightedSum(terms, features)
        uses_probs = any(loss_kind(t.name) == "response" and needs_teacher(t.name) for t in terms)
    targets = _teacher_targets(teacher, train, teacher_probs, augment) if uses_probs else None
    return objective, targets


def _svrg(
    name: str,
    objective: Objective,
    student: nn.Module,
    teacher: Teacher,
    train: ArrayData,
    options: Mapping[str, Any],
) -> Objective:
    """``objective`` plus the SVRG correction λ·∇f(θ) at the teacher's network."""
    try:
        network = feature_network(teacher)
    except ConfigError:
        kind = getattr(teacher, "kind", type(teacher).__name__)
        raise ConfigError(
            f"{name} needs the teacher's network (its full gradient), but a teacher "
            f"of kind '{kind}' has none; use a deterministic, temperature, laplace, ivon, "
            "mc_dropout or mfvi teacher of the student's architecture"
        ) from None
    check_same_architecture(student, network)
    gradient = full_gradient(network, train.to(next(network.parameters()).device))
    device = next(student.parameters()).device
    settings = {o.name: o.default for o in LOSSES.entry(name).options} | dict(options)
    return SVRGCorrection(
        objective,
        [g.to(device) for g in gradient],
        float(settings["lam"]),
        float(settings["ramp_epochs"]),
    )


def _teacher_targets(
    teacher: Teacher, train: ArrayData, given: Tensor | None, augment: Augmentation | None
) -> TargetSource:
    if augment is not None:
        return OnlineTargets(teacher)
    probs = given if given is not None else predict_in_batches(teacher, train.x)
    if probs.shape != (len(train), train.num_classes):
        raise ValueError(
            f"teacher_probs must have shape (N, C) = ({len(train)}, {train.num_classes}), "
            f"got {tuple(probs.shape)}"
        )
    return CachedTargets(probs.to(train.x.device))


def _teacher_features(
    student: nn.Module,
    teacher: Teacher,
    train: ArrayData,
    given: Tensor | None,
    augment: Augmentation | None,
) -> TargetSource:
    network = feature_network(teacher)
    check_feature_dims(student, network)
    if augment is not None:
        return OnlineFeatures(network)
    features = given if given is not None else features_in_batches(network, train.x)
    if features.ndim != 2 or features.shape[0] != len(train):
        raise ValueError(
            f"teacher_features must have shape (N, D) with N = {len(train)}, got "
            f"{tuple(features.shape)}"
        )
    return CachedTargets(features.to(train.x.device))

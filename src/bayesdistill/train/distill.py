"""One call to distil a student from a teacher: the library form of ``bayesdistill distill``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from bayesdistill.data.augment import Augmentation
from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import ConfigError, DataError
from bayesdistill.losses import (
    LOSSES,
    check_num_classes,
    check_probabilities,
    loss_kind,
    needs_teacher,
    onehot_ce,
    runtime_inputs,
    unchecked,
)
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.features import (
    OnlineFeatures,
    check_feature_dims,
    feature_network,
    features_in_batches,
)
from bayesdistill.train.loop import Evaluator, FitResult, LossFn, fit
from bayesdistill.train.objective import (
    LogitLoss,
    LossTerm,
    Objective,
    WeightedSum,
    check_terms,
    own_objective,
)
from bayesdistill.train.protocol import Teacher, check_teacher_matches
from bayesdistill.train.settings import TrainSettings
from bayesdistill.train.targets import (
    CachedTargets,
    OnlineTargets,
    TargetSource,
    TeacherCache,
    ViewSource,
    check_augmentable,
    resolve_cache,
    training_targets,
)
from bayesdistill.train.variance_reduction import svrg_objective
from bayesdistill.train.views import (
    DEFAULT_VIEWS,
    ViewCache,
    ViewTargets,
    build_view_cache,
    check_view_options,
)

LossSpec = str | LossFn | Sequence[LossTerm]
"""A registered loss name, a loss function, or the terms of a weighted sum."""

ObjectiveFactory = Callable[..., Objective]
"""``factory(name, loss, options, *, student, teacher, train) -> Objective``: the objective
of loss ``name`` built around ``loss`` (its `LogitLoss`), with its options (defaults filled
in)."""

OBJECTIVES: Mapping[str, ObjectiveFactory] = {"svrg": svrg_objective}
"""The objectives a loss may name in its registry tag ``objective`` (see `loss_objective`)."""


def distill(
    student: nn.Module,
    train: LabelledData,
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
    teacher_cache: TeacherCache | str = TeacherCache.AUTO,
    cache_views: int = DEFAULT_VIEWS,
    cache_top_k: int | None = None,
    view_cache: ViewCache | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    description: str = "student",
    accel: Acceleration = DEFAULT_ACCELERATION,
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

    Teacher probabilities (``teacher_cache``, see `TeacherCache`): without augmentation
    the teacher's training targets on the whole training set are computed once (``exact``:
    `Teacher.training_targets`, its predictions, or a cross-fitted teacher's out-of-fold
    table on its own training set; or ``teacher_probs``, ``(N, C)``, is used as given,
    after checking it); with augmentation (refused for a teacher whose training targets
    are not its predictions, `check_augmentable`), either on every augmented batch
    (``none``, the ``auto`` choice) or once on ``cache_views`` stored views per example
    (``views``: `bayesdistill.train.views`; ``cache_top_k`` keeps the k largest
    probabilities of each view; ``view_cache`` is used as given). ``train`` is in-memory
    `ArrayData` or a streamed `StreamData`; example ids are positions in it.
    Teacher features (feature terms only) come from the teacher's
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
    cache = _cache_mode(teacher_cache, augment, teacher_probs, view_cache)
    if cache is TeacherCache.VIEWS and view_cache is None:
        check_view_options(augment, cache_views, cache_top_k)
    objective, uses_probs = _objective(
        student, train, teacher, loss, loss_options, teacher_features, augment, cache
    )
    targets: TargetSource | ViewSource | None = None
    if teacher is not None and uses_probs:
        if augment is not None:
            check_augmentable(teacher, train, "augment")
        targets = _teacher_targets(
            student,
            teacher,
            train,
            teacher_probs,
            augment,
            cache,
            accel,
            seed,
            views=cache_views,
            top_k=cache_top_k,
            view_cache=view_cache,
        )
    if isinstance(targets, ViewSource):
        augment = None  # the stored views bring their own
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
            "loss": _loss_label(loss),
            "options": dict(loss_options or {}),
            **(
                {"cache": cache.value, "views": cache_views, "top_k": cache_top_k}
                if cache is TeacherCache.VIEWS
                else {}
            ),
        },
        accel=accel,
    )


def _loss_label(loss: LossSpec) -> Any:
    """What the checkpoint fingerprint records of ``loss``: its name, a function's name, or
    the terms of a weighted sum."""
    if isinstance(loss, str):
        return loss
    if callable(loss):
        return getattr(loss, "__name__", type(loss).__name__)
    return list(loss)


def _cache_mode(
    mode: TeacherCache | str,
    augment: Augmentation | None,
    teacher_probs: Tensor | None,
    view_cache: ViewCache | None,
) -> TeacherCache:
    """The teacher cache to use (`resolve_cache`), checked against the given targets."""
    if view_cache is not None and mode in (TeacherCache.AUTO, TeacherCache.AUTO.value):
        mode = TeacherCache.VIEWS
    mode = resolve_cache(mode, augment)
    if teacher_probs is not None and mode is not TeacherCache.EXACT:
        raise ConfigError(
            f"teacher_probs are predictions on the clean training set; with teacher_cache "
            f"'{mode.value}' give none"
        )
    if view_cache is not None and mode is not TeacherCache.VIEWS:
        raise ConfigError(f"a view_cache needs teacher_cache 'views', got '{mode.value}'")
    return mode


def _objective(
    student: nn.Module,
    train: LabelledData,
    teacher: Teacher | None,
    loss: LossSpec,
    loss_options: Mapping[str, Any] | None,
    teacher_features: Tensor | None,
    augment: Augmentation | None,
    cache: TeacherCache,
) -> tuple[Objective, bool]:
    """The step objective for ``loss``, and whether it reads the teacher's probabilities."""
    if teacher is None:
        return LogitLoss(unchecked(onehot_ce)), False
    check_teacher_matches(teacher, train.num_classes, "training data")
    if isinstance(loss, str):
        if loss_kind(loss) == "feature":
            check_terms([LossTerm(loss)])  # a feature distance alone: explains what to add
        check_num_classes(loss, train.num_classes)
        options = LOSSES.validate_options(loss, dict(loss_options or {}))
        objective: Objective = loss_objective(
            loss, options, student=student, teacher=teacher, train=train
        )
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
        terms = check_terms(list(loss))  # refuses a loss that is an objective of its own
        for term in terms:
            check_num_classes(term.name, train.num_classes)
        features = None
        if any(loss_kind(t.name) == "feature" for t in terms):
            if cache is TeacherCache.VIEWS:
                raise ConfigError(
                    "teacher_cache 'views' stores probabilities, not the teacher's features; "
                    "with feature loss terms and augmentation use teacher_cache 'none'"
                )
            features = _teacher_features(student, teacher, train, teacher_features, augment)
        objective = WeightedSum(terms, features)
        uses_probs = any(loss_kind(t.name) == "response" and needs_teacher(t.name) for t in terms)
    return objective, uses_probs


def loss_objective(
    name: str,
    options: Mapping[str, Any],
    *,
    student: nn.Module,
    teacher: Teacher,
    train: LabelledData,
) -> Objective:
    """The step objective of registered loss ``name`` with validated ``options``.

    The loss function with its options on the student's logits (`LogitLoss`, handed the
    runtime inputs its entry asks for), or, for an entry tagged ``objective``, the objective
    that tag names in `OBJECTIVES`, built around it (``self_distill_vr``: `svrg_objective`).
    The loop validated labels and teacher probabilities once, so the function is the
    unchecked one.
    """
    loss = LogitLoss(
        functools.partial(unchecked(LOSSES.get(name)), **options), runtime_inputs(name)
    )
    kind = own_objective(name)
    if kind is None:
        return loss
    defaults = {o.name: o.default for o in LOSSES.entry(name).options if not o.required}
    return OBJECTIVES[kind](
        name, loss, defaults | dict(options), student=student, teacher=teacher, train=train
    )


def _teacher_targets(
    student: nn.Module,
    teacher: Teacher,
    train: LabelledData,
    given: Tensor | None,
    augment: Augmentation | None,
    cache: TeacherCache,
    accel: Acceleration,
    seed: int,
    *,
    views: int,
    top_k: int | None,
    view_cache: ViewCache | None,
) -> TargetSource | ViewSource:
    device = next(student.parameters()).device
    if cache is TeacherCache.NONE:
        return OnlineTargets(teacher)
    if cache is TeacherCache.VIEWS:
        if view_cache is None:
            view_cache = build_view_cache(
                teacher,
                train,
                augment,
                views=views,
                seed=seed,
                top_k=top_k,
                accel=accel,  # type: ignore[arg-type]
            )
        if len(view_cache) != len(train) or view_cache.num_classes != train.num_classes:
            raise DataError(
                f"the view cache holds {len(view_cache)} examples of {view_cache.num_classes} "
                f"classes, the training data {len(train)} of {train.num_classes}"
            )
        return ViewTargets(view_cache, augment, device)  # type: ignore[arg-type]
    probs = given if given is not None else training_targets(teacher, train, accel=accel)
    check_probabilities(
        probs, "teacher predictions on the training set", shape=(len(train), train.num_classes)
    )
    return CachedTargets(probs.to(device))


def _teacher_features(
    student: nn.Module,
    teacher: Teacher,
    train: LabelledData,
    given: Tensor | None,
    augment: Augmentation | None,
) -> TargetSource:
    network = feature_network(teacher)
    check_feature_dims(student, network)
    if augment is not None:
        return OnlineFeatures(network)
    features = given if given is not None else features_in_batches(network, train)
    if features.ndim != 2 or features.shape[0] != len(train):
        raise ValueError(
            f"teacher_features must have shape (N, D) with N = {len(train)}, got "
            f"{tuple(features.shape)}"
        )
    return CachedTargets(features.to(next(student.parameters()).device))

"""One call to distil a student from a teacher: the library form of ``bayesdistill distill``."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from bayesdistill.data.augment import Augmentation
from bayesdistill.data.base import ArrayData
from bayesdistill.losses import LOSSES, onehot_ce
from bayesdistill.teachers.base import Teacher, check_teacher_matches
from bayesdistill.train.loop import Evaluator, FitResult, LossFn, fit
from bayesdistill.train.settings import TrainSettings
from bayesdistill.train.targets import CachedTargets, OnlineTargets, predict_in_batches


def distill(
    student: nn.Module,
    train: ArrayData,
    teacher: Teacher | None,
    *,
    loss: str | LossFn = "kd",
    loss_options: Mapping[str, Any] | None = None,
    settings: TrainSettings | None = None,
    seed: int = 0,
    teacher_probs: Tensor | None = None,
    evaluate: Evaluator | None = None,
    augment: Augmentation | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    description: str = "student",
) -> FitResult:
    """Train ``student`` on ``train`` from ``teacher``'s probabilities (one-hot if None).

    Without augmentation the teacher is asked once for the whole training set (or
    ``teacher_probs``, ``(N, C)``, is used as given); with augmentation it is asked on
    every augmented batch. ``loss`` is a registered name (options validated) or a
    function ``(logits, teacher_probs, labels) -> scalar``.

    Example:
        >>> result = distill(student, splits.train, LaplaceTeacher(...), loss="kd",
        ...                  loss_options={"alpha": 0.7, "temperature": 4.0})  # doctest: +SKIP
    """
    settings = settings or TrainSettings()
    if teacher is None:
        loss_fn: LossFn = onehot_ce
        targets = None
    else:
        check_teacher_matches(teacher, train.num_classes, "training data")
        if isinstance(loss, str):
            loss_fn = functools.partial(
                LOSSES.get(loss), **LOSSES.validate_options(loss, dict(loss_options or {}))
            )
        else:
            loss_fn = functools.partial(loss, **dict(loss_options or {}))
        if augment is not None:
            targets = OnlineTargets(teacher)
        else:
            probs = (
                teacher_probs if teacher_probs is not None else predict_in_batches(teacher, train.x)
            )
            if probs.shape != (len(train), train.num_classes):
                raise ValueError(
                    f"teacher_probs must have shape (N, C) = ({len(train)}, {train.num_classes}), "
                    f"got {tuple(probs.shape)}"
                )
            targets = CachedTargets(probs.to(train.x.device))
    return fit(
        student,
        train,
        loss_fn=loss_fn,
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
            "loss": getattr(loss, "__name__", loss),
            "options": dict(loss_options or {}),
        },
    )

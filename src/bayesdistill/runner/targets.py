"""What a student learns from, shared by the teacher and the student stages.

The student's training subset (`student_indices`: held-out teachers train without it) and
the teacher's targets on the training set, cached in the teacher's folder and shared by
the students of every loss: its probabilities (or out-of-fold table) and its predictions
on stored augmented views.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bayesdistill.config.schema import StudentConfig
from bayesdistill.data import DataSplits, per_class_subset
from bayesdistill.data.augment import Augmentation
from bayesdistill.data.labelled import LabelledData
from bayesdistill.io import files_exist, load_torch, save_torch
from bayesdistill.runner.common import STUDENT_SUBSET_STREAM
from bayesdistill.seeding import derive_seed
from bayesdistill.teachers import Teacher, training_targets
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.views import ViewCache, build_view_cache

TARGETS_FORMAT = "bayesdistill.targets"
VIEWS_FORMAT = "bayesdistill.view_cache"


def student_indices(config: StudentConfig, splits: DataSplits, seed: int) -> torch.Tensor:
    """Positions in the training set the student trains on (all, or a per-class subset)."""
    if config.subset is None:
        return torch.arange(len(splits.train), device="cpu")
    return per_class_subset(
        splits.train.y.cpu(),
        count=config.subset.per_class,
        fraction=config.subset.fraction,
        seed=derive_seed(seed, STUDENT_SUBSET_STREAM),
        num_classes=splits.num_classes,
    )


def cached_teacher_probs(
    teacher: Teacher,
    data: LabelledData,
    cache: Path | None,
    *,
    accel: Acceleration = DEFAULT_ACCELERATION,
) -> torch.Tensor:
    """What students learn from on ``data`` (on the teacher's device): the teacher's
    probabilities (asked under ``accel``), or its out-of-fold table when it is cross-fitted
    on ``data`` (`training_targets`); read from / written to ``cache`` if given."""
    if cache is not None and files_exist(cache):
        state = load_torch(cache, what="cached teacher predictions", expected_format=TARGETS_FORMAT)
        if state["probs"].shape[0] == len(data):
            return state["probs"].to(getattr(teacher, "device", "cpu"))
    probs = training_targets(teacher, data, accel=accel)
    if cache is not None:
        save_torch(cache, {"format": TARGETS_FORMAT, "probs": probs.cpu()})
    return probs


def cached_view_cache(
    teacher: Teacher,
    data: LabelledData,
    augment: Augmentation,
    cache: Path | None,
    *,
    views: int,
    top_k: int | None,
    seed: int,
    description: str,
    accel: Acceleration = DEFAULT_ACCELERATION,
) -> ViewCache:
    """The teacher's predictions on ``views`` stored augmented views of each example of
    ``data`` (`bayesdistill.train.views`), read from / written to ``cache`` if given: every
    student of a seed distilled from this teacher with this augmentation (one per loss)
    shares one cache, and so the same views."""
    key = {"views": views, "top_k": top_k, "seed": seed, "augment": description, "n": len(data)}
    if cache is not None and files_exist(cache):
        state = load_torch(cache, what="teacher view cache", expected_format=VIEWS_FORMAT)
        if state.get("key") == key:
            return ViewCache.from_state(state["cache"])
    built = build_view_cache(
        teacher, data, augment, views=views, seed=seed, top_k=top_k, accel=accel
    )
    if cache is not None:
        save_torch(cache, {"format": VIEWS_FORMAT, "key": key, "cache": built.state()})
    return built

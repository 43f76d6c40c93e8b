"""Student stage: distil one student from one teacher (or from one-hot labels).

Folder layout (`bayesdistill.layout.StudentFiles`): metrics.jsonl, checkpoint.pt,
student.pt, summary.json. Students of one seed share their initial weights, their training subset and
their batch order, so differences between teacher kinds are paired.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from bayesdistill.config.schema import LossConfig, StudentConfig
from bayesdistill.data import DataSplits
from bayesdistill.errors import ConfigError
from bayesdistill.io import files_exist, read_json, write_json
from bayesdistill.layout import VIEW_CACHE, StudentFiles
from bayesdistill.losses import check_num_classes, loss_kind, needs_teacher
from bayesdistill.runner.common import (
    STUDENT_BATCH_STREAM,
    STUDENT_INIT_STREAM,
    STUDENT_VIEW_STREAM,
    build_augment,
    curve_fluctuation,
    init_network,
    log,
    network_evaluator,
    save_network,
)
from bayesdistill.runner.targets import cached_teacher_probs, cached_view_cache, student_indices
from bayesdistill.seeding import derive_seed
from bayesdistill.teachers import Teacher, check_teacher_matches
from bayesdistill.teachers.cross_fit import target_source
from bayesdistill.train import distill
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.targets import TeacherCache, resolve_cache

COMPOSITE = "composite"
"""The ``loss`` of a student summary whose loss is a weighted sum (see ``loss_terms``)."""


def uses_teacher(loss: LossConfig) -> bool:
    """Whether ``loss`` reads the teacher: its probabilities or its features."""
    if loss.terms is None:
        return needs_teacher(loss.name or "")
    return any(loss_kind(t.name) == "feature" or needs_teacher(t.name) for t in loss.terms)


def uses_probabilities(loss: LossConfig) -> bool:
    """Whether ``loss`` reads the teacher's probabilities (not only its features)."""
    if loss.terms is None:
        return needs_teacher(loss.name or "")
    return any(loss_kind(t.name) == "response" and needs_teacher(t.name) for t in loss.terms)


def check_student_losses(config: StudentConfig, num_classes: int) -> None:
    """Refuse, before any training, student losses that cannot run on ``num_classes``
    classes (2-class-only losses such as ``distilled_ranking`` need C = 2)."""
    for loss in config.losses:
        names = [loss.name] if loss.terms is None else [t.name for t in loss.terms]
        for name in names:
            try:
                check_num_classes(name or "", num_classes)
            except ConfigError as exc:
                raise ConfigError(f"student loss '{loss.key}': {exc}") from None


def train_student(
    config: StudentConfig,
    splits: DataSplits,
    seed: int,
    teacher: Teacher | None,
    loss: LossConfig | None,
    label: str,
    folder: Path,
    device: torch.device,
    *,
    resume: bool,
    progress: bool,
    targets_cache: Path | None = None,
    held_out: bool | None = None,
    accel: Acceleration = DEFAULT_ACCELERATION,
) -> dict[str, Any]:
    """Train one student and write its summary; returns the summary.

    With ``teacher=None`` the student learns from one-hot labels (``onehot_ce``) and
    ``loss`` is ignored. Without augmentation the teacher is queried once on the training
    set (a cross-fitted teacher gives its out-of-fold table); with augmentation on every
    batch, or once on stored views (``teacher_cache: views``, cached next to
    ``targets_cache`` and shared by the students of every loss). ``held_out``: whether the teacher was trained without the student's examples
    (None: unknown). The summary's ``targets`` says which targets the student learnt from:
    ``labels``, ``out_of_fold``, ``held_out``, ``in_sample``, or ``predictions`` (a teacher
    whose training data is unknown).
    """
    files = StudentFiles(folder)
    summary_file = files.summary
    if resume and files_exist(summary_file, files.network):
        log.info("seed %d: student '%s' (%s) already trained", seed, label, folder.name)
        return read_json(summary_file)
    index = student_indices(config, splits, seed)
    train = splits.train.subset(index).to(device)
    augment = build_augment(config.augment)
    distilled = teacher is not None and loss is not None
    if distilled and not uses_teacher(loss):
        log.warning("student '%s': loss '%s' ignores the teacher", label, loss.key)
    probs, views = None, None
    cache = resolve_cache(config.teacher_cache, augment)
    if distilled and uses_probabilities(loss):
        check_teacher_matches(teacher, splits.num_classes, "training data")
        if cache is TeacherCache.EXACT:
            probs = cached_teacher_probs(teacher, splits.train, targets_cache, accel=accel)
            # the table is on the teacher's device (the CPU for a teacher without a
            # network): pick the student's rows there, then move them to the student once
            probs = probs[index.to(probs.device)].to(device)
        elif cache is TeacherCache.VIEWS:
            views = cached_view_cache(
                teacher,
                splits.train,
                augment,  # type: ignore[arg-type]
                None if targets_cache is None else targets_cache.with_name(VIEW_CACHE),
                views=config.cache_views,
                top_k=config.cache_top_k,
                seed=derive_seed(seed, STUDENT_VIEW_STREAM),
                description=json.dumps([a.model_dump(mode="json") for a in config.augment]),
                accel=accel,
            ).subset(index)
    network = init_network(config.model, splits, seed, STUDENT_INIT_STREAM, device)
    tic = time.perf_counter()
    result = distill(
        network,
        train,
        teacher if distilled else None,
        loss=loss.spec() if distilled else "onehot_ce",
        loss_options=loss.options if distilled else None,
        settings=config.train,
        seed=derive_seed(seed, STUDENT_BATCH_STREAM),
        teacher_probs=probs,
        evaluate=network_evaluator(splits),
        augment=augment,
        teacher_cache=cache,
        cache_views=config.cache_views,
        cache_top_k=config.cache_top_k,
        view_cache=views,
        run_dir=folder,
        resume=resume,
        progress=progress,
        description=f"seed {seed} student <- {label}",
        accel=accel,
    )
    loss_name = (loss.name or COMPOSITE) if distilled else "onehot_ce"
    targets = "labels"
    if distilled:
        targets = target_source(teacher, splits.train)
        if targets == "predictions" and held_out is not None:
            targets = "held_out" if held_out else "in_sample"
    save_network(files.network, result.model)
    summary = {
        "label": label,
        "loss": loss_name,
        "loss_label": loss.key if distilled else loss_name,
        "loss_options": loss.options if distilled else {},
        "n_train": len(train),
        "targets": targets,
        "final": result.final,
        "fluctuation": curve_fluctuation(result.history),
        "seconds": time.perf_counter() - tic,
    }
    if distilled and loss.tuned_from is not None:
        summary["tuned_from"] = loss.tuned_from
        summary["tuned_values"] = loss.tuned_values
    if distilled and loss.is_composite:
        summary["loss_terms"] = [term.model_dump(mode="json") for term in loss.terms or []]
    write_json(summary_file, summary)
    final = result.final
    log.info(
        "seed %d: student <- %-24s test acc %.4f  nll %.4f  ece %.4f  fluct %.2f pp",
        seed,
        f"{label} ({loss.key})" if distilled else label,
        final["test_accuracy"],
        final["test_nll"],
        final["test_ece"],
        summary["fluctuation"],
    )
    return summary

"""Single runs: fit teachers (``bayesdistill teacher``), distil one student (``distill``).

Both check everything (config, device, data, losses, the teacher file and whether it fits
the data, ``--out``) before their run folder is created, record what made the run
(`bayesdistill.runner.identity`) and refuse to resume a folder made by another seed,
config, teacher file or dataset. Their folders' layouts are in `RunLayout`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bayesdistill.config.loading import dump_config
from bayesdistill.config.schema import NO_TEACHER, ExperimentConfig, LossConfig
from bayesdistill.data import DataSplits
from bayesdistill.io import read_json
from bayesdistill.layout import RunKind, RunLayout, StudentFiles
from bayesdistill.runner.checks import check_experiment, check_teacher_fits
from bayesdistill.runner.common import load_data, log, resolve_device
from bayesdistill.runner.identity import (
    TEACHER_TRAIN_STREAM_FACT,
    RunIdentity,
    RunState,
    config_values,
    data_fingerprint,
    fact,
    file_record,
    finish_run,
    open_run,
    run_facts,
)
from bayesdistill.runner.output import inspect_output
from bayesdistill.runner.students import (
    check_student_losses,
    train_student,
    uses_probabilities,
    uses_teacher,
)
from bayesdistill.runner.teachers import run_teacher_stage
from bayesdistill.teachers import SavableTeacher, load_teacher
from bayesdistill.train.accel import Acceleration
from bayesdistill.train.targets import check_augmentable


def run_teachers(
    config: ExperimentConfig,
    out: str | Path,
    *,
    seed: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Train the teacher network and build the configured teacher kinds; returns their files.

    Each teacher lands in ``out/teachers/<label>/teacher.pt``, ready for `run_distill`.
    """
    layout = RunLayout(Path(out))
    existing = inspect_output(layout, kind=RunKind.TEACHER, resume=resume)
    device = resolve_device(config.device)
    config.runtime.acceleration().check(device)
    seed = config.seeds[0] if seed is None else seed
    splits = load_data(config.data, config.runtime.loader_options())
    check_experiment(config, splits, teacher=True, seeds=[seed])
    labels = [kind.key for kind in config.teachers if kind.name != NO_TEACHER]
    files = {label: layout.pieces.teacher(label).teacher for label in labels}
    facts = run_facts(existing)
    identity = RunIdentity(
        RunKind.TEACHER,
        config_values(config),
        seed=seed,
        teacher=file_record(config.teacher.checkpoint),
        data=data_fingerprint(splits),
        extra=facts,
    )
    outputs = [*files.values(), *(layout.pieces.teacher(label).summary for label in labels)]
    state = open_run(
        layout, identity, existing, dump_config(config), device=device, outputs=outputs
    )
    if state is RunState.FINISHED:
        log.info("'%s' holds finished teachers of seed %d; nothing to do", layout.root, seed)
        return files
    with config.log.mirror():
        run_teacher_stage(
            config,
            splits,
            seed,
            layout.pieces.folder,
            device,
            train_stream=fact(facts, TEACHER_TRAIN_STREAM_FACT),
            resume=resume,
            progress=progress,
        )
    finish_run(layout, identity)
    return files


def run_distill(
    config: ExperimentConfig,
    out: str | Path,
    *,
    teacher: str | Path | None,
    seed: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Distil a student from a saved teacher file for each configured loss (in
    ``out/<loss label>/``), or one student from one-hot labels (in ``out/``) when
    ``teacher`` is None. Returns the students' summaries."""
    layout = RunLayout(Path(out))
    existing = inspect_output(layout, kind=RunKind.DISTILL, resume=resume)
    device = resolve_device(config.device)
    accel = config.runtime.acceleration()
    accel.check(device)
    seed = config.seeds[0] if seed is None else seed
    loaded: SavableTeacher | None = None
    if teacher is not None:
        loaded = load_teacher(teacher, device)
    splits = load_data(config.data, config.runtime.loader_options())
    check_student_losses(config.student, splits.num_classes)
    check_experiment(config, splits, teacher=False, seeds=[seed])
    losses = config.student.trained_losses()
    if loaded is not None and any(uses_teacher(loss) for loss in losses):
        check_teacher_fits(
            loaded,
            splits,
            classes=any(uses_probabilities(loss) for loss in losses),
            where=f"'{teacher}'",
        )
    if loaded is not None and config.student.augment and any(map(uses_probabilities, losses)):
        check_augmentable(loaded, splits.train, "student.augment")
    students = (
        [layout.distilled_student(None)]
        if loaded is None
        else [layout.distilled_student(loss.key) for loss in losses]
    )
    identity = RunIdentity(
        RunKind.DISTILL,
        config_values(config),
        seed=seed,
        teacher=file_record(teacher),
        data=data_fingerprint(splits),
    )
    outputs = [path for s in students for path in (s.summary, s.network)]
    state = open_run(
        layout, identity, existing, dump_config(config), device=device, outputs=outputs
    )
    if state is RunState.FINISHED:
        log.info("'%s' holds finished students of this teacher; nothing to do", layout.root)
        return [read_json(s.summary) for s in students]
    if loaded is not None:
        log.info("distilling from %s teacher '%s'", loaded.kind, teacher)
    with config.log.mirror():
        summaries = _train_students(
            config, splits, seed, loaded, losses, students, layout, device, resume, progress, accel
        )
    finish_run(layout, identity)
    return summaries


def _train_students(
    config: ExperimentConfig,
    splits: DataSplits,
    seed: int,
    loaded: SavableTeacher | None,
    losses: list[LossConfig],
    students: list[StudentFiles],
    layout: RunLayout,
    device: torch.device,
    resume: bool,
    progress: bool,
    accel: Acceleration,
) -> list[dict[str, Any]]:
    if loaded is None:
        summaries = [
            train_student(
                config.student,
                splits,
                seed,
                None,
                None,
                NO_TEACHER,
                students[0].folder,
                device,
                resume=resume,
                progress=progress,
                accel=accel,
            )
        ]
    else:
        summaries = [
            train_student(
                config.student,
                splits,
                seed,
                loaded,
                loss,
                loaded.kind,
                student.folder,
                device,
                resume=resume,
                progress=progress,
                targets_cache=layout.distill_targets,
                accel=accel,
            )
            for loss, student in zip(losses, students, strict=True)
        ]
    return summaries

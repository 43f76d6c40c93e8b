"""Single runs: fit teachers (``bayesdistill teacher``), distil one student (``distill``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bayesdistill.config.schema import ExperimentConfig
from bayesdistill.runner.common import load_data, log, resolve_device
from bayesdistill.runner.students import check_student_losses, train_student
from bayesdistill.runner.study import prepare_output
from bayesdistill.runner.teachers import TEACHERS_DIR, run_teacher_stage
from bayesdistill.teachers import SavableTeacher, load_teacher


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
    out = Path(out)
    device = resolve_device(config.device)
    config.runtime.acceleration().check(device)
    prepare_output(config, out, resume)
    seed = config.seeds[0] if seed is None else seed
    splits = load_data(config.data, config.runtime.loader_options())
    teachers = run_teacher_stage(
        config, splits, seed, out, device, resume=resume, progress=progress
    )
    return {label: out / TEACHERS_DIR / label / "teacher.pt" for label in teachers}


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
    out = Path(out)
    device = resolve_device(config.device)
    accel = config.runtime.acceleration()
    accel.check(device)
    prepare_output(config, out, resume)
    seed = config.seeds[0] if seed is None else seed
    loaded: SavableTeacher | None = None
    if teacher is not None:
        loaded = load_teacher(teacher, device)
        log.info("distilling from %s teacher '%s'", loaded.kind, teacher)
    splits = load_data(config.data, config.runtime.loader_options())
    check_student_losses(config.student, splits.num_classes)
    if loaded is None:
        return [
            train_student(
                config.student,
                splits,
                seed,
                None,
                None,
                "none",
                out,
                device,
                resume=resume,
                progress=progress,
                accel=accel,
            )
        ]
    return [
        train_student(
            config.student,
            splits,
            seed,
            loaded,
            loss,
            loaded.kind,
            out / loss.key,
            device,
            resume=resume,
            progress=progress,
            targets_cache=out / "train_probs.pt",
            accel=accel,
        )
        for loss in config.student.losses
    ]

"""The study: for each seed, one teacher network, every teacher kind, one student per kind.

Output folder::

    config.yaml           the resolved config (defaults filled in): reruns reproduce it
    data.json             dataset facts
    seed_<s>/             teacher_network/, teachers/<label>/,
                          students/none/ (one-hot), students/<loss>/<teacher label>/
    results.csv           one row per model and seed
    results.md            mean ± std over seeds, paired differences
    plots/                learning curves, reliability diagrams

A study is resumable: ``resume=True`` skips finished pieces and continues interrupted
training from its last checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

from bayesdistill.config.loading import dump_config, load_config
from bayesdistill.config.schema import NO_TEACHER, ExperimentConfig
from bayesdistill.errors import ConfigError
from bayesdistill.io import remove_stale_temporaries, write_json, write_text
from bayesdistill.reports import write_reports
from bayesdistill.runner.common import experiment_summary, load_data, log, resolve_device
from bayesdistill.runner.students import STUDENTS_DIR, check_student_losses, train_student
from bayesdistill.runner.teachers import TEACHERS_DIR, TRAIN_PROBS, run_teacher_stage

CONFIG_NAME = "config.yaml"


def seed_dir(out: Path, seed: int) -> Path:
    return out / f"seed_{seed}"


def prepare_output(config: ExperimentConfig, out: Path, resume: bool) -> None:
    """Create ``out`` for a new run, or check that a resumed run has the same config."""
    saved = out / CONFIG_NAME
    if saved.is_file():
        if not resume:
            raise ConfigError(
                f"'{out}' already holds a run; pass --resume to continue it, or choose "
                "another --out folder"
            )
        if dump_config(load_config(saved)) != dump_config(config):
            raise ConfigError(
                f"cannot resume '{out}' with a different config; its config is {saved}. "
                "Resume with that config, or choose another --out folder"
            )
    elif out.exists() and any(out.iterdir()) and not resume:
        raise ConfigError(f"output folder '{out}' is not empty; choose another --out folder")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    write_text(saved, dump_config(config))


def run_study(
    config: ExperimentConfig, out: str | Path, *, resume: bool = False, progress: bool = True
) -> Path:
    """Run (or resume) a study and write its results; returns ``out``."""
    out = Path(out)
    device = resolve_device(config.device)
    accel = config.runtime.acceleration()
    accel.check(device)  # before the run folder is made: a bad option leaves nothing
    prepare_output(config, out, resume)
    tic = time.perf_counter()
    splits = load_data(config.data, config.runtime.loader_options())
    check_student_losses(config.student, splits.num_classes)
    write_json(out / "data.json", experiment_summary(config, splits))
    log.info(
        "study: %s, %d train / %d val / %d test, %d classes, device %s, seeds %s",
        splits.name,
        len(splits.train),
        len(splits.val),
        len(splits.test),
        splits.num_classes,
        device,
        config.seeds,
    )
    for seed in config.seeds:
        folder = seed_dir(out, seed)
        teachers = run_teacher_stage(
            config, splits, seed, folder, device, resume=resume, progress=progress
        )
        students = folder / STUDENTS_DIR
        if any(kind.name == NO_TEACHER for kind in config.teachers):
            train_student(
                config.student,
                splits,
                seed,
                None,
                None,
                NO_TEACHER,
                students / NO_TEACHER,
                device,
                resume=resume,
                progress=progress,
                accel=accel,
            )
        for loss in config.student.losses:
            for kind in config.teachers:
                if kind.name == NO_TEACHER or not loss.applies_to(kind.key):
                    continue
                train_student(
                    config.student,
                    splits,
                    seed,
                    teachers[kind.key],
                    loss,
                    kind.key,
                    students / loss.key / kind.key,
                    device,
                    resume=resume,
                    progress=progress,
                    targets_cache=folder / TEACHERS_DIR / kind.key / TRAIN_PROBS,
                    held_out=config.teacher.exclude_student_subset,
                    accel=accel,
                )
    write_json(out / "timing.json", {"seconds": time.perf_counter() - tic, "resumed": resume})
    write_reports(out)
    return out

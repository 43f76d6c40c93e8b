"""The study: for each seed, one teacher network, every teacher kind, one student per kind.

Its folder (`bayesdistill.runner.layout.RunLayout`): run.json, config.yaml,
environment.json, data.json, timing.json, ``seed_<s>/`` (teacher_network/,
teachers/<label>/, students/none/, students/<loss>/<teacher label>/), results.csv,
results.md, plots/.

Everything is checked (config, device, data, losses, ``--out``) before the folder is
created, so a study that cannot start leaves nothing behind. A study is resumable:
``resume=True`` checks that the folder holds a study of the same config and data
(`bayesdistill.runner.identity`), skips finished pieces and continues interrupted training
from its last checkpoint; resuming a finished study does nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from bayesdistill.config.loading import dump_config
from bayesdistill.config.schema import NO_TEACHER, ExperimentConfig
from bayesdistill.io import write_json
from bayesdistill.reports import write_reports
from bayesdistill.runner.common import experiment_summary, load_data, log, resolve_device
from bayesdistill.runner.identity import (
    RunIdentity,
    RunState,
    data_fingerprint,
    finish_run,
    inspect_output,
    open_run,
)
from bayesdistill.runner.layout import RunKind, RunLayout
from bayesdistill.runner.students import check_student_losses, train_student
from bayesdistill.runner.teachers import run_teacher_stage


def seed_dir(out: Path, seed: int) -> Path:
    """A study's seed folder (`RunLayout.seed`)."""
    return RunLayout(out).seed(seed).folder


def config_values(config: ExperimentConfig) -> dict:
    """The resolved config as the plain values its config.yaml holds."""
    return yaml.safe_load(dump_config(config))


def run_study(
    config: ExperimentConfig, out: str | Path, *, resume: bool = False, progress: bool = True
) -> Path:
    """Run (or resume) a study and write its results; returns ``out``."""
    layout = RunLayout(Path(out))
    existing = inspect_output(layout, kind=RunKind.STUDY, resume=resume)
    device = resolve_device(config.device)
    accel = config.runtime.acceleration()
    accel.check(device)
    splits = load_data(config.data, config.runtime.loader_options())
    check_student_losses(config.student, splits.num_classes)
    identity = RunIdentity(RunKind.STUDY, config_values(config), data=data_fingerprint(splits))
    state = open_run(
        layout,
        identity,
        existing,
        dump_config(config),
        device=device,
        outputs=(layout.results_csv, layout.results_md),
    )
    if state is RunState.FINISHED:
        log.info("'%s' holds a finished study of this config; nothing to do", layout.root)
        return layout.root
    tic = time.perf_counter()
    write_json(layout.data, experiment_summary(config, splits))
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
        pieces = layout.seed(seed)
        teachers = run_teacher_stage(
            config, splits, seed, pieces.folder, device, resume=resume, progress=progress
        )
        if any(kind.name == NO_TEACHER for kind in config.teachers):
            train_student(
                config.student,
                splits,
                seed,
                None,
                None,
                NO_TEACHER,
                pieces.one_hot_student.folder,
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
                    pieces.student(loss.key, kind.key).folder,
                    device,
                    resume=resume,
                    progress=progress,
                    targets_cache=pieces.teacher(kind.key).train_probs,
                    held_out=config.teacher.exclude_student_subset,
                    accel=accel,
                )
    write_json(layout.timing, {"seconds": time.perf_counter() - tic, "resumed": resume})
    write_reports(layout.root)
    finish_run(layout, identity)
    return layout.root

"""The study: for each seed, one teacher network, every teacher kind, one student per kind.

Its folder (`bayesdistill.layout.RunLayout`): run.json, config.yaml,
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

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bayesdistill.config.loading import dump_config
from bayesdistill.config.schema import ExecutorConfig, ExecutorName, ExperimentConfig
from bayesdistill.data import DataSplits
from bayesdistill.io import write_json
from bayesdistill.layout import RunKind, RunLayout
from bayesdistill.reports import write_reports
from bayesdistill.runner.checks import check_experiment
from bayesdistill.runner.common import experiment_summary, load_data, log, resolve_device
from bayesdistill.runner.executors import LocalExecutor, ProcessExecutor
from bayesdistill.runner.graph import Executor, Outcome, Unit
from bayesdistill.runner.identity import (
    RunIdentity,
    RunState,
    config_values,
    data_fingerprint,
    file_record,
    finish_run,
    open_run,
    run_facts,
)
from bayesdistill.runner.output import inspect_output
from bayesdistill.runner.ray_executor import RayExecutor
from bayesdistill.runner.students import check_student_losses
from bayesdistill.runner.units import remember, run_unit, study_units


def seed_dir(out: Path, seed: int) -> Path:
    """A study's seed folder (`RunLayout.seed`)."""
    return RunLayout(out).seed(seed).folder


def make_executor(config: ExecutorConfig, device: torch.device) -> Executor:
    """The executor a config asks for."""
    if config.name is ExecutorName.PROCESSES:
        return ProcessExecutor(
            config.pool_size(),
            config.devices,
            config.threads,
            unit_memory_gib=config.unit_memory_gib,
        )
    if config.name is ExecutorName.RAY:
        gpus = config.gpus_per_unit if config.gpus_per_unit is not None else 1.0
        return RayExecutor(
            config.address,
            num_cpus=None if config.address else config.pool_size(),
            cpus_per_task=config.threads or 1,
            gpus_per_task=gpus if device.type == "cuda" else 0.0,
        )
    return LocalExecutor()


@dataclass(frozen=True)
class OpenedStudy:
    """A study folder ready for units (`open_study`)."""

    layout: RunLayout
    identity: RunIdentity
    state: RunState
    splits: DataSplits
    device: torch.device


def open_study(
    config: ExperimentConfig,
    out: str | Path,
    *,
    resume: bool,
    check: Callable[[DataSplits], None] | None = None,
) -> OpenedStudy:
    """Check everything a study of ``config`` needs, then create (or reopen) its folder.

    ``check``: a further check of the loaded data (``bayesdistill advise`` needs validation
    data), made before anything is written. Shared by `run_study` and
    `bayesdistill.runner.advise.run_advise`, so that both make the same folder and a study
    resumes what advise built.
    """
    layout = RunLayout(Path(out))
    existing = inspect_output(layout, kind=RunKind.STUDY, resume=resume)
    device = resolve_device(config.device)
    accel = config.runtime.acceleration()
    accel.check(device)
    splits = load_data(config.data, config.runtime.loader_options())
    check_student_losses(config.student, splits.num_classes)
    check_experiment(config, splits, teacher=True)
    if check is not None:
        check(splits)
    identity = RunIdentity(
        RunKind.STUDY,
        config_values(config),
        teacher=file_record(config.teacher.checkpoint),
        data=data_fingerprint(splits),
        extra=run_facts(existing),
    )
    state = open_run(
        layout,
        identity,
        existing,
        dump_config(config),
        device=device,
        outputs=(layout.results_csv, layout.results_md),
    )
    return OpenedStudy(layout, identity, state, splits, device)


def run_study_units(
    config: ExperimentConfig,
    study: OpenedStudy,
    units: list[Unit],
    *,
    progress: bool,
    executor: Executor | None = None,
) -> Outcome:
    """Run ``units`` of an opened study on ``executor`` (default: the config's); writes
    data.json first (the reports read it)."""
    layout, splits = study.layout, study.splits
    write_json(layout.data, experiment_summary(config, splits))
    log.info(
        "study: %s, %d train / %d val / %d test, %d classes, device %s, seeds %s",
        splits.name,
        len(splits.train),
        len(splits.val),
        len(splits.test),
        splits.num_classes,
        study.device,
        config.seeds,
    )
    executor = executor or make_executor(config.runtime.executor, study.device)
    remember(layout.root, config, splits)  # units run here reuse the loaded data
    log.info("study: %d units (%s)", len(units), type(executor).__name__)
    return executor.run(units, functools.partial(run_unit, out=str(layout.root), progress=progress))


def run_study(
    config: ExperimentConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
) -> Path:
    """Run (or resume) a study and write its results; returns ``out``.

    The study's units (`bayesdistill.runner.units`) run on ``executor`` (default: one after
    the other in this process). Units that fail are reported together at the end, after
    every unit that does not depend on them has run (`StudyFailedError`); rerunning with
    ``resume=True`` runs only what did not finish.
    """
    study = open_study(config, out, resume=resume)
    layout = study.layout
    if study.state is RunState.FINISHED:
        log.info("'%s' holds a finished study of this config; nothing to do", layout.root)
        return layout.root
    tic = time.perf_counter()
    outcome = run_study_units(
        config, study, study_units(config), progress=progress, executor=executor
    )
    if outcome.failed:
        if outcome.finished:
            write_reports(layout.root)  # what finished, for a look while fixing the rest
        outcome.raise_for_failures()
    write_json(layout.timing, {"seconds": time.perf_counter() - tic, "resumed": resume})
    write_reports(layout.root)
    finish_run(layout, study.identity)
    return layout.root

"""A study as a graph of units, each runnable in any process that sees the run folder.

Per seed::

    seed_<s>/network                 the teacher network (when a teacher kind needs one)
    seed_<s>/teacher/<label>         a teacher kind built from it (cross-fitted kinds with the
                                     same K are one unit: they share their fold networks)
    seed_<s>/student/none            the one-hot student
    seed_<s>/student/<loss>/<label>  a student distilled from one teacher kind

A unit reads what it needs from the run folder (the resolved config, the network, the
teacher file) and writes its outputs there; `run_unit` runs one in the calling process.
Finished units are found on disk and skipped (every unit runs with resume), so a rerun
with ``--resume`` redoes only what did not finish. The reports are written once all units
have run, by the process that started the study.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from bayesdistill.config.loading import load_config
from bayesdistill.config.schema import NO_TEACHER, ExperimentConfig, TeacherKindConfig
from bayesdistill.data import DataSplits
from bayesdistill.layout import CONFIG, RunLayout
from bayesdistill.runner.common import load_data, resolve_device
from bayesdistill.runner.graph import Placement, Unit, show_tracebacks, unit_log_path
from bayesdistill.runner.identity import TEACHER_TRAIN_STREAM_FACT, recorded_facts
from bayesdistill.runner.students import train_student
from bayesdistill.runner.teachers import (
    run_teacher_stage,
    teacher_splits,
    train_teacher_network,
    uses_network,
)
from bayesdistill.teachers import load_teacher

log = logging.getLogger("bayesdistill")

NETWORK = "network"
TEACHER = "teacher"
STUDENT = "student"


def study_units(config: ExperimentConfig) -> list[Unit]:
    """The units of a study, each after the units it needs."""
    units: list[Unit] = []
    kinds = [k for k in config.teachers if k.name != NO_TEACHER]
    for seed in config.seeds:
        prefix = f"seed_{seed}"
        network = f"{prefix}/{NETWORK}"
        if any(uses_network(k) for k in kinds):
            units.append(Unit(network, NETWORK, seed))
        teacher_unit: dict[str, str] = {}
        groups: dict[str, list[TeacherKindConfig]] = {}
        for kind in kinds:  # cross-fitted kinds with the same K share their fold networks
            group = kind.key if kind.cross_fit is None else f"cross_fit_{kind.cross_fit}"
            groups.setdefault(group, []).append(kind)
        for group, members in groups.items():
            name = f"{prefix}/{TEACHER}/{group}"
            deps = (network,) if any(uses_network(k) for k in members) else ()
            units.append(Unit(name, TEACHER, seed, deps, {"kinds": [k.key for k in members]}))
            teacher_unit.update(dict.fromkeys((k.key for k in members), name))
        if any(k.name == NO_TEACHER for k in config.teachers):
            units.append(Unit(f"{prefix}/{STUDENT}/{NO_TEACHER}", STUDENT, seed, (), {}))
        for loss in config.student.trained_losses():
            for kind in kinds:
                if not loss.applies_to(kind.key):
                    continue
                units.append(
                    Unit(
                        f"{prefix}/{STUDENT}/{loss.key}/{kind.key}",
                        STUDENT,
                        seed,
                        (teacher_unit[kind.key],),
                        {"loss": loss.key, "kind": kind.key},
                    )
                )
    return units


def run_unit(unit: Unit, placement: Placement, *, out: str, progress: bool = False) -> None:
    """Run one unit of the study in ``out`` in this process (resuming what it finds)."""
    if placement.threads is not None:
        torch.set_num_threads(placement.threads)
    folder = Path(out)
    config, splits = _study(str(folder.resolve()))
    device = resolve_device(config.device if placement.device == "auto" else placement.device)
    with _unit_log(unit_log_path(folder, unit)) as own_log, config.log.mirror():
        log.info("unit %s: process %d, device %s", unit.name, os.getpid(), device)
        try:
            _run(unit, config, splits, folder, device, progress)
        except BaseException:
            # the traceback goes to the unit's log; the console shows the error's message
            # (the executor reports it), the traceback too under --debug
            if show_tracebacks():
                log.exception("unit %s failed", unit.name)
            else:
                own_log.handle(
                    log.makeRecord(
                        log.name, logging.ERROR, __file__, 0, "unit %s failed", (unit.name,),
                        sys.exc_info(),
                    )
                )  # fmt: skip
            raise


def _run(
    unit: Unit,
    config: ExperimentConfig,
    splits: DataSplits,
    folder: Path,
    device: torch.device,
    progress: bool,
) -> None:
    """Dispatch one unit by its kind."""
    if unit.kind == NETWORK:
        _network(config, splits, unit.seed, folder, device, progress)
    elif unit.kind == TEACHER:
        _teachers(config, splits, unit.seed, folder, device, unit.args["kinds"], progress)
    elif unit.kind == STUDENT:
        _student(config, splits, unit, folder, device, progress)
    else:
        raise ValueError(f"unknown unit kind '{unit.kind}' of unit '{unit.name}'")


_LOADED: dict[str, tuple[ExperimentConfig, DataSplits]] = {}
"""Each process loads a run folder's config and data once (the last folder only)."""


def _study(out: str) -> tuple[ExperimentConfig, DataSplits]:
    """The run folder's config and data, loaded once per process."""
    if out not in _LOADED:
        config = load_config(Path(out) / CONFIG)
        _LOADED.clear()
        _LOADED[out] = (config, load_data(config.data, config.runtime.loader_options()))
    return _LOADED[out]


def remember(out: str | Path, config: ExperimentConfig, splits: DataSplits) -> None:
    """Let units of the run folder ``out`` run in this process use data already loaded."""
    _LOADED.clear()
    _LOADED[str(Path(out).resolve())] = (config, splits)


@contextlib.contextmanager
def _unit_log(path: Path) -> Iterator[logging.Handler]:
    """Within the block, bayesdistill's log records of INFO and above also go to ``path``
    (the unit's own log; its handler is what the block gets); what the other handlers show
    is unchanged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("bayesdistill")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    level = logger.getEffectiveLevel()
    raised = [(h, h.level) for h in logger.handlers]
    for other, own in raised:  # they keep showing what they showed
        other.setLevel(max(own, level))
    logger.addHandler(handler)
    logger.setLevel(min(level, logging.INFO))
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level if logger.level != logging.NOTSET else logging.NOTSET)
        for other, own in raised:
            other.setLevel(own)


def _network(
    config: ExperimentConfig,
    splits: DataSplits,
    seed: int,
    out: Path,
    device: torch.device,
    progress: bool,
) -> None:
    train_teacher_network(
        config,
        teacher_splits(config, splits, seed),
        seed,
        RunLayout(out).seed(seed).network.folder,
        device,
        train_stream=_train_stream(out),
        resume=True,
        progress=progress,
    )


def _teachers(
    config: ExperimentConfig,
    splits: DataSplits,
    seed: int,
    out: Path,
    device: torch.device,
    labels: list[str],
    progress: bool,
) -> None:
    run_teacher_stage(
        config,
        splits,
        seed,
        RunLayout(out).seed(seed).folder,
        device,
        train_stream=_train_stream(out),
        resume=True,
        progress=progress,
        only=labels,
    )


def _train_stream(out: Path) -> int:
    """The seed stream the study in ``out`` trains its teacher networks on (its run.json's
    ``teacher_train_stream``: the old one in a folder recorded before the fact)."""
    return recorded_facts(RunLayout(out))[TEACHER_TRAIN_STREAM_FACT]


def _student(
    config: ExperimentConfig,
    splits: DataSplits,
    unit: Unit,
    out: Path,
    device: torch.device,
    progress: bool,
) -> None:
    pieces = RunLayout(out).seed(unit.seed)
    accel = config.runtime.acceleration()
    if not unit.args:
        train_student(
            config.student,
            splits,
            unit.seed,
            None,
            None,
            NO_TEACHER,
            pieces.one_hot_student.folder,
            device,
            resume=True,
            progress=progress,
            accel=accel,
        )
        return
    loss = next(x for x in config.student.trained_losses() if x.key == unit.args["loss"])
    label = unit.args["kind"]
    files = pieces.teacher(label)
    teacher = load_teacher(files.teacher, device)
    train_student(
        config.student,
        splits,
        unit.seed,
        teacher,
        loss,
        label,
        pieces.student(loss.key, label).folder,
        device,
        resume=True,
        progress=progress,
        targets_cache=files.train_probs,
        held_out=config.teacher.exclude_student_subset,
        accel=accel,
    )

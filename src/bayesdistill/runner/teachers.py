"""Teacher stage of a run: train the teacher network once, build every teacher kind from it.

Where its files go under a seed's folder is `bayesdistill.layout.SeedLayout`
(``teacher_network/``, ``teachers/<label>/``). Every finished piece is detected on ``resume`` and loaded instead of recomputed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from bayesdistill.config.schema import NO_TEACHER, ExperimentConfig, TeacherKindConfig
from bayesdistill.data import DataSplits
from bayesdistill.data.labelled import LabelledData
from bayesdistill.io import JsonLines, files_exist, read_json, save_torch, write_json
from bayesdistill.layout import NetworkFiles, SeedLayout, TeacherFiles
from bayesdistill.losses import onehot_ce
from bayesdistill.metrics import mean_entropy
from bayesdistill.models import Classifier, load_teacher_checkpoint
from bayesdistill.runner.common import (
    TEACHER_INIT_STREAM,
    build_augment,
    curve_fluctuation,
    init_network,
    load_network,
    log,
    network_evaluator,
    save_network,
    split_metrics,
)
from bayesdistill.runner.identity import file_sha256
from bayesdistill.runner.targets import cached_teacher_probs, student_indices
from bayesdistill.seeding import derive_seed
from bayesdistill.teachers import (
    TEACHERS,
    CrossFitPlan,
    SavableTeacher,
    TeacherContext,
    calibrate,
    load_teacher,
    needs_network,
)
from bayesdistill.teachers.cross_fit import target_source
from bayesdistill.train import RunOptions, fit, predict_in_batches

PROBS_FORMAT = "bayesdistill.predictions"


def train_teacher_network(
    config: ExperimentConfig,
    splits: DataSplits,
    seed: int,
    folder: Path,
    device: torch.device,
    *,
    train_stream: int,
    resume: bool,
    progress: bool,
) -> Classifier:
    """Train (or, when finished earlier, load) the network the teacher kinds are built from;
    with ``teacher.checkpoint``, read it from that file instead (the same for every seed).

    It is initialised from ``(seed, TEACHER_INIT_STREAM)`` and trained (batch order,
    dropout, augmentation) from ``(seed, train_stream)``: the run's ``teacher_train_stream``
    (`bayesdistill.runner.identity.LATER_FACTS`; `TEACHER_TRAIN_STREAM` in new runs)."""
    files = NetworkFiles(folder)
    done = files.network
    if resume and files_exist(done, files.summary):
        log.info("seed %d: teacher network already trained, loading %s", seed, done)
        return load_network(done, device)
    if config.teacher.checkpoint is not None:
        tic = time.perf_counter()
        path = Path(config.teacher.checkpoint)
        model = config.teacher.model
        network = load_teacher_checkpoint(
            path, model.name, splits.input_shape, splits.num_classes, model.options
        ).to(device)
        save_network(done, network)
        write_json(
            files.summary,
            {
                "checkpoint": str(path.resolve()),
                "sha256": file_sha256(path),
                "final": network_evaluator(splits)(network),
                "fluctuation": float("nan"),  # no learning curve: not trained here
                "seconds": time.perf_counter() - tic,
            },
        )
        return network
    network = init_network(config.teacher.model, splits, seed, TEACHER_INIT_STREAM, device)
    tic = time.perf_counter()
    result = fit(
        network,
        splits.train,
        loss_fn=onehot_ce,
        settings=config.teacher.train,
        augment=build_augment(config.teacher.augment),
        seed=derive_seed(seed, train_stream),
        evaluate=network_evaluator(splits),
        run_dir=folder,
        resume=resume,
        progress=progress,
        description=f"seed {seed} teacher network",
        accel=config.runtime.acceleration(),
    )
    save_network(done, result.model)
    write_json(
        files.summary,
        {
            "final": result.final,
            "fluctuation": curve_fluctuation(result.history),
            "seconds": time.perf_counter() - tic,
        },
    )
    return result.model


def fresh_network_factory(
    config: ExperimentConfig, splits: DataSplits, seed: int, device: torch.device
) -> Callable[[], Classifier]:
    """Builds networks with the teacher network's initial weights (for IVON)."""
    return lambda: init_network(config.teacher.model, splits, seed, TEACHER_INIT_STREAM, device)


def build_teacher(
    kind: TeacherKindConfig,
    context: TeacherContext,
    folder: Path,
    *,
    network_fluctuation: float,
    plan: CrossFitPlan | None = None,
    student_train: LabelledData | None = None,
) -> SavableTeacher:
    """Build one teacher kind (or load it when finished earlier) and record its metrics.

    ``plan``: the folds of a cross-fitted kind (``kind.cross_fit``). ``student_train``: the
    training set students learn from, when the teacher's own is smaller (held-out teachers).
    """
    files = TeacherFiles(folder)
    teacher_file, summary_file = files.teacher, files.summary
    if context.resume and files_exist(teacher_file, summary_file):
        log.info("seed %d: teacher '%s' already built, loading", context.seed, kind.key)
        return load_teacher(teacher_file, _device(context))
    tic = time.perf_counter()
    context = context.in_run_dir(files.train_dir)
    if plan is not None:
        teacher = plan.in_run_dir(context.run_dir).build(
            kind.name, predictor=kind.cross_fit_predictor, **kind.options
        )
    else:
        teacher = TEACHERS.build(kind.name, context, **kind.options)
    if kind.calibrate:
        teacher = calibrate(teacher, context.splits.val)
    seconds = time.perf_counter() - tic
    teacher.save(teacher_file)
    splits = context.splits
    test_probs = predict_in_batches(teacher, splits.test, accel=context.accel).cpu()
    val_probs = predict_in_batches(teacher, splits.val, accel=context.accel).cpu()
    # what students learn from: the teacher's predictions on the training set (cached)
    train = splits.train if student_train is None else student_train
    train_probs = cached_teacher_probs(teacher, train, files.train_probs, accel=context.accel).cpu()
    targets = target_source(teacher, train)
    if targets != "out_of_fold":
        targets = "in_sample" if student_train is None else "held_out"
    own_curve = JsonLines(context.run_dir / "metrics.jsonl").read()
    save_torch(
        files.test_probs,
        {"format": PROBS_FORMAT, "probs": test_probs, "labels": splits.test.y.cpu()},
    )
    test = split_metrics(test_probs, splits.test, "test")
    write_json(
        summary_file,
        {
            "label": kind.key,
            "name": kind.name,
            "teacher": teacher.describe(),
            "training_targets": targets,
            "test": test,
            "val": split_metrics(val_probs, splits.val, "val"),
            "train": {
                **split_metrics(train_probs, train, "train"),
                "train_entropy": mean_entropy(train_probs),
            },
            "fluctuation": curve_fluctuation(own_curve) if own_curve else network_fluctuation,
            "seconds": seconds,
        },
    )
    log.info(
        "seed %d: teacher %-14s test acc %.4f  nll %.4f  ece %.4f  (%.1fs)",
        context.seed,
        kind.key,
        test["test_accuracy"],
        test["test_nll"],
        test["test_ece"],
        seconds,
    )
    return teacher


def run_teacher_stage(
    config: ExperimentConfig,
    splits: DataSplits,
    seed: int,
    seed_dir: Path,
    device: torch.device,
    *,
    train_stream: int,
    resume: bool,
    progress: bool,
    only: list[str] | None = None,
) -> dict[str, SavableTeacher]:
    """Train the teacher network once and build every configured teacher kind from it
    (or only the kinds labelled ``only``: one unit of a study run by an executor).
    ``train_stream``: the seed stream of the network's training (`train_teacher_network`).

    With ``teacher.exclude_student_subset`` the network and every kind are trained without
    the student's examples (held-out distillation).
    """
    pieces = SeedLayout(seed_dir)
    kinds = [k for k in config.teachers if k.name != NO_TEACHER]
    if only is not None:
        kinds = [k for k in kinds if k.key in only]
    student_splits = splits
    splits = teacher_splits(config, splits, seed)
    network, network_fluct = None, float("nan")
    if any(uses_network(k) for k in kinds):
        network = train_teacher_network(
            config,
            splits,
            seed,
            pieces.network.folder,
            device,
            train_stream=train_stream,
            resume=resume,
            progress=progress,
        )
        network_fluct = read_json(pieces.network.summary)["fluctuation"]
    context = TeacherContext(
        splits=splits,
        seed=seed,
        network=network,
        init_network=fresh_network_factory(config, splits, seed, device),
        train_settings=config.teacher.train,
        device=device,
        run=RunOptions(
            evaluate=network_evaluator(splits),
            augment=build_augment(config.teacher.augment),
            resume=resume,
            progress=progress,
            accel=config.runtime.acceleration(),
        ),
    )
    plans = {  # the folds (and fold networks) are shared by the kinds with the same K
        k: CrossFitPlan.make(context.in_run_dir(pieces.cross_fit(k)), k)
        for k in sorted({kind.cross_fit for kind in kinds if kind.cross_fit is not None})
    }
    return {
        kind.key: build_teacher(
            kind,
            context,
            pieces.teacher(kind.key).folder,
            network_fluctuation=network_fluct,
            plan=None if kind.cross_fit is None else plans[kind.cross_fit],
            student_train=None if student_splits is splits else student_splits.train,
        )
        for kind in kinds
    }


def uses_network(kind: TeacherKindConfig) -> bool:
    """Whether building ``kind`` needs the seed's trained teacher network (its options
    count: mfvi from scratch does not, an ensemble of IVON members does not)."""
    return kind.name != NO_TEACHER and needs_network(kind.name, kind.options)


def teacher_splits(config: ExperimentConfig, splits: DataSplits, seed: int) -> DataSplits:
    """The data teachers train on: ``splits``, or without the student's examples of this
    seed when ``teacher.exclude_student_subset`` (held-out distillation)."""
    if config.teacher.exclude_student_subset:
        return held_out_splits(config, splits, seed)
    return splits


def held_out_splits(config: ExperimentConfig, splits: DataSplits, seed: int) -> DataSplits:
    """The splits whose training set leaves out the student's examples of this seed."""
    keep = torch.ones(len(splits.train), dtype=torch.bool, device="cpu")
    keep[student_indices(config.student, splits, seed)] = False
    log.info(
        "seed %d: teachers train without the student's %d examples (held-out distillation)",
        seed,
        int((~keep).sum()),
    )
    return splits.with_train(splits.train.subset(torch.nonzero(keep).flatten()))


def _device(context: TeacherContext) -> torch.device:
    if context.device is not None:
        return context.device
    if context.network is not None:
        return next(context.network.parameters()).device
    return torch.device("cpu")

"""Student-step throughput (images/s) of the CIFAR-100 config on a GPU, per teacher kind.

The workload of ``configs/cifar100/resnet50_wrn_16_2.yaml`` without its data files: its
teacher network (``resnet50``) and student (``wrn_16_2``) from bayesdistill's model
registry, its augmentation (``cifar``: random crop with padding 4 + horizontal flip), its
batch size (64), its KD loss and its teacher kinds (deterministic; Laplace: last-layer
Kronecker GGN, marginal-likelihood prior, probit GLM predictive; VI: mean-field Gaussian
with S = 10 weight samples), on N random CIFAR-100-shaped images (3×32×32, 100 classes)
made in memory. Images/s does not depend on the pixel values or on how well the networks
are trained (no data-dependent control flow), so random images and untrained teachers
give the throughput of the real run; the Laplace posterior is fitted on a small subset
(its fitting cost is not what is timed), the VI posterior is the mean-field network as
initialised from the teacher network.

Timed: whole `fit` runs of the student (``--epochs`` over the N images, so each includes
`fit`'s fixed set-up cost), for

* one-hot training with the augmentation (the baseline),
* each teacher with ``teacher_cache: none`` (the teacher is asked on every augmented batch),
* each teacher with ``teacher_cache: views`` (V stored augmented views per example, built
  once; each step rebuilds one stored view per example: the teacher costs nothing),
* the VI teacher with ``teacher_cache: none`` and ``runtime.samples_per_pass: S`` (its S
  weight samples in one ``torch.func.vmap`` pass; ``vectorized_cells`` in the JSON),

each at fp32 and at bf16 (autocast of the student's and the teacher's forward passes;
bf16 only where the device supports it), with channels-last and cuDNN autotuning on a CUDA
device. The variants run in interleaved rounds (``workload.interleaved``: one warm-up run
each, then rounds in rotated order; rounds stop early once ``--budget`` seconds have
passed); a variant's images/s is N·epochs over its median time, and its ratio is the
median over rounds of its time over the one-hot run's time at the same precision (the
student step's cost relative to a one-hot step). Building each view cache is timed once,
separately (after a one-batch warm-up of the teacher).

Printed: a table, then as the last line ``ratio_vi_views_bf16 <x>`` (VI teacher, view
cache, over one-hot; at bf16, or at fp32 where bf16 is not supported; goal: at most 1.2).
``--out FILE`` also writes every number as JSON (atomically).

    python benchmarks/gpu_throughput.py --out runs/gpu_throughput.json
    python benchmarks/gpu_throughput.py --quick --device cpu              # a smoke run

On one H200 the default run is estimated (not yet measured) at 3 to 5 minutes: building
the six view caches (10 views × 10 000 images; S = 10 passes each for VI) and 16 variants
of 157 steps per round; no round starts after ``--budget`` (240 s), so a slower device
gives fewer rounds rather than a run that does not end.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from workload import interleaved, paired_ratio

from bayesdistill.config import ExperimentConfig, load_config
from bayesdistill.config.schema import ModelConfig
from bayesdistill.data import ArrayData, DataSplits
from bayesdistill.data.augment import Augmentation
from bayesdistill.data.standardize import Standardizer
from bayesdistill.io import write_json
from bayesdistill.losses import LOSSES, onehot_ce
from bayesdistill.models import Classifier
from bayesdistill.runner.common import STUDENT_INIT_STREAM, build_augment, init_network
from bayesdistill.seeding import generator
from bayesdistill.teachers import TEACHERS, MeanFieldTeacher, TeacherContext, to_mean_field
from bayesdistill.train import OnlineTargets, RunOptions, Teacher, fit, predict_in_batches
from bayesdistill.train.accel import Acceleration, Precision
from bayesdistill.train.batches import INFERENCE_BATCH_SIZE
from bayesdistill.train.views import ViewCache, ViewTargets, build_view_cache

CONFIG = "configs/cifar100/resnet50_wrn_16_2.yaml"
"""The config whose networks, augmentation, batch size, loss and teachers are timed."""
CHANNELS, IMAGE_SIZE, NUM_CLASSES = 3, 32, 100
"""CIFAR-100's images and classes."""
VI_KEY = "vi"
"""The label of the config's VI teacher, the one the last line reports."""
GOAL = 1.2
"""Issue 9's goal for the VI-teacher student step with the view cache, over one-hot."""
ONE_HOT = "one-hot"
CACHES = ("none", "views")
VECTORIZED = "none, vmap"
"""Variant label: the VI teacher asked on every batch with ``samples_per_pass`` = S."""
TEACHER_INIT_STREAM = 1
DATA_STREAM = 9
QUICK = {"n": 128, "rounds": 1, "views": 2, "laplace_fit": 64, "model": "resnet8", "size": 16}
"""--quick: 2 steps per run, one round, small networks and images (a CPU smoke run)."""


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (CHANNELS, args.image_size, args.image_size)
    start = time.perf_counter()
    deadline = start + args.budget

    def note(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", file=sys.stderr, flush=True)

    config = packaged_config()
    precisions = [Precision.FP32]
    bf16 = bf16_supported(device)
    if bf16 and not args.fp32_only:
        precisions.append(Precision.BF16)
    cuda = device.type == "cuda"
    accels = {
        p: Acceleration(precision=p, channels_last=cuda, cudnn_benchmark=cuda) for p in precisions
    }
    teacher_spec = ModelConfig.model_validate(args.teacher_model or config.teacher.model)
    student_spec = ModelConfig.model_validate(args.student_model or config.student.model)
    teacher_model, student_model = teacher_spec.name, student_spec.name
    augment = build_augment(config.student.augment)
    if augment is None:
        raise ValueError(f"{CONFIG} gives the student no augmentation; the view cache needs one")
    kd_spec = config.student.losses[0]
    kd = functools.partial(LOSSES.get(kd_spec.name), **kd_spec.options)
    settings = replace(config.student.train, epochs=args.epochs, milestones=(), evals_per_epoch=1)

    data = random_images(args.n, shape, device, seed=0)
    unit = torch.ones(shape)
    splits = DataSplits("random", data, data, data, Standardizer(0 * unit, unit))
    note(f"{args.n} random images on {device}; building teachers ({teacher_model})")
    network = init_network(teacher_spec, splits, 0, TEACHER_INIT_STREAM, device)
    accels[Precision.FP32].prepare_model(network)  # as a teacher trained under this accel
    teachers, samples = build_teachers(config, network, data, args.laplace_fit, accels)

    caches: dict[tuple[str, Precision], ViewCache] = {}
    builds: list[dict[str, Any]] = []
    for key, teacher in teachers.items():
        for p in precisions:
            # warm-up (kernels, cuDNN autotuning, VI weight samples) outside the timing
            predict_in_batches(teacher, data.x[:INFERENCE_BATCH_SIZE], accel=accels[p])
            seconds, caches[key, p] = timed(
                lambda t=teacher, p=p: build_view_cache(
                    t, data, augment, views=args.views, seed=0, accel=accels[p]
                ),
                device,
            )
            builds.append({"teacher": key, "precision": p.value, "seconds": seconds})
            note(f"view cache {key} {p.value}: {seconds:.1f} s")

    def run(
        p: Precision,
        loss: Callable,
        targets: object,
        aug: Augmentation | None,
        accel: Acceleration | None = None,
    ) -> float:
        model = init_network(student_spec, splits, 0, STUDENT_INIT_STREAM, device)
        return timed(
            lambda: fit(
                model,
                data,
                loss_fn=loss,
                settings=settings,
                seed=0,
                targets=targets,  # type: ignore[arg-type]
                augment=aug,
                progress=False,
                accel=accel or accels[p],
            ),
            device,
        )[0]

    variants: dict[str, Callable[[], float]] = {}
    for p in precisions:
        variants[name(ONE_HOT, None, p)] = functools.partial(run, p, onehot_ce, None, augment)
        for key, teacher in teachers.items():
            variants[name(key, "none", p)] = functools.partial(
                run, p, kd, OnlineTargets(teacher), augment
            )
            views = ViewTargets(caches[key, p], augment, device)
            variants[name(key, "views", p)] = functools.partial(run, p, kd, views, None)
        # the VI teacher asked on every batch with its S samples in one vmapped pass
        vectorized = replace(accels[p], samples_per_pass=samples[VI_KEY])
        variants[name(VI_KEY, VECTORIZED, p)] = functools.partial(
            run, p, kd, OnlineTargets(teachers[VI_KEY]), augment, vectorized
        )
    images = args.n * args.epochs
    for key, variant in variants.items():  # one line per variant as each run ends
        variants[key] = functools.partial(announced, note, key, images, variant)
    note(f"timing {len(variants)} variants: a warm-up run each, then up to {args.rounds} rounds")
    times = interleaved(variants, args.rounds, deadline=deadline)
    rounds = len(next(iter(times.values())))
    note(f"{rounds} timed round(s) done")

    cells = []
    for p in precisions:
        for key, cache in [(ONE_HOT, None)] + [(k, c) for k in teachers for c in CACHES]:
            values = times[name(key, cache, p)]
            cells.append(
                {
                    "teacher": key,
                    "cache": cache,
                    "precision": p.value,
                    "images_per_s": images / statistics.median(values),
                    "ratio_to_onehot": paired_ratio(
                        times, name(key, cache, p), name(ONE_HOT, None, p)
                    ),
                    "seconds": values,
                }
            )
    vectorized_cells = [
        {
            "teacher": VI_KEY,
            "cache": "none",
            "samples_per_pass": samples[VI_KEY],
            "precision": p.value,
            "images_per_s": images / statistics.median(times[name(VI_KEY, VECTORIZED, p)]),
            "ratio_to_onehot": paired_ratio(
                times, name(VI_KEY, VECTORIZED, p), name(ONE_HOT, None, p)
            ),
            "ratio_to_one_per_pass": paired_ratio(
                times, name(VI_KEY, VECTORIZED, p), name(VI_KEY, "none", p)
            ),
            "seconds": times[name(VI_KEY, VECTORIZED, p)],
        }
        for p in precisions
    ]
    headline = precisions[-1]
    ratio = next(
        c["ratio_to_onehot"]
        for c in cells
        if (c["teacher"], c["cache"], c["precision"]) == (VI_KEY, "views", headline.value)
    )
    result = {
        "benchmark": "gpu_throughput",
        "config": CONFIG,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else device.type,
        "torch": torch.__version__,
        "bf16_supported": bf16,
        "precisions": [p.value for p in precisions],
        "channels_last": cuda,
        "cudnn_benchmark": cuda,
        "tf32": {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        },
        "max_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        "n": args.n,
        "image_shape": list(shape),
        "epochs": args.epochs,
        "batch_size": settings.batch_size,
        "views": args.views,
        "rounds": rounds,
        "rounds_asked": args.rounds,
        "teacher_model": teacher_model,
        "student_model": student_model,
        "num_samples": samples,
        "loss": {"name": kd_spec.name, **kd_spec.options},
        "cache_build_seconds": builds,
        "cells": cells,
        "vectorized_cells": vectorized_cells,
        "ratio_vi_views_bf16": ratio,
        "ratio_vi_views_precision": headline.value,
        "goal": GOAL,
        "seconds_total": time.perf_counter() - start,
    }
    report(result)
    if args.out is not None:
        write_json(args.out, result)
    print(f"ratio_vi_views_bf16 {ratio:.3f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=default_device, help="default: cuda if available")
    parser.add_argument("--n", type=int, default=10_000, help="random training images")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed fit run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument(
        "--budget",
        type=float,
        default=240.0,
        help="seconds after which no further round starts (at least one runs)",
    )
    parser.add_argument("--views", type=int, default=None, help="stored views (default: config)")
    parser.add_argument(
        "--laplace-fit", type=int, default=1024, help="images the Laplace posterior is fitted on"
    )
    parser.add_argument("--teacher-model", default=None, help="registry name (default: config)")
    parser.add_argument("--student-model", default=None, help="registry name (default: config)")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="height = width")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--fp32-only", action="store_true", help="skip bf16")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK['n']} {QUICK['size']}×{QUICK['size']} images, 1 round, "
        f"{QUICK['model']} networks (unless given)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.epochs, args.rounds = QUICK["n"], 1, QUICK["rounds"]
        args.image_size = QUICK["size"]
        args.views = args.views or QUICK["views"]
        args.laplace_fit = min(args.laplace_fit, QUICK["laplace_fit"])
        args.teacher_model = args.teacher_model or QUICK["model"]
        args.student_model = args.student_model or QUICK["model"]
    if args.views is None:
        args.views = packaged_config().student.cache_views
    for option in ("n", "epochs", "rounds", "views", "laplace_fit", "image_size"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1")
    return args


@functools.cache
def packaged_config() -> ExperimentConfig:
    with resources.as_file(resources.files("bayesdistill") / CONFIG) as file:
        return load_config(file, [])


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs on ``device`` (CUDA: the GPU has bf16; CPU: always)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def random_images(
    n: int, shape: tuple[int, int, int], device: torch.device, seed: int
) -> ArrayData:
    """``n`` standard-normal images of ``shape`` (standardised CIFAR's scale) with uniform
    labels in [0, 100), on ``device``."""
    gen = generator(seed, DATA_STREAM)
    x = torch.randn((n, *shape), generator=gen)
    y = torch.randint(NUM_CLASSES, (n,), generator=gen)
    return ArrayData(x.to(device), y.to(device), NUM_CLASSES)


def build_teachers(
    config: ExperimentConfig,
    network: Classifier,
    data: ArrayData,
    laplace_fit: int,
    accels: dict[Precision, Acceleration],
) -> tuple[dict[str, Teacher], dict[str, int]]:
    """The config's teacher kinds around ``network`` (keyed by their labels) and the
    number of forward passes per prediction of each."""
    fit_data = data.subset(torch.arange(min(laplace_fit, len(data)), device=data.y.device))
    unit = torch.ones(data.input_shape)
    splits = DataSplits("random", fit_data, fit_data, fit_data, Standardizer(0 * unit, unit))
    context = TeacherContext(
        splits=splits, network=network, device=data.x.device, run=RunOptions(progress=False)
    )
    teachers: dict[str, Teacher] = {}
    samples: dict[str, int] = {}
    for kind in config.teachers:
        options = dict(kind.options)
        if kind.name == "none":
            continue
        if kind.name in ("deterministic", "laplace"):
            teachers[kind.key] = TEACHERS.build(kind.name, context, **options)
            samples[kind.key] = 1
        elif kind.name == "mfvi":
            # the posterior as initialised from the network: what training would change
            # (means and stds) does not change the cost of a prediction
            layer_options = {k: options[k] for k in ("prior_std", "init_std") if k in options}
            vi_net = to_mean_field(network, **layer_options)
            accels[Precision.FP32].prepare_model(vi_net)
            teacher_options = {k: options[k] for k in ("num_samples", "estimator") if k in options}
            teacher = MeanFieldTeacher(vi_net, **teacher_options)
            teachers[kind.key] = teacher
            samples[kind.key] = teacher.num_samples
        else:
            raise ValueError(
                f"{CONFIG}: teacher kind '{kind.name}' is not one this benchmark builds "
                "(none, deterministic, laplace, mfvi)"
            )
    if VI_KEY not in teachers:
        raise ValueError(f"{CONFIG} has no teacher labelled '{VI_KEY}'; found {list(teachers)}")
    return teachers, samples


def announced(
    note: Callable[[str], None], label: str, images: int, run: Callable[[], float]
) -> float:
    """``run()``'s seconds, after printing its images/s (a run cut short still reports)."""
    seconds = run()
    note(f"{label}: {images / seconds:,.0f} images/s ({seconds:.2f} s)")
    return seconds


def timed(run: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(wall-clock seconds of ``run()``, its result), with the device synchronised."""
    synchronize(device)
    tic = time.perf_counter()
    out = run()
    synchronize(device)
    return time.perf_counter() - tic, out


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def name(teacher: str, cache: str | None, precision: Precision) -> str:
    return f"{teacher} / {cache or '-'} / {precision.value}"


def report(result: dict[str, Any]) -> None:
    """The table: images/s and ratio to one-hot per (teacher, cache), one column pair per
    precision."""
    print(
        f"device: {result['device_name']} ({result['device']}), torch {result['torch']}, "
        f"bf16 {'supported' if result['bf16_supported'] else 'not supported'}, channels_last "
        f"{result['channels_last']}, cudnn_benchmark {result['cudnn_benchmark']}, TF32 "
        f"{result['tf32']}, peak memory {result['max_memory_gib'] or 0:.1f} GiB"
    )
    print(
        f"workload: {result['n']} random {'×'.join(map(str, result['image_shape']))} images, "
        f"{NUM_CLASSES} classes, batch "
        f"{result['batch_size']}, {result['epochs']} epoch(s) per timed run, "
        f"{result['rounds']} round(s) ({result['rounds_asked']} asked); student "
        f"{result['student_model']}, teacher network {result['teacher_model']}; forward passes "
        f"per teacher prediction {result['num_samples']}; augmentation cifar; loss "
        f"{result['loss']}"
    )
    for build in result["cache_build_seconds"]:
        print(
            f"one-time view cache build, {build['teacher']} {build['precision']}: "
            f"{build['seconds']:.2f} s ({result['views']} views × {result['n']} images)"
        )
    precisions = result["precisions"]
    cells = {(c["teacher"], c["cache"], c["precision"]): c for c in result["cells"]}
    header = f"{'teacher':>14} {'cache':>6}" + "".join(
        f" {p + ' img/s':>12} {'×one-hot':>9}" for p in precisions
    )
    print("student step (median over rounds; × = paired ratio of the step time to one-hot's)")
    print(header)
    rows = dict.fromkeys((c["teacher"], c["cache"]) for c in result["cells"])
    for teacher, cache in rows:
        line = f"{teacher:>14} {cache or '-':>6}"
        for p in precisions:
            cell = cells[teacher, cache, p]
            line += f" {cell['images_per_s']:12.0f} {cell['ratio_to_onehot']:9.3f}"
        print(line)
    for cell in result["vectorized_cells"]:
        print(
            f"{cell['teacher']} teacher on every batch, {cell['samples_per_pass']} samples per "
            f"vmapped pass, {cell['precision']}: {cell['images_per_s']:.0f} img/s, "
            f"×{cell['ratio_to_onehot']:.3f} one-hot, ×{cell['ratio_to_one_per_pass']:.3f} one "
            "sample per pass"
        )
    if result["ratio_vi_views_precision"] != Precision.BF16.value:
        print("bf16 not run here: ratio_vi_views_bf16 below is measured at fp32")
    print(f"goal: ratio_vi_views_bf16 <= {result['goal']}")


if __name__ == "__main__":
    main()

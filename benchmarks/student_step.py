"""A student step of bayesdistill's `fit` beside a plain hand-written PyTorch loop, and K
student units sharing one GPU.

The workload of ``configs/cifar100/resnet50_wrn_16_2.yaml``'s students: ``wrn_16_2`` from
bayesdistill's registry, batch 64, SGD (lr 0.05, momentum 0.9, weight decay 5e-4), random
crop with padding 4 + horizontal flip, on N random CIFAR-shaped images held on the device
(images/s does not depend on the pixel values). The plain loop is what one would write by
hand: a device-side permutation, the augmentation drawn and applied on the device,
``model(x)``, cross-entropy (or KD at α = 0.5, T = 4 against stored probabilities),
``zero_grad``/``backward``/``step``, nothing read back to the host. `fit` runs the same
student, augmentation, optimiser and batch through bayesdistill (one-hot, and KD from
stored teacher probabilities: ``teacher_cache: exact``'s lookup), with channels-last and
cuDNN autotuning on a CUDA device as the GPU preset sets them, at fp32 and bf16.

A third variant trains the same one-hot student with ``runtime.compile: step`` (forward,
loss, backward and optimiser step compiled together; CUDA graphs on a GPU), on CUDA and on
the CPU unless ``--quick``. Each run trains ``--epochs`` (default 2) epochs and is timed on
its last epoch (steady state: compilation, cuDNN autotuning and the first epoch's warm-up
are left out; `fit`'s from its record of that epoch, ``evals_per_epoch: 1``, no evaluation).

Timed in interleaved rounds (``workload.interleaved``); a variant's images/s is N over its
median last-epoch time; ``fit_over_plain`` is the median over rounds of the plain loop's
time over `fit`'s (≥ 1: `fit` is as fast), ``step_over_plain`` the same for the compiled
step (goal ≥ 2). Each variant prints one line as it finishes.

Packing (``--packing 1,2,4,8``): K processes each train their own student with `fit`
(one-hot, bf16 where supported) at the same time on the same device; each warms up, waits
for the others, then trains; the total images/s is K·N·epochs over the span from the
first start to the last end, and ``packing_K`` is that over one process's images/s.

Stacked students (``--stack 4``; the stretch of issue 18): the K students of one (seed,
loss) group of a study see the same batches and augmentation, so they can be trained as one
model: their weights stacked (``torch.func.stack_module_state``), one ``torch.vmap`` of
``functional_call`` per step giving all K students' logits for the shared batch, the sum of
their K KD losses (each against its own teacher's probabilities) backpropagated, one SGD
step on the stacked weights. SGD with momentum and weight decay acts element by element, so
each student follows its own training exactly (up to floating-point order: the vmapped
convolutions are grouped ones); batch-norm statistics stay per student. ``stacked_K`` is the
median over rounds of K times the plain KD loop's epoch time over the stacked epoch's (the
same precision as packing): the throughput of K students stacked over one student's, the
counterpart of ``packing_K``. It is a measurement, not yet a study option: it tells whether
building stacking into studies pays on a GPU.

The timing lines are printed as soon as the interleaved rounds end (``--budget`` seconds
after the start no further round starts), before packing, whose ``packing_K`` lines follow
as each K ends, so a run cut short keeps what it measured. ``--compiled bf16`` times
``compile: step`` at one precision only (each precision is compiled once more).
The lines are ``fit_over_plain_fp32 <x>``, ``fit_over_plain_bf16 <x>`` (goal ≥ 0.95),
``step_over_plain_<precision> <x>`` (goal ≥ 2), ``packing_4 <x>`` (goal ≥ 3) and
``stacked_4 <x>``.

    python benchmarks/student_step.py --out runs/student_step.json
    python benchmarks/student_step.py --quick --device cpu       # a smoke run
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from plain_loop import (
    BATCH,
    KD_OPTIONS,
    LR,
    MOMENTUM,
    WEIGHT_DECAY,
    distinct_targets,
    plain_run,
    random_data,
    stacked_run,
    student,
)
from torch import Tensor
from workload import interleaved, paired_ratio

from bayesdistill.data import ArrayData
from bayesdistill.data.augment import cifar_augmentation
from bayesdistill.io import write_json
from bayesdistill.losses import kd, onehot_ce
from bayesdistill.train import CachedTargets, TrainSettings, fit
from bayesdistill.train.accel import COMPILE_STEP, Acceleration, Precision

STUDENT = "wrn_16_2"
QUICK = {"n": 256, "size": 16, "model": "resnet8", "rounds": 1, "packing": "1,2"}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    start = time.perf_counter()

    def note(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)

    cuda = device.type == "cuda"
    precisions = [Precision.FP32]
    if not args.fp32_only and (torch.cuda.is_bf16_supported() if cuda else True):
        precisions.append(Precision.BF16)
    shape = (3, args.image_size, args.image_size)
    data, probs = random_data(args.n, shape, device)
    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=BATCH,
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        schedule="constant",
        evals_per_epoch=1,
    )

    variants: dict[str, Callable[[], float]] = {}
    for p in precisions:
        accel = Acceleration(precision=p, channels_last=cuda, cudnn_benchmark=cuda)
        if (cuda or not args.quick) and args.compiled in ("all", p.value):
            compiled = replace(accel, compile=COMPILE_STEP)
            variants[f"step/onehot/{p.value}"] = announced(
                note,
                f"bayesdistill fit, compile: step, onehot, {p.value}",
                args.n,
                functools.partial(fit_run, args.model, data, probs, settings, compiled, False),
            )
        for loss in ("onehot", "kd"):
            variants[f"plain/{loss}/{p.value}"] = announced(
                note,
                f"plain loop, {loss}, {p.value}",
                args.n,
                functools.partial(
                    plain_run, args.model, data, probs, args.epochs, accel, loss == "kd"
                ),
            )
            variants[f"fit/{loss}/{p.value}"] = announced(
                note,
                f"bayesdistill fit, {loss}, {p.value}",
                args.n,
                functools.partial(fit_run, args.model, data, probs, settings, accel, loss == "kd"),
            )
    if args.stack > 1:
        accel = Acceleration(precision=precisions[-1], channels_last=cuda, cudnn_benchmark=cuda)
        stacked_probs = distinct_targets(probs, args.stack)
        variants[f"stacked/kd/{precisions[-1].value}"] = announced(
            note,
            f"{args.stack} stacked students, kd, {precisions[-1].value} (images/s of each)",
            args.n,
            functools.partial(stacked_run, args.model, data, stacked_probs, args.epochs, accel),
        )
    note(f"{len(variants)} variants on {args.n} random {'x'.join(map(str, shape))} images")
    deadline = start + args.budget if args.budget else None
    times = interleaved(variants, args.rounds, deadline)
    cells = []
    for p in precisions:
        for loss in ("onehot", "kd"):
            plain, ours = f"plain/{loss}/{p.value}", f"fit/{loss}/{p.value}"
            cells.append(
                {
                    "loss": loss,
                    "precision": p.value,
                    "plain_images_per_s": args.n / statistics.median(times[plain]),
                    "fit_images_per_s": args.n / statistics.median(times[ours]),
                    "fit_over_plain": paired_ratio(times, plain, ours),
                    "seconds": {"plain": times[plain], "fit": times[ours]},
                }
            )
            step = f"step/{loss}/{p.value}"
            if step in times:
                cells[-1]["step_images_per_s"] = args.n / statistics.median(times[step])
                cells[-1]["step_over_plain"] = paired_ratio(times, plain, step)
                cells[-1]["seconds"]["step"] = times[step]
    result: dict[str, Any] = {
        "benchmark": "student_step",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "model": args.model,
        "n": args.n,
        "image_shape": list(shape),
        "epochs": args.epochs,
        "batch_size": BATCH,
        "rounds": len(next(iter(times.values()))),
        "cells": cells,
    }
    stacked = f"stacked/kd/{precisions[-1].value}"
    if stacked in times:
        plain = f"plain/kd/{precisions[-1].value}"
        result["stacked"] = {
            "students": args.stack,
            "precision": precisions[-1].value,
            "images_per_s": args.stack * args.n / statistics.median(times[stacked]),
            "over_one": args.stack * paired_ratio(times, plain, stacked),
            "seconds": times[stacked],
        }
    if args.out is not None:
        write_json(args.out, result)
    report(result)  # before packing: a run cut short there keeps these lines
    if args.packing:
        result["packing"] = {"precision": precisions[-1].value, "rows": []}
        for row in packing(args, device, precisions[-1], note):
            result["packing"]["rows"].append(row)
            if args.out is not None:
                write_json(args.out, result)
            print(f"packing_{row['units']} {row['over_one']:.3f}", flush=True)


def announced(
    note: Callable[[str], None], label: str, images: int, run: Callable[[], float]
) -> Callable[[], float]:
    """``run`` that prints its images/s when it finishes."""

    def timed_run() -> float:
        seconds = run()
        note(f"{label}: {images / seconds:,.0f} images/s ({seconds:.2f} s)")
        return seconds

    return timed_run


def fit_run(
    model: str,
    data: ArrayData,
    probs: Tensor,
    settings: TrainSettings,
    accel: Acceleration,
    distil: bool,
) -> float:
    """Seconds of the last epoch of one bayesdistill `fit` of a fresh student (one-hot, or
    KD from stored probabilities looked up by example id), as `fit` records it."""
    device = data.x.device
    network = student(model, data.input_shape, device)
    loss = functools.partial(kd, **KD_OPTIONS) if distil else onehot_ce
    result = fit(
        network,
        data,
        loss_fn=loss,
        settings=settings,
        seed=0,
        targets=CachedTargets(probs) if distil else None,
        augment=cifar_augmentation(),
        progress=False,
        accel=accel,
    )
    return float(result.history[-1]["seconds"])


def packing(
    args: argparse.Namespace,
    device: torch.device,
    precision: Precision,
    note: Callable[[str], None],
) -> Iterator[dict[str, Any]]:
    """Total images/s of K concurrent student processes on ``device``, for each K, as each
    K ends; ``over_one``: over the first K's images/s."""
    context = mp.get_context("spawn")
    one = None
    for k in [int(v) for v in args.packing.split(",")]:
        barrier = context.Barrier(k)
        queue = context.Queue()
        job = (args.model, args.n, args.image_size, args.epochs, str(device), precision.value)
        processes = [
            context.Process(target=packed_student, args=(*job, barrier, queue)) for _ in range(k)
        ]
        for process in processes:
            process.start()
        spans = [queue.get(timeout=args.packing_timeout) for _ in processes]
        for process in processes:
            process.join(timeout=30)
        first, last = min(s[0] for s in spans), max(s[1] for s in spans)
        total = k * args.n * args.epochs / (last - first)
        note(f"packing: {k} concurrent student(s), {precision.value}: {total:,.0f} images/s")
        one = total if one is None else one
        yield {"units": k, "images_per_s": total, "seconds": last - first, "over_one": total / one}


def packed_student(
    model: str,
    n: int,
    size: int,
    epochs: int,
    device_name: str,
    precision: str,
    barrier: Any,
    queue: Any,
) -> None:
    """One packed unit: warm up, wait for the others, train, report (start, end)."""
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    data, probs = random_data(n, (3, size, size), device)
    accel = Acceleration(precision=Precision(precision), channels_last=cuda, cudnn_benchmark=cuda)
    warm = TrainSettings(epochs=1, batch_size=BATCH, lr=LR, schedule="constant")
    fit_run(
        model,
        data.subset(torch.arange(min(n, 4 * BATCH), device=device)),
        probs,
        warm,
        accel,
        False,
    )
    settings = TrainSettings(
        epochs=epochs,
        batch_size=BATCH,
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        schedule="constant",
    )
    barrier.wait()
    start = time.time()
    fit_run(model, data, probs, settings, accel, False)
    queue.put((start, time.time()))


def report(result: dict[str, Any]) -> None:
    print(
        f"device: {result['device_name']} ({result['device']}), torch {result['torch']}, "
        f"CUDA {result['cuda']}; student {result['model']}, batch {result['batch_size']}, "
        f"{result['n']} random {'x'.join(map(str, result['image_shape']))} images, "
        f"{result['rounds']} round(s)"
    )
    print(f"{'loss':>7} {'precision':>9} {'plain img/s':>12} {'fit img/s':>10} {'fit/plain':>9}")
    for c in result["cells"]:
        print(
            f"{c['loss']:>7} {c['precision']:>9} {c['plain_images_per_s']:12,.0f} "
            f"{c['fit_images_per_s']:10,.0f} {c['fit_over_plain']:9.3f}"
        )
    for c in result["cells"]:
        if "step_over_plain" in c:
            print(
                f"compile: step, {c['precision']}: {c['step_images_per_s']:,.0f} img/s, "
                f"x{c['step_over_plain']:.3f} the plain loop"
            )
    for c in result["cells"]:
        if c["loss"] == "onehot":
            print(f"fit_over_plain_{c['precision']} {c['fit_over_plain']:.3f}")
            if "step_over_plain" in c:
                print(f"step_over_plain_{c['precision']} {c['step_over_plain']:.3f}")
    if "stacked" in result:
        stacked = result["stacked"]
        print(
            f"{stacked['students']} stacked students, {stacked['precision']}: "
            f"{stacked['images_per_s']:,.0f} student-images/s "
            f"(x{stacked['over_one']:.2f} one plain KD student)"
        )
    if "stacked" in result:
        print(f"stacked_{result['stacked']['students']} {result['stacked']['over_one']:.3f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=10_000, help="random training images")
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs per run; the last one is timed (>= 2)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--model", default=STUDENT, help="the student (registry name)")
    parser.add_argument("--image-size", type=int, default=32, help="height = width")
    parser.add_argument("--fp32-only", action="store_true", help="skip bf16")
    parser.add_argument(
        "--packing", default="1,2,4,8", help="concurrent units to time (empty: skip)"
    )
    parser.add_argument(
        "--compiled",
        choices=("all", "fp32", "bf16", "none"),
        default="all",
        help="precisions timed with compile: step (on the CPU only without --quick)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=0.0,
        help="seconds after which no further timing round starts (0: no limit)",
    )
    parser.add_argument(
        "--stack", type=int, default=4, help="students trained as one stacked model (< 2: skip)"
    )
    parser.add_argument("--packing-timeout", type=float, default=300.0, help="seconds per K")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="a smoke run (tiny networks)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the last epoch is timed, after a warm-up epoch")
    if args.quick:
        args.n, args.image_size, args.rounds = QUICK["n"], QUICK["size"], QUICK["rounds"]
        args.model = QUICK["model"] if args.model == STUDENT else args.model
        args.packing = QUICK["packing"] if args.packing == "1,2,4,8" else args.packing
    return args


if __name__ == "__main__":
    sys.exit(main())

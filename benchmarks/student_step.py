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

The last lines are ``fit_over_plain_fp32 <x>``, ``fit_over_plain_bf16 <x>`` (goal ≥ 0.95),
``step_over_plain_<precision> <x>`` (goal ≥ 2) and ``packing_4 <x>`` (goal ≥ 3).

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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from workload import interleaved, paired_ratio

from bayesdistill.data import ArrayData
from bayesdistill.data.augment import cifar_augmentation
from bayesdistill.io import write_json
from bayesdistill.losses import kd, onehot_ce
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.train import CachedTargets, TrainSettings, fit
from bayesdistill.train.accel import COMPILE_STEP, Acceleration, Precision

STUDENT = "wrn_16_2"
CLASSES, PADDING = 100, 4
BATCH, LR, MOMENTUM, WEIGHT_DECAY = 64, 0.05, 0.9, 5e-4
KD_OPTIONS = {"alpha": 0.5, "temperature": 4.0}
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
    with_step = cuda or not args.quick
    for p in precisions:
        accel = Acceleration(precision=p, channels_last=cuda, cudnn_benchmark=cuda)
        if with_step:
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
    note(f"{len(variants)} variants on {args.n} random {'x'.join(map(str, shape))} images")
    times = interleaved(variants, args.rounds)
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
    if args.out is not None:
        write_json(args.out, result)
    if args.packing:
        result["packing"] = packing(args, device, precisions[-1], note)
        if args.out is not None:
            write_json(args.out, result)
    report(result)


def announced(
    note: Callable[[str], None], label: str, images: int, run: Callable[[], float]
) -> Callable[[], float]:
    """``run`` that prints its images/s when it finishes."""

    def timed_run() -> float:
        seconds = run()
        note(f"{label}: {images / seconds:,.0f} images/s ({seconds:.2f} s)")
        return seconds

    return timed_run


def random_data(n: int, shape: tuple[int, ...], device: torch.device) -> tuple[ArrayData, Tensor]:
    """Standard-normal images with uniform labels, and random teacher probabilities."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((n, *shape), generator=gen)
    y = torch.randint(CLASSES, (n,), generator=gen)
    probs = torch.softmax(2.0 * torch.randn(n, CLASSES, generator=gen), 1)
    return ArrayData(x.to(device), y.to(device), CLASSES), probs.to(device)


def student(model: str, shape: tuple[int, ...], device: torch.device) -> nn.Module:
    with seeded(0):
        return create_model(model, shape, CLASSES).to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def plain_run(
    model: str, data: ArrayData, probs: Tensor, epochs: int, accel: Acceleration, distil: bool
) -> float:
    """Seconds of the last of ``epochs`` epochs of the hand-written loop (see the module
    docstring)."""
    device = data.x.device
    network = student(model, data.input_shape, device)
    accel.prepare_model(network)
    network.train()
    optimizer = torch.optim.SGD(
        network.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )
    gen = torch.Generator(device=device).manual_seed(0)
    dtype = accel.autocast_dtype
    n = len(data)
    tic = time.perf_counter()
    for _ in range(epochs):
        synchronize(device)
        tic = time.perf_counter()  # the last epoch's start
        order = torch.randperm(n, generator=gen, device=device)
        for start in range(0, n, BATCH):
            index = order[start : start + BATCH]
            x = crop_and_flip(data.x[index], gen).contiguous(
                memory_format=torch.channels_last if accel.channels_last else torch.preserve_format
            )
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = network(x)
            logits = logits.float()
            if distil:
                soft = probs[index]
                t = KD_OPTIONS["temperature"]
                kl = F.kl_div(
                    F.log_softmax(logits / t, 1),
                    soft.pow(1 / t).div(soft.pow(1 / t).sum(1, True)),
                    reduction="batchmean",
                )
                loss = (1 - KD_OPTIONS["alpha"]) * F.cross_entropy(logits, data.y[index])
                loss = loss + KD_OPTIONS["alpha"] * t * t * kl
            else:
                loss = F.cross_entropy(logits, data.y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    synchronize(device)
    return time.perf_counter() - tic


def crop_and_flip(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random crop with zero padding 4 and a horizontal flip with probability ½, drawn and
    applied on ``x``'s device."""
    b, _, h, w = x.shape
    padded = F.pad(x, (PADDING,) * 4)
    top = torch.randint(0, 2 * PADDING + 1, (b, 1), generator=gen, device=x.device)
    left = torch.randint(0, 2 * PADDING + 1, (b, 1), generator=gen, device=x.device)
    rows = (top + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (left + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[batch, channel, rows, cols]
    flip = torch.rand(b, generator=gen, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def packing(
    args: argparse.Namespace,
    device: torch.device,
    precision: Precision,
    note: Callable[[str], None],
) -> dict[str, Any]:
    """Total images/s of K concurrent student processes on ``device``, for each K."""
    context = mp.get_context("spawn")
    rows = []
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
        rows.append({"units": k, "images_per_s": total, "seconds": last - first})
        note(f"packing: {k} concurrent student(s), {precision.value}: {total:,.0f} images/s")
    one = next(r["images_per_s"] for r in rows if r["units"] == rows[0]["units"])
    for row in rows:
        row["over_one"] = row["images_per_s"] / one
    return {"precision": precision.value, "rows": rows}


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
    for row in result.get("packing", {}).get("rows", []):
        print(
            f"packed units {row['units']}: {row['images_per_s']:,.0f} images/s "
            f"(x{row['over_one']:.2f} one unit)"
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
    for row in result.get("packing", {}).get("rows", []):
        print(f"packing_{row['units']} {row['over_one']:.3f}")


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

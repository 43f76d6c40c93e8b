"""What vectorised weight samples (``runtime.samples_per_pass``) save on the CPU.

A Bayesian teacher that averages over S stored weight samples (IVON, mean-field VI) runs S
forward passes per prediction; with ``samples_per_pass: k`` it runs ceil(S/k) passes, each
evaluating k samples at once through ``torch.func.vmap`` (same probabilities to float
rounding). Measured side by side in one process, in interleaved rounds (``workload.py``):

* teacher predictions on the quickstart student's training set (MNIST-1D, the quickstart's
  teacher network, S = 10; what ``teacher_cache: exact`` computes once), for IVON and
  mean-field VI, at samples_per_pass 1 (the default), 2, 5 and 10;
* the same for a CIFAR-shaped teacher (ResNet-8 on 3×32×32 inputs, batch 64);
* an augmented student epoch that asks the IVON teacher on every batch
  (``teacher_cache: none``), at samples_per_pass 1 and 10, each relative to the augmented
  one-hot epoch (what `epoch_cost.py` reports as ``ratio_augmented_per_batch``).

The last line is ``ratio_vectorized_per_batch <x>``: the augmented student epoch that asks
the IVON teacher on every batch, at samples_per_pass 10 ÷ at 1 (below 1 is faster).

    python benchmarks/sample_passes.py [--rounds 7]
    python benchmarks/sample_passes.py --quick      # 2 rounds: a smoke run
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from workload import (
    fresh_student,
    interleaved,
    paired_ratio,
    parse_timing,
    quickstart,
    seconds,
    timing_parser,
)

from bayesdistill.config.schema import AugmentConfig
from bayesdistill.losses import LOSSES, onehot_ce
from bayesdistill.models import create_model
from bayesdistill.runner.common import build_augment, init_network
from bayesdistill.seeding import generator, seeded
from bayesdistill.teachers import IVONTeacher, MeanFieldTeacher, to_mean_field
from bayesdistill.train import Acceleration, OnlineTargets, fit, predict_in_batches

SAMPLES = 10
"""S, the teachers' weight samples per prediction."""
PASSES = (1, 2, 5, 10)
"""samples_per_pass values timed for predictions."""


def ivon(network: torch.nn.Module) -> IVONTeacher:
    std = {n: torch.full_like(p, 0.05) for n, p in network.named_parameters()}
    return IVONTeacher(network, std, num_samples=SAMPLES)


def mfvi(network: torch.nn.Module) -> MeanFieldTeacher:
    return MeanFieldTeacher(to_mean_field(network, init_std=0.05), num_samples=SAMPLES)


def main() -> None:
    args = parse_timing(timing_parser(__doc__.splitlines()[0], rounds=7, epochs=5, quick=(2, 2)))

    work = quickstart()
    config, splits, train = work.config, work.splits, work.train
    cpu = torch.device("cpu")
    cifar_x = torch.randn(256, 3, 32, 32, generator=generator(0, 1))
    with seeded(0):  # the CIFAR-shaped networks' initialisation
        resnets = [create_model("resnet8", (3, 32, 32), 100) for _ in range(2)]
    teachers = {
        "mnist1d ivon": (
            ivon(init_network(config.teacher.model, splits, 0, 1, cpu)),
            train.x,
            1024,
        ),
        "mnist1d mfvi": (
            mfvi(init_network(config.teacher.model, splits, 0, 1, cpu)),
            train.x,
            1024,
        ),
        "cifar resnet8 ivon": (ivon(resnets[0]), cifar_x, 64),
        "cifar resnet8 mfvi": (mfvi(resnets[1]), cifar_x, 64),
    }

    def predictions(name: str, per_pass: int) -> float:
        teacher, x, batch = teachers[name]
        accel = Acceleration(samples_per_pass=per_pass)
        return seconds(lambda: predict_in_batches(teacher, x, batch, accel=accel))

    variants: dict[str, Callable[[], float]] = {
        f"{name}, {k} per pass": functools.partial(predictions, name, k)
        for name in teachers
        for k in PASSES
    }

    augment = build_augment([AugmentConfig.model_validate("shift")])
    kd = LOSSES.get("kd")
    settings = replace(config.student.train, epochs=args.epochs, evals_per_epoch=1)
    online = OnlineTargets(teachers["mnist1d ivon"][0])

    def student_epoch(loss_fn: Callable, targets: object, per_pass: int) -> float:
        run = functools.partial(
            fit,
            fresh_student(work),
            train,
            loss_fn=loss_fn,
            settings=settings,
            seed=0,
            targets=targets,
            augment=augment,
            progress=False,
            accel=Acceleration(samples_per_pass=per_pass),
        )
        return seconds(run) / args.epochs

    variants["aug one-hot epoch"] = functools.partial(student_epoch, onehot_ce, None, 1)
    for k in (1, SAMPLES):
        variants[f"aug every batch epoch, {k} per pass"] = functools.partial(
            student_epoch, kd, online, k
        )
    tic = time.perf_counter()
    times = interleaved(variants, args.rounds)

    print(
        f"teachers with S={SAMPLES} weight samples; MNIST-1D: {len(train)} examples, quickstart "
        f"teacher network, batch 1024; CIFAR-shaped: 256 random 3×32×32 images, ResNet-8, batch "
        f"64; student: quickstart cnn1d, shift augmentation, KD, {args.epochs} epochs per run; "
        f"{args.rounds} rounds; {torch.get_num_threads()} threads; {time.perf_counter() - tic:.0f} s"
    )
    for name in teachers:
        base = f"{name}, 1 per pass"
        for k in PASSES:
            key = f"{name}, {k} per pass"
            median = sorted(times[key])[len(times[key]) // 2]
            print(
                f"{key:>32}: {median * 1e3:8.1f} ms  (×{paired_ratio(times, key, base):.3f} "
                "1 per pass)"
            )
    for k in (1, SAMPLES):
        key = f"aug every batch epoch, {k} per pass"
        print(f"{key:>38}: ×{paired_ratio(times, key, 'aug one-hot epoch'):.3f} aug one-hot epoch")
    ratio = paired_ratio(
        times, f"aug every batch epoch, {SAMPLES} per pass", "aug every batch epoch, 1 per pass"
    )
    print(f"ratio_vectorized_per_batch {ratio:.3f}")


if __name__ == "__main__":
    main()

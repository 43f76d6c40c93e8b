"""Cost of a distillation epoch relative to a one-hot epoch of the same student.

Measured side by side in one process on the quickstart workload (MNIST-1D, the quickstart's
student, batch size and training subset). The teacher is a Bayesian one with S = 10 weight
samples (IVON), the most expensive kind to query. Epochs of

* one-hot training (``onehot_ce``),
* distillation from cached teacher predictions (computed once; what bayesdistill does
  without augmentation), for each of the quickstart's losses,
* distillation that queries the teacher on every batch (what a plain KD loop does), for
  reference,

and, with the ``shift`` augmentation (what ``augment: [shift]`` in a config gives), epochs of

* augmented one-hot training,
* distillation from a view cache (``teacher_cache: views``: the teacher's predictions on V
  stored augmented views per example, computed once; each step rebuilds one stored view
  per example), for each of the quickstart's losses,
* augmented distillation that queries the teacher on every augmented batch
  (``teacher_cache: none``),

are timed in interleaved rounds (see ``workload.py``); each ratio is the median over rounds
of the per-round ratio to its one-hot baseline (augmented one-hot for augmented variants).
One-time costs (the teacher's predictions on the training set, building the view cache)
are timed separately and not part of any epoch. An epoch's time is a whole `fit` run
divided by its epochs (so it includes `fit`'s fixed set-up cost).

The last two lines printed are ``ratio_augmented_cached <x>`` (view-cache epoch / augmented
one-hot epoch, costliest loss; goal: at most 1.15) and ``ratio <x>`` (cached distillation
epoch / one-hot epoch, costliest loss; goal: at most 1.05).

    python benchmarks/epoch_cost.py [--rounds 9] [--epochs 20] [--views 10] [--full-train]
    python benchmarks/epoch_cost.py --quick      # 3 rounds of 5 epochs: a smoke run
"""

from __future__ import annotations

import functools
import statistics
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
    spread,
    timing_parser,
)

from bayesdistill.config.schema import AugmentConfig
from bayesdistill.losses import LOSSES, onehot_ce
from bayesdistill.runner.common import build_augment, init_network
from bayesdistill.teachers import IVONTeacher
from bayesdistill.train import CachedTargets, OnlineTargets, fit, predict_in_batches
from bayesdistill.train.views import ViewTargets, build_view_cache, cache_bytes

TEACHER_SAMPLES = 10
"""S, the IVON teacher's weight samples per prediction."""
TEACHER_STD = 0.05
"""Posterior std of every teacher weight (the cost does not depend on it)."""


def main() -> None:
    parser = timing_parser(__doc__.splitlines()[0], rounds=9, epochs=20, quick=(3, 5))
    parser.add_argument("--views", type=int, default=10, help="stored views per example (V)")
    parser.add_argument("--full-train", action="store_true", help="use the whole training set")
    args = parse_timing(parser)

    work = quickstart(full_train=args.full_train)
    config, splits, train = work.config, work.splits, work.train
    cpu = torch.device("cpu")
    losses = {
        loss.key: functools.partial(LOSSES.get(loss.name), **loss.options)
        for loss in config.student.losses
    }
    augment = build_augment([AugmentConfig.model_validate("shift")])

    teacher_net = init_network(config.teacher.model, splits, 0, 1, cpu)
    std = {n: torch.full_like(p, TEACHER_STD) for n, p in teacher_net.named_parameters()}
    teacher = IVONTeacher(teacher_net, std, num_samples=TEACHER_SAMPLES)
    tic = time.perf_counter()
    cached = CachedTargets(predict_in_batches(teacher, train.x))
    precompute = time.perf_counter() - tic
    tic = time.perf_counter()
    cache = build_view_cache(teacher, train, augment, views=args.views, seed=0)
    build = time.perf_counter() - tic
    views = ViewTargets(cache, augment, cpu)

    settings = replace(config.student.train, epochs=args.epochs, evals_per_epoch=1)

    def epoch_seconds(loss_fn: Callable, targets: object, aug: object = None) -> float:
        run = functools.partial(
            fit,
            fresh_student(work),
            train,
            loss_fn=loss_fn,
            settings=settings,
            seed=0,
            targets=targets,
            augment=aug,
            progress=False,
        )
        return seconds(run) / args.epochs

    last = next(reversed(losses))
    variants = {"one-hot": functools.partial(epoch_seconds, onehot_ce, None)}
    variants |= {
        f"cached, {key}": functools.partial(epoch_seconds, fn, cached) for key, fn in losses.items()
    }
    variants[f"every batch, {last}"] = functools.partial(
        epoch_seconds, losses[last], OnlineTargets(teacher)
    )
    variants["aug one-hot"] = functools.partial(epoch_seconds, onehot_ce, None, augment)
    variants |= {
        f"aug view cache, {key}": functools.partial(epoch_seconds, fn, views)
        for key, fn in losses.items()
    }
    variants[f"aug every batch, {last}"] = functools.partial(
        epoch_seconds, losses[last], OnlineTargets(teacher), augment
    )
    times = interleaved(variants, args.rounds)

    def base_of(name: str) -> str:
        return "aug one-hot" if name.startswith("aug") else "one-hot"

    print(
        f"workload: {len(train)} training examples, student {config.student.model.name}, "
        f"batch {settings.batch_size}, {args.epochs} epochs per run, {args.rounds} rounds; "
        f"teacher IVON with S={TEACHER_SAMPLES} samples; augmentation shift "
        f"(max_shift {augment.steps[0].max_shift}); {torch.get_num_threads()} threads"
    )
    print(f"one-time teacher predictions on the training set: {precompute * 1e3:.1f} ms")
    size = cache_bytes(len(train), args.views, train.num_classes, None, augment.num_params)
    print(
        f"one-time view cache build: {build * 1e3:.1f} ms for {args.views} views × "
        f"{len(train)} examples ({size / 2**10:.1f} KiB, float16)"
    )
    ratios = {name: paired_ratio(times, name, base_of(name)) for name in times}
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:>26}: {median * 1e3:8.2f} ms/epoch  (×{ratios[name]:.3f} {base_of(name)}, "
            f"spread {spread(values) * 1e3:.2f} ms)"
        )
    print(f"ratio_augmented_per_batch {ratios[f'aug every batch, {last}']:.3f}")
    print(f"ratio_augmented_cached {max(ratios[f'aug view cache, {k}'] for k in losses):.3f}")
    print(f"ratio {max(ratios[f'cached, {k}'] for k in losses):.3f}")


if __name__ == "__main__":
    main()

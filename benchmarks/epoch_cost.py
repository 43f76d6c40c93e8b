"""Cost of a distillation epoch relative to a one-hot epoch of the same student.

Measured side by side in one process on the quickstart workload (MNIST-1D, the quickstart's
student, batch size and training subset): epochs of

* one-hot training (``onehot_ce``),
* distillation from cached teacher predictions (computed once; what bayesdistill does
  without augmentation), for each of the quickstart's losses,
* distillation that queries the teacher on every batch (what a plain KD loop does), for
  reference,

are timed in interleaved rounds and compared by their medians. The teacher is a Bayesian
one with S = 10 weight samples (IVON), the most expensive kind to query. The last line
printed is ``ratio <cached distillation epoch / one-hot epoch>`` for the costliest of the
quickstart's losses (goal: at most 1.10).

    python benchmarks/epoch_cost.py [--rounds 7] [--epochs 20] [--full-train]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from importlib import resources

import torch

from bayesdistill.config import load_config
from bayesdistill.losses import LOSSES, onehot_ce
from bayesdistill.runner.common import STUDENT_INIT_STREAM, init_network, load_data
from bayesdistill.runner.students import student_indices
from bayesdistill.teachers import IVONTeacher
from bayesdistill.train import CachedTargets, OnlineTargets, fit, predict_in_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per timed run")
    parser.add_argument("--full-train", action="store_true", help="use the whole training set")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    path = resources.files("bayesdistill") / "configs" / "quickstart.yaml"
    with resources.as_file(path) as file:
        config = load_config(file, ["device=cpu"])
    splits = load_data(config.data)
    index = (
        torch.arange(len(splits.train))
        if args.full_train
        else student_indices(config.student, splits, seed=0)
    )
    train = splits.train.subset(index)
    losses = {
        loss.key: functools.partial(LOSSES.get(loss.name), **loss.options)
        for loss in config.student.losses
    }

    teacher_net = init_network(config.teacher.model, splits, 0, 1, torch.device("cpu"))
    std = {n: torch.full_like(p, 0.05) for n, p in teacher_net.named_parameters()}
    teacher = IVONTeacher(teacher_net, std, num_samples=10)
    tic = time.perf_counter()
    cached = CachedTargets(predict_in_batches(teacher, train.x))
    precompute = time.perf_counter() - tic

    from dataclasses import replace

    settings = replace(config.student.train, epochs=args.epochs, evals_per_epoch=1)

    def epoch_seconds(loss_fn, targets) -> float:
        model = init_network(
            config.student.model, splits, 0, STUDENT_INIT_STREAM, torch.device("cpu")
        )
        start = time.perf_counter()
        fit(
            model,
            train,
            loss_fn=loss_fn,
            settings=settings,
            seed=0,
            targets=targets,
            progress=False,
        )
        return (time.perf_counter() - start) / args.epochs

    variants = {"one-hot": (onehot_ce, None)}
    variants.update({f"cached, {key}": (fn, cached) for key, fn in losses.items()})
    last_key = next(reversed(losses))
    variants[f"every batch, {last_key}"] = (losses[last_key], OnlineTargets(teacher))
    epoch_seconds(onehot_ce, None)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (loss_fn, targets) in variants.items():
            times[name].append(epoch_seconds(loss_fn, targets))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["one-hot"]
    print(
        f"workload: {len(train)} training examples, student {config.student.model.name}, "
        f"batch {settings.batch_size}, teacher IVON with S=10 samples, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"one-time teacher predictions on the training set: {precompute * 1e3:.1f} ms")
    for name, median in medians.items():
        spread = max(times[name]) - min(times[name])
        print(
            f"{name:>24}: {median * 1e3:8.2f} ms/epoch  (×{median / base:.3f}, spread {spread * 1e3:.2f} ms)"
        )
    worst = max(medians[f"cached, {key}"] for key in losses)
    print(f"ratio {worst / base:.3f}")


if __name__ == "__main__":
    main()

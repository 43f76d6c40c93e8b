"""What the benchmarks share: the quickstart workload and interleaved timing.

Timings on a shared machine drift as other jobs come and go, so every benchmark runs its
variants in interleaved rounds (round r times each variant once, in a rotated order, so
that no variant always runs first or right after a costly one) and compares a variant
with its baseline by the median over rounds of the per-round ratio: both times of a
ratio were taken within seconds of each other.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources

import torch

from bayesdistill.config import ExperimentConfig, load_config
from bayesdistill.data import ArrayData, DataSplits
from bayesdistill.models import Classifier
from bayesdistill.runner.common import STUDENT_INIT_STREAM, init_network, load_data
from bayesdistill.runner.targets import student_indices


@dataclass(frozen=True)
class Workload:
    """The quickstart config, its data splits and the student's training set."""

    config: ExperimentConfig
    splits: DataSplits
    train: ArrayData


def quickstart(full_train: bool = False) -> Workload:
    """The quickstart workload on the CPU: MNIST-1D, the quickstart student's training
    subset (or the whole training set)."""
    path = resources.files("bayesdistill") / "configs" / "quickstart.yaml"
    with resources.as_file(path) as file:
        config = load_config(file, ["device=cpu"])
    splits = load_data(config.data)
    index = (
        torch.arange(len(splits.train))
        if full_train
        else student_indices(config.student, splits, seed=0)
    )
    return Workload(config, splits, splits.train.subset(index))


def fresh_student(work: Workload) -> Classifier:
    """The quickstart student as every run of seed 0 initialises it (on the CPU)."""
    return init_network(
        work.config.student.model, work.splits, 0, STUDENT_INIT_STREAM, torch.device("cpu")
    )


def timing_parser(
    description: str, *, rounds: int, epochs: int, quick: tuple[int, int]
) -> argparse.ArgumentParser:
    """A parser with the options every timing benchmark has: ``--rounds``, ``--epochs``,
    ``--threads`` and ``--quick`` (``quick``: its rounds and epochs); read it with
    `parse_timing`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved timing rounds")
    parser.add_argument("--epochs", type=int, default=epochs, help="epochs per timed run")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{quick[0]} rounds of {quick[1]} epochs (smoke run)",
    )
    parser.set_defaults(quick_rounds_epochs=quick)
    return parser


def parse_timing(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line; ``--quick`` sets the rounds and epochs, ``--threads`` the
    torch threads."""
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.epochs = args.quick_rounds_epochs
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def seconds(run: Callable[[], object]) -> float:
    """Wall-clock seconds of ``run()``."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def interleaved(
    variants: Mapping[str, Callable[[], float]], rounds: int, deadline: float | None = None
) -> dict[str, list[float]]:
    """Each variant's measurements (what its callable returns) over ``rounds`` rounds.

    Every variant runs once before timing starts (warm-up: allocator, kernels, page cache);
    round r then runs the variants in the order rotated by r. With a ``deadline`` (a
    ``time.perf_counter()`` value) no round starts after it, except the first: a run on a
    slower machine than expected ends with fewer rounds instead of being cut off.
    """
    names = list(variants)
    for name in names:
        variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        if r > 0 and deadline is not None and time.perf_counter() > deadline:
            break
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(variants[name]())
    return times


def paired_ratio(times: Mapping[str, list[float]], name: str, base: str) -> float:
    """Median over rounds of ``times[name][r] / times[base][r]``."""
    return statistics.median(a / b for a, b in zip(times[name], times[base], strict=True))


def spread(values: list[float]) -> float:
    """Max − min."""
    return max(values) - min(values)

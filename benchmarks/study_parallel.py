"""Wall time of the quickstart study on 2 workers against the sequential study, side by side.

    python benchmarks/study_parallel.py            # the quickstart (5 seeds)
    python benchmarks/study_parallel.py --quick    # 2 seeds, for a quicker look

Runs the same study three times in fresh folders, one after the other on this machine:
sequential (`LocalExecutor`, all CPU threads), a pool of 2 worker processes with an equal
share of the threads each (`ProcessExecutor`), and a local Ray cluster of 2 CPUs
(`RayExecutor`, if Ray is installed). Each parallel run's test accuracies are compared with
the sequential run's (they differ by float summation order, since the thread counts differ;
with equal threads they are bit-identical: tests/runner/test_parallel_study.py). Prints the wall time
of each and, as the last line, ``ratio <wall time with 2 workers ÷ wall time sequential>``
(goal ≤ 0.70 on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch

from bayesdistill.config import load_config
from bayesdistill.runner import run_study
from bayesdistill.runner.executors import LocalExecutor, ProcessExecutor
from bayesdistill.runner.graph import Placement
from bayesdistill.runner.ray_executor import RayExecutor

WORKERS = 2


def _accuracies(folder: Path) -> dict[tuple[str, str, str, str], float]:
    with open(folder / "results.csv", encoding="utf-8") as handle:
        return {
            (r["role"], r["teacher_kind"], r["loss"], r["seed"]): float(r["accuracy"])
            for r in csv.DictReader(handle)
        }


def _largest_difference(a: dict, b: dict) -> float:
    if a.keys() != b.keys():
        return float("inf")
    return max(abs(a[k] - b[k]) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds instead of 5")
    args = parser.parse_args()
    logging.getLogger("bayesdistill").setLevel(logging.WARNING)
    with resources.as_file(resources.files("bayesdistill") / "configs" / "quickstart.yaml") as p:
        overrides = ["seeds=[0, 1]"] if args.quick else []
        config = load_config(p, overrides)
    cpus = os.cpu_count() or 1
    threads = max(1, cpus // WORKERS)
    runs = [
        ("sequential", LocalExecutor(Placement(threads=cpus))),
        (f"processes ×{WORKERS}", ProcessExecutor(WORKERS, ["cpu"], threads=threads)),
    ]
    try:
        import ray  # noqa: F401

        runs.append((f"ray ×{WORKERS}", RayExecutor(num_cpus=WORKERS, cpus_per_task=threads)))
    except ImportError:
        print("ray: not installed (pip install -e '.[ray]'), skipped")
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as root:
        for name, executor in runs:
            out = Path(root) / name.split()[0]
            tic = time.perf_counter()
            run_study(config, out, progress=False, executor=executor)
            seconds[name] = time.perf_counter() - tic
            gap = _largest_difference(_accuracies(out), _accuracies(Path(root) / "sequential"))
            print(
                f"{name:>14}: {seconds[name]:7.1f} s  "
                f"(×{seconds[name] / seconds['sequential']:.3f}; largest test-accuracy "
                f"difference from the sequential run {100 * gap:.2f} pp)"
            )
    print(
        "(the sequential run uses all threads, the workers a share each: float sums differ; "
        "with equal threads per unit the results are bit-identical, "
        "tests/runner/test_parallel_study.py)"
    )
    torch.set_num_threads(cpus)
    if len(runs) > 2:
        ray_name = runs[2][0]
        print(f"ratio_ray {seconds[ray_name] / seconds['sequential']:.3f}")
    print(f"ratio {seconds[runs[1][0]] / seconds['sequential']:.3f}")


if __name__ == "__main__":
    main()

"""The prepared GPU check: bayesdistill's CUDA correctness and speed in one run.

Steps, each in its own process with its own time limit, in this order:

1. ``pytest``: ``pytest tests/gpu`` (every teacher kind, loss, teacher cache, precision,
   memory format, cross-fitting, every shipped config for a step, and the processes
   executor with two workers on one GPU; each compared with the CPU where they agree);
2. ``paper_study``: the paper's study config, ``configs/cifar100/resnet50_wrn_16_2.yaml``,
   end to end on a small random CIFAR-100-shaped data set written in the official format
   (``--images`` training images), every stage for one epoch, every teacher kind and loss
   of the config, with the GPU preset (channels-last, bf16, cuDNN autotuning): the study
   must finish and write results.md;
3. ``throughput``: `benchmarks/gpu_throughput.py` cut to fit (fewer images, views and
   rounds), one line per variant as it finishes;
4. ``student_step``: `benchmarks/student_step.py`: bayesdistill's `fit` beside a plain
   hand-written loop (fp32, bf16), 1, 2, 4 and 8 student units sharing the GPU, and 4
   students trained as one stacked model.

Each step's outcome is printed as the step ends, and ``DIR/gpu_check.json`` is rewritten
after every step (atomically), so a run cut short still leaves its results. The exit status
is 1 if any step failed. The last lines are the speed ratios the issues set goals for.

    python benchmarks/gpu_check.py --out DIR                      # on a GPU: about 6 minutes
    python benchmarks/gpu_check.py --out DIR --device cpu --quick  # a CPU smoke run

It needs nothing but what ``pip install -e .`` installs (pytest for step 1: the ``dev``
extra) and the GPU; ``pytest-xdist``, where installed, runs step 1 on four processes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
PAPER_CONFIG = "configs/cifar100/resnet50_wrn_16_2.yaml"
STEPS = ("pytest", "paper_study", "throughput", "student_step")
LIMITS = {"pytest": 150, "paper_study": 80, "throughput": 70, "student_step": 150}
"""Seconds each step may take on one H200 (also capped by what is left of --budget)."""
CPU_SLOWER = 4
"""--device cpu: each step's limit is this many times the GPU's."""
QUICK_PYTEST = ["tests/gpu/test_losses_on_gpu.py"]
"""--quick: the part of tests/gpu that runs in seconds on a CPU."""
TAIL_LINES = 40
PACKAGES = ("torch", "torchvision", "laplace-torch", "curvlinops-for-pytorch", "ivon-opt", "POT")
GOAL_LINES = (
    "ratio_vi_views_bf16",
    "fit_over_plain_fp32",
    "fit_over_plain_bf16",
    "step_over_plain_fp32",
    "step_over_plain_bf16",
    "packing_2",
    "packing_4",
    "packing_8",
    "stacked_4",
)
"""Result lines of the step scripts that the check repeats at its end."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step == "paper_study_inner":
        return paper_study(args)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_")) if args.work is None else args.work
    started = time.perf_counter()
    deadline = started + args.budget
    record: dict[str, Any] = {
        "check": "gpu_check",
        "quick": args.quick,
        "device": args.device,
        "environment": environment(),
        "budget_seconds": args.budget,
        "steps": [],
    }
    print(json.dumps(record["environment"]), flush=True)
    save(out, record)
    for name in args.steps:
        limit = min(
            LIMITS[name] * (1 if args.device.startswith("cuda") else CPU_SLOWER),
            deadline - time.perf_counter(),
        )
        if limit < 10:
            step = {"step": name, "status": "skipped", "why": "the --budget is spent"}
        else:
            step = run_step(name, command(name, args, out, work), limit, args)
        record["steps"].append(step)
        record["seconds_total"] = time.perf_counter() - started
        save(out, record)
        print(
            f"==> step {name}: {step['status'].upper()}"
            + (f" in {step['seconds']:.0f} s" if "seconds" in step else f" ({step['why']})"),
            flush=True,
        )
    finish(out, work, args)
    failed = [s["step"] for s in record["steps"] if s["status"] != "passed"]
    print(
        f"gpu_check: {len(record['steps']) - len(failed)} of {len(record['steps'])} steps passed"
        f" in {record['seconds_total']:.0f} s"
        + (f"; not passed: {', '.join(failed)}" if failed else "")
    )
    for step in record["steps"]:
        for key in GOAL_LINES:
            if key in step.get("numbers", {}):
                print(f"{key} {step['numbers'][key]}")
    return 1 if failed else 0


def command(name: str, args: argparse.Namespace, out: Path, work: Path) -> list[str]:
    """The command line of step ``name``."""
    python = [sys.executable]
    device = ["--device", args.device]
    if name == "pytest":
        cmd = [*python, "-m", "pytest", *(QUICK_PYTEST if args.quick else ["tests/gpu"])]
        cmd += ["-v", "-rfEs", "--durations=15", "-p", "no:cacheprovider"]
        cmd += ["--junitxml", str(out / "pytest_gpu.xml")]
        if importlib.util.find_spec("xdist") is not None and not args.quick:
            cmd += ["-n", "4"]
        return cmd
    if name == "paper_study":
        cmd = [*python, __file__, "--step", "paper_study_inner", *device]
        cmd += ["--out", str(out), "--work", str(work), "--images", str(args.images)]
        return cmd + (["--quick"] if args.quick else [])
    if name == "throughput":
        cmd = [*python, str(BENCHMARKS / "gpu_throughput.py"), *device]
        cmd += ["--out", str(out / "gpu_throughput.json")]
        if args.quick:
            return [*cmd, "--quick"]
        cut = ["--n", "2048", "--views", "4", "--rounds", "2", "--budget", "45"]
        return [*cmd, *cut, "--laplace-fit", "512"]
    if name == "student_step":
        cmd = [*python, str(BENCHMARKS / "student_step.py"), *device]
        cmd += ["--out", str(out / "student_step.json")]
        if args.quick:
            return [*cmd, "--quick", "--packing", "1"]
        cut = ["--n", "6400", "--rounds", "2", "--budget", "75", "--compiled", "bf16"]
        return [*cmd, *cut, "--packing", "1,2,4,8"]
    raise ValueError(f"unknown step '{name}'; the steps are {', '.join(STEPS)}")


def run_step(name: str, cmd: list[str], limit: float, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``cmd``, echoing its output line by line; its outcome, time, last lines and the
    ``key number`` lines it printed."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    if name == "pytest" and args.device != "cuda":
        env.setdefault("BAYESDISTILL_GPU_TESTS_DEVICE", args.device)
    print(f"==> step {name} (limit {limit:.0f} s): {' '.join(cmd)}", flush=True)
    tic = time.perf_counter()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    numbers: dict[str, float] = {}
    process = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    timer = _Killer(process, limit)
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip("\n")
        print(f"  [{name}] {line}", flush=True)
        tail.append(line)
        key, _, value = line.partition(" ")
        if key in GOAL_LINES:
            with contextlib.suppress(ValueError):
                numbers[key] = float(value)
    code = process.wait()
    timer.cancel()
    seconds = time.perf_counter() - tic
    status = "passed" if code == 0 else ("timed out" if timer.fired else "failed")
    return {
        "step": name,
        "status": status,
        "exit_code": code,
        "seconds": seconds,
        "limit_seconds": limit,
        "command": cmd,
        "numbers": numbers,
        "tail": list(tail),
    }


class _Killer:
    """Kills ``process`` after ``seconds`` unless cancelled."""

    def __init__(self, process: subprocess.Popen, seconds: float) -> None:
        import threading

        self.fired = False

        def kill() -> None:
            self.fired = True
            process.kill()

        self._timer = threading.Timer(seconds, kill)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()


def paper_study(args: argparse.Namespace) -> int:
    """Step 2 (in its own process): the paper's config on random CIFAR-100-shaped files."""
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    from torchvision.datasets import CIFAR100

    from bayesdistill.config import load_config
    from bayesdistill.runner import run_study
    from tests.vision_files import md5, write_cifar100

    work = args.work
    root = work / "data"
    if not (root / CIFAR100.base_folder).is_dir():
        write_cifar100(root, n_train=args.images, n_test=max(100, args.images // 5), cycle=True)
    # hand-written files cannot match the official release's MD5s; trust these instead
    base = root / CIFAR100.base_folder
    CIFAR100.train_list = [[n, md5(base / n)] for n, _ in CIFAR100.train_list]
    CIFAR100.test_list = [[n, md5(base / n)] for n, _ in CIFAR100.test_list]
    CIFAR100.meta = {**CIFAR100.meta, "md5": md5(base / CIFAR100.meta["filename"])}
    cuda = args.device.startswith("cuda")
    overrides = [
        f"data.root={root}",
        "seeds=[0]",
        f"device={args.device}",
        "teacher.train.epochs=1",
        "teacher.train.milestones=[]",
        "student.train.epochs=1",
        "student.train.milestones=[]",
    ]
    config = load_config(ROOT / "src" / "bayesdistill" / PAPER_CONFIG, overrides)
    for i, kind in enumerate(config.teachers):
        if kind.name == "mfvi":
            overrides.append(f"teachers.{i}.epochs=1")
    if cuda:  # the GPU preset
        overrides += ["runtime.channels_last=true", "runtime.cudnn_benchmark=true"]
        overrides += ["runtime.precision=bf16"]
    if args.quick:
        overrides += ["teacher.model=resnet8", "student.model=resnet8"]
        overrides += [
            f"teachers.{i}.num_samples=2" for i, k in enumerate(config.teachers) if k.name == "mfvi"
        ]
    config = load_config(ROOT / "src" / "bayesdistill" / PAPER_CONFIG, overrides)
    tic = time.perf_counter()
    folder = run_study(config, work / "paper_study", progress=False)
    results = folder / "results.md"
    rows = (folder / "results.csv").read_text().splitlines()[1:]
    print(f"paper study finished in {time.perf_counter() - tic:.0f} s: {len(rows)} rows")
    shutil.copy(results, args.out / "paper_results.md")
    print(results.read_text()[:3000])
    kinds = [k for k in config.teachers if k.name != "none"]
    students = sum(loss.applies_to(k.key) for loss in config.student.losses for k in kinds)
    expected = len(kinds) + 1 + students
    if len(rows) != expected:
        print(f"results.csv has {len(rows)} rows, expected {expected}")
        return 1
    return 0


def environment() -> dict[str, Any]:
    """The GPU, its driver, CUDA, cuDNN and the versions the check ran with."""
    import torch

    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
    }
    for package in PACKAGES:
        try:
            facts[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            facts[package] = None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"]
        done = subprocess.run(query, capture_output=True, text=True, timeout=30)
        facts["nvidia_smi"] = done.stdout.strip()
    return facts


def save(out: Path, record: dict[str, Any]) -> None:
    """Write ``out/gpu_check.json`` atomically (a temporary file, then a rename)."""
    target = out / "gpu_check.json"
    temporary = target.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=2, default=str))
    os.replace(temporary, target)


def finish(out: Path, work: Path, args: argparse.Namespace) -> None:
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (--quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of every step")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for all steps (default: 360 on a GPU, 1200 on the CPU)",
    )
    parser.add_argument(
        "--steps",
        default=",".join(STEPS),
        help=f"comma-separated steps to run (default: all: {','.join(STEPS)})",
    )
    parser.add_argument("--images", type=int, default=3000, help="paper study's train images")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {unknown}; the steps are {', '.join(STEPS)}")
    if args.quick:
        args.images = min(args.images, 200)
    if args.budget is None:
        args.budget = 360.0 if args.device.startswith("cuda") else 1200.0
    return args


if __name__ == "__main__":
    sys.exit(main())

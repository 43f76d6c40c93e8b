"""DDP on the CPU: examples/s of 1 vs 2 gloo processes, and the weights they end with.

    python benchmarks/ddp.py [--samples 4000] [--epochs 4]

Trains the same small MLP by KD (tests/train/ddp_script.py) once in one process with the
global batch B, and once under ``torchrun --nproc_per_node 2`` with B/2 per rank; prints
each run's training throughput, the largest weight difference between the two runs (the
DDP equivalence, expected below 1e-5) and, as the last line, ``ratio <examples/s with 2
processes ÷ examples/s with 1>``. No goal on a 2-core machine shared with others: gloo's
all-reduce and two processes on two cores make DDP slower here, not faster; it is the
same code that uses N GPUs with NCCL.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "train" / "ddp_script.py"


def _run(command: list[str]) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    match = re.search(r"examples_per_second ([0-9.]+)", result.stdout)
    if match is None:
        raise SystemExit(f"no throughput in the output of {' '.join(command)}:\n{result.stdout}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    extra = ["--loss", "kd", "--samples", str(args.samples), "--epochs", str(args.epochs)]
    with tempfile.TemporaryDirectory() as root:
        one = _run([sys.executable, str(SCRIPT), f"{root}/one", *extra])
        two = _run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node=2",
                str(SCRIPT),
                f"{root}/two",
                *extra,
            ]
        )
        a = torch.load(f"{root}/one/weights.pt", weights_only=True)
        b = torch.load(f"{root}/two/weights.pt", weights_only=True)
        difference = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"1 process:   {one:9.1f} examples/s")
    print(f"2 processes: {two:9.1f} examples/s (gloo, 1 thread each)")
    print(f"largest weight difference after training: {difference:.2e} (equivalence: < 1e-5)")
    print(f"ratio {two / one:.3f}")


if __name__ == "__main__":
    main()

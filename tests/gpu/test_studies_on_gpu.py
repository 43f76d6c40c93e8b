"""Whole studies on the GPU: every shipped config for a step with the networks it names
(the GPU counterpart of ``pytest -m slow``'s CPU test), the speed options together with
cross-fitting and Laplace, and the processes executor with two workers on one GPU
(``bayesdistill study --executor processes --workers 2 --devices cuda:0,cuda:0``), whose
results are the sequential run's."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from torchvision.datasets import CIFAR100

from bayesdistill.config import load_config
from bayesdistill.runner import run_study
from tests.config.test_shipped_configs import SHIPPED, _run_a_step
from tests.vision_files import trust_cifar_files, write_cifar100

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "src" / "bayesdistill" / "configs" / "cifar100" / "resnet50_wrn_16_2.yaml"
TINY_STUDY = {
    "data": {"name": "synthetic", "num_samples": 240, "num_classes": 3, "dim": 5},
    "teacher": {
        "model": {"name": "mlp", "hidden": [8], "dropout": 0.1},
        "train": {"epochs": 2, "batch_size": 32},
    },
    "teachers": [
        "none",
        "deterministic",
        "exact_bcp",
        {"name": "laplace", "hessian_structure": "full", "prior_precision": "marglik"},
        {"name": "mc_dropout", "num_samples": 3},
    ],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 2, "batch_size": 16},
        "losses": [{"name": "kd", "temperature": 2.0}, "soft_ce"],
    },
    "seeds": [0, 1],
}


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "results.csv", encoding="utf-8") as handle:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]


def _close(a: list[dict[str, str]], b: list[dict[str, str]], tol: float = 1e-4) -> bool:
    """The same rows, numbers equal within ``tol``."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        for key in ra:
            try:
                x, y = float(ra[key]), float(rb[key])
            except ValueError:
                if ra[key] != rb[key]:
                    return False
                continue
            if not (x == y or abs(x - y) <= tol * max(1.0, abs(x))):
                return False
    return True


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_config_runs_a_step_on_the_gpu(path, device, tmp_path, monkeypatch):
    _run_a_step(path, tmp_path, monkeypatch, [f"device={device}"])


def test_speed_options_with_cross_fitting_and_laplace(device, tmp_path, monkeypatch):
    """channels-last, bf16 and cuDNN autotuning; a cross-fitted Laplace teacher (its folds'
    networks trained channels-last with augmentation) and a full-Hessian one."""
    root = tmp_path / "data"
    write_cifar100(root, n_train=200, n_test=20, cycle=True)
    trust_cifar_files(monkeypatch, CIFAR100, root)
    overrides = [
        f"data.root={root}",
        "data.val_fraction=0.1",
        "teacher.model=resnet8",
        "student.model=resnet8",
        "teacher.train.epochs=1",
        "teacher.train.batch_size=32",
        "teacher.train.milestones=[]",
        "student.train.epochs=1",
        "student.train.batch_size=32",
        "student.train.milestones=[]",
        "student.augment=[]",  # cross-fitted targets exist for clean examples only
        "teachers=[none, deterministic, {name: laplace, prior_precision: marglik, cross_fit: 2},"
        " {name: laplace, label: laplace_full, hessian_structure: full, grid_points: 3}]",
        "student.losses=[{name: kd, alpha: 0.5, temperature: 4.0}]",
        "seeds=[0]",
        f"device={device}",
        "runtime.channels_last=true",
        "runtime.cudnn_benchmark=true",
        f"runtime.precision={'bf16' if device.type in ('cuda', 'cpu') else 'fp32'}",
    ]
    config = load_config(PAPER, overrides)
    out = run_study(config, tmp_path / "run", progress=False)
    rows = _rows(out)
    assert len(rows) == 3 + 1 + 3  # three teachers, one-hot, three students
    assert all("nan" not in str(v).lower() for r in rows for v in r.values())


def test_processes_executor_with_two_workers_on_one_gpu(device, tmp_path):
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({**TINY_STUDY, "device": str(device)}))
    run_study(load_config(config_file), tmp_path / "sequential", progress=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    devices = f"{device},{device}"
    command = [sys.executable, "-m", "bayesdistill", "study", str(config_file)]
    command += ["--out", str(tmp_path / "pool"), "--no-progress"]
    command += ["--executor", "processes", "--workers", "2", "--devices", devices]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _close(_rows(tmp_path / "pool"), _rows(tmp_path / "sequential"))


def test_ray_executor_packs_units_on_one_gpu(device, tmp_path):
    """``--executor ray --gpus-per-unit 0.5`` on a local Ray cluster with the GPU: the
    sequential study's results (skipped where Ray is not installed: it is a dev extra)."""
    pytest.importorskip("ray")
    from bayesdistill.runner.ray_executor import RayExecutor

    config = load_config({**TINY_STUDY, "device": str(device)})
    run_study(config, tmp_path / "sequential", progress=False)
    gpus = 1 if device.type == "cuda" else 0
    executor = RayExecutor(num_cpus=2, num_gpus=gpus, gpus_per_task=0.5 if gpus else 0.0)
    run_study(config, tmp_path / "ray", progress=False, executor=executor)
    assert _close(_rows(tmp_path / "ray"), _rows(tmp_path / "sequential"))

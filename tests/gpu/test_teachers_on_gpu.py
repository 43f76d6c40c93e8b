"""Every registered teacher kind (and every Laplace structure and predictive) built on the
GPU: the CPU's probabilities where both compute the same thing, and on every device the
same teacher after a move or a save and reload.

Teachers that sample (MC dropout, IVON, mean-field VI) draw their weight samples and
masks on the CPU, so they too agree across devices. Only the *training* of IVON and VI
teachers (and of MC-dropout ensemble members) draws from the device's own random stream,
so those are compared with themselves moved to the CPU rather than with a CPU build.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from bayesdistill.data import DataSplits
from bayesdistill.losses import onehot_ce
from bayesdistill.models import Classifier, create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import TEACHERS, TeacherContext, load_teacher
from bayesdistill.train import RunOptions, TrainSettings, fit, predict_in_batches
from bayesdistill.train.accel import Acceleration, Precision, vectorized_samples

FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "laplace": {"grid_points": 5},
    "ivon": {"epochs": 2, "num_samples": 3},
    "mc_dropout": {"num_samples": 4},
    "ensemble": {"members": 2},
    "mfvi": {"epochs": 2, "num_samples": 3},
    "mse_teacher": {"epochs": 2},
    "mcmi": {"epochs": 1},
}
TRAINED_WITH_DEVICE_NOISE = {"ivon", "mfvi"}
"""Kinds whose training draws from the device's random stream: a GPU build is another
teacher than a CPU build (compared with itself moved to the CPU instead)."""
LAPLACE_CASES: dict[str, dict[str, Any]] = {
    "kron-marglik": {"prior_precision": "marglik"},
    "full-marglik": {"hessian_structure": "full", "prior_precision": "marglik"},
    "diag-grid": {"hessian_structure": "diag", "grid_points": 5},
    "all-diag": {"subset_of_weights": "all", "hessian_structure": "diag", "grid_points": 5},
    "all-kron": {"subset_of_weights": "all", "hessian_structure": "kron", "grid_points": 5},
    "full-bridge": {"hessian_structure": "full", "link_approx": "bridge", "grid_points": 5},
}
LAPLACE_SAMPLING: dict[str, dict[str, Any]] = {
    "glm-mc": {"link_approx": "mc", "n_samples": 20, "grid_points": 3},
    "nn-mc": {"pred_type": "nn", "link_approx": "mc", "n_samples": 5, "grid_points": 3},
}
"""Monte-Carlo Laplace predictives: laplace-torch draws from torch's global generator on
the device, so only checked on the GPU itself (valid, the same on every call)."""
ATOL = 1e-4
"""Probabilities of a teacher built on the GPU vs on the CPU (float32, different kernels
and summation orders; Laplace's prior precision optimised iteratively on each)."""


def _mlp(splits: DataSplits, seed: int = 0, dropout: float = 0.0) -> Classifier:
    with seeded(seed):
        return create_model(
            "mlp", splits.input_shape, splits.num_classes, hidden=(16,), dropout=dropout
        )


@pytest.fixture(scope="module")
def networks(tiny_splits) -> dict[str, Classifier]:
    """Trained on the CPU once: a plain MLP, and one with dropout (for MC dropout)."""
    out = {}
    for key, dropout in (("plain", 0.0), ("dropout", 0.2)):
        out[key] = fit(
            _mlp(tiny_splits, dropout=dropout),
            tiny_splits.train,
            loss_fn=onehot_ce,
            settings=TrainSettings(epochs=5, batch_size=32, lr=0.1),
            seed=0,
            progress=False,
        ).model
    return out


def build(name: str, options: dict[str, Any], device: torch.device, splits, networks) -> Any:
    network = networks["dropout" if name == "mc_dropout" else "plain"]
    context = TeacherContext(
        splits=splits,
        seed=0,
        network=copy.deepcopy(network).to(device),
        init_network=lambda: _mlp(splits).to(device),
        train_settings=TrainSettings(epochs=2, batch_size=32, lr=0.1),
        device=device,
        run=RunOptions(progress=False),
    )
    return TEACHERS.build(name, context, **options)


def _on_device(teacher: Any, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    probs = teacher.predict_proba(x.to(device))
    assert probs.device.type == device.type, f"probabilities on {probs.device}, not {device}"
    assert torch.isfinite(probs).all() and (probs >= 0).all()
    assert torch.allclose(probs.sum(1), torch.ones(len(probs), device=probs.device), atol=1e-5)
    return probs.cpu()


@pytest.mark.parametrize("name", TEACHERS.names())
def test_teacher_on_the_gpu(name, device, tiny_splits, networks, tmp_path):
    options = FAST_OPTIONS.get(name, {})
    x = tiny_splits.test.x
    gpu = build(name, options, device, tiny_splits, networks)
    on_gpu = _on_device(gpu, x, device)
    assert torch.equal(_on_device(gpu, x, device), on_gpu), "not a fixed function of x"
    # the same teacher saved on the GPU and reloaded on the CPU
    gpu.save(tmp_path / "teacher.pt")
    reloaded = load_teacher(tmp_path / "teacher.pt", "cpu")
    assert torch.allclose(_on_device(reloaded, x, torch.device("cpu")), on_gpu, atol=1e-5)
    if name in TRAINED_WITH_DEVICE_NOISE:
        return
    cpu = build(name, options, torch.device("cpu"), tiny_splits, networks)
    on_cpu = _on_device(cpu, x, torch.device("cpu"))
    assert torch.allclose(on_gpu, on_cpu, atol=ATOL), (on_gpu - on_cpu).abs().max()


@pytest.mark.parametrize("case", sorted(LAPLACE_CASES))
def test_laplace_structure_on_the_gpu(case, device, tiny_splits, networks):
    options = LAPLACE_CASES[case]
    x = tiny_splits.test.x
    on_gpu = _on_device(build("laplace", options, device, tiny_splits, networks), x, device)
    cpu = build("laplace", options, torch.device("cpu"), tiny_splits, networks)
    on_cpu = _on_device(cpu, x, torch.device("cpu"))
    assert torch.allclose(on_gpu, on_cpu, atol=ATOL), (on_gpu - on_cpu).abs().max()


@pytest.mark.parametrize("case", sorted(LAPLACE_SAMPLING))
def test_monte_carlo_laplace_on_the_gpu(case, device, tiny_splits, networks):
    teacher = build("laplace", LAPLACE_SAMPLING[case], device, tiny_splits, networks)
    x = tiny_splits.test.x
    first = _on_device(teacher, x, device)
    assert torch.equal(_on_device(teacher, x, device), first)


@pytest.mark.parametrize("name", sorted(TEACHERS.names()))
def test_teacher_under_bf16_autocast(name, device, tiny_splits, networks):
    """predict_in_batches at bf16: float32 rows summing to one (renormalised), close to
    the teacher's float32 probabilities."""
    teacher = build(name, FAST_OPTIONS.get(name, {}), device, tiny_splits, networks)
    x = tiny_splits.test.x.to(device)
    exact = predict_in_batches(teacher, x)
    half = predict_in_batches(teacher, x, accel=Acceleration(precision=Precision.BF16))
    assert half.dtype == torch.float32 and half.device.type == device.type
    assert torch.allclose(half.sum(1), torch.ones(len(half), device=half.device), atol=1e-6)
    assert torch.allclose(half, exact, atol=3e-2)


@pytest.mark.parametrize("name", ["ivon", "mfvi"])
def test_vectorized_samples_on_the_gpu(name, device, tiny_splits, networks):
    """All S weight samples in one vmapped pass: the loop's probabilities."""
    teacher = build(name, FAST_OPTIONS[name], device, tiny_splits, networks)
    x = tiny_splits.test.x.to(device)
    loop = teacher.predict_proba(x)
    with vectorized_samples(FAST_OPTIONS[name]["num_samples"]):
        vectorized = teacher.predict_proba(x)
    assert torch.allclose(vectorized, loop, atol=1e-6)

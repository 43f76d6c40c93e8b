"""Distillation on the GPU: every teacher cache, precision and memory format, response and
feature losses, a teacher without a network, and Laplace after channels-last training.

In float32 a GPU run follows the CPU run's trajectory (the same initial weights, batch
order and augmentation draws, all made on the CPU), so its logged losses are the CPU's
within float tolerance; bf16 and fp16 runs are compared with the GPU's own float32 run.
"""

from __future__ import annotations

import copy

import pytest
import torch

from bayesdistill.data import AUGMENTATIONS, ArrayData, gaussian_mixture, make_splits
from bayesdistill.losses import onehot_ce
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import TEACHERS, DeterministicTeacher, TeacherContext
from bayesdistill.teachers.laplace import fit_laplace
from bayesdistill.train import RunOptions, TrainSettings, distill, fit
from bayesdistill.train.accel import Acceleration, Precision
from bayesdistill.train.objective import LossTerm

IMAGES = (32, 3, 8, 8)
CLASSES = 5
SETTINGS = TrainSettings(epochs=2, batch_size=8, lr=0.05, evals_per_epoch=2)
CACHES = {"exact": None, "views": "cifar", "none": "cifar"}
"""Teacher cache → the student's augmentation (exact needs none; the others one)."""
RTOL = 1e-4
"""float32 losses, GPU vs CPU, after a few steps."""
HALF_RTOL = 5e-2
"""bf16/fp16 losses vs float32 on the same device."""


def _images() -> ArrayData:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*IMAGES, generator=gen)
    return ArrayData(x, torch.arange(IMAGES[0]) % CLASSES, CLASSES)


def _network(seed: int):
    with seeded(seed):
        return create_model("resnet8", IMAGES[1:], CLASSES)


def _losses(history: list[dict]) -> torch.Tensor:
    return torch.tensor([r["train_loss"] for r in history], dtype=torch.float64)


def _distill(device, cache: str, accel: Acceleration, loss="kd"):
    data = _images()
    teacher = DeterministicTeacher(_network(1).to(device))
    augment = None if CACHES[cache] is None else AUGMENTATIONS.build(CACHES[cache])
    result = distill(
        _network(2).to(device),
        data,
        teacher,
        loss=loss,
        settings=SETTINGS,
        seed=0,
        augment=augment,
        teacher_cache=cache,
        cache_views=3,
        progress=False,
        accel=accel,
    )
    assert all(p.device.type == torch.device(device).type for p in result.model.parameters())
    return _losses(result.history)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("cache", sorted(CACHES))
def test_float32_distillation_follows_the_cpu(cache, channels_last, device):
    accel = Acceleration(channels_last=channels_last)
    on_gpu = _distill(device, cache, accel)
    on_cpu = _distill("cpu", cache, Acceleration())
    assert torch.isfinite(on_gpu).all()
    assert torch.allclose(on_gpu, on_cpu, rtol=RTOL), (on_gpu, on_cpu)


@pytest.mark.parametrize("precision", [Precision.BF16, Precision.FP16])
@pytest.mark.parametrize("cache", sorted(CACHES))
def test_mixed_precision_distillation(cache, precision, device):
    if precision is Precision.FP16 and device.type != "cuda":
        pytest.skip("fp16 autocast with a GradScaler is CUDA's")
    full = _distill(device, cache, Acceleration(channels_last=True))
    half = _distill(device, cache, Acceleration(precision=precision, channels_last=True))
    assert torch.isfinite(half).all()
    assert torch.allclose(half[:1], full[:1], rtol=HALF_RTOL), (half, full)


def test_feature_loss_distillation_follows_the_cpu(device):
    terms = [LossTerm("onehot_ce"), LossTerm("w2_empirical", weight=0.1), LossTerm("mmd")]
    on_gpu = _distill(device, "exact", Acceleration(), loss=terms)
    on_cpu = _distill("cpu", "exact", Acceleration(), loss=terms)
    assert torch.allclose(on_gpu, on_cpu, rtol=RTOL), (on_gpu, on_cpu)


@pytest.mark.parametrize("cache", ["exact", "none"])
def test_teacher_without_a_network(cache, device):
    """exact_bcp's probabilities are computed on the CPU and used by a GPU student."""
    raw = gaussian_mixture(num_classes=3, dim=4, num_samples=120, seed=1)
    splits = make_splits(raw, val_fraction=0.2, test_fraction=0.2, seed=0)
    teacher = TEACHERS.build(
        "exact_bcp", TeacherContext(splits=splits, run=RunOptions(progress=False))
    )
    augment = None if cache == "exact" else AUGMENTATIONS.build("noise", std=0.05)
    histories = []
    for where in (device, torch.device("cpu")):
        with seeded(3):
            student = create_model("mlp", splits.input_shape, 3, hidden=(8,))
        result = distill(
            student.to(where),
            splits.train,
            teacher,
            loss="soft_ce",
            settings=SETTINGS,
            seed=0,
            augment=augment,
            teacher_cache=cache,
            progress=False,
        )
        histories.append(_losses(result.history))
    assert torch.allclose(histories[0], histories[1], rtol=RTOL), histories


@pytest.mark.parametrize("structure", ["kron", "full", "diag"])
def test_laplace_after_channels_last_training(structure, device):
    """A network trained channels-last on the GPU, then Laplace: the CPU's teacher."""
    data = _images()
    network = fit(
        _network(1).to(device),
        data,
        loss_fn=onehot_ce,
        settings=SETTINGS,
        seed=0,
        progress=False,
        accel=Acceleration(channels_last=True),
    ).model
    x = data.x[:8]
    probs = {}
    for where in (device, torch.device("cpu")):
        teacher = fit_laplace(
            copy.deepcopy(network).to(where),
            data,
            hessian_structure=structure,
            prior_precision=1.0,
        )
        probs[where.type] = teacher.predict_proba(x.to(where)).cpu()
    assert torch.allclose(probs[device.type], probs["cpu"], atol=1e-4)


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.BF16])
def test_whole_step_compilation_follows_the_eager_step(precision, device):
    """``runtime.compile: step`` (CUDA graphs on a GPU) logs the eager run's losses, with
    a cosine schedule and a last partial batch (32 images in batches of 6)."""
    settings = TrainSettings(epochs=3, batch_size=6, lr=0.05, schedule="cosine")
    runs = {}
    for mode in (False, "step"):
        accel = Acceleration(precision=precision, channels_last=True, compile=mode)
        result = fit(
            _network(2).to(device),
            _images(),
            loss_fn=onehot_ce,
            settings=settings,
            seed=0,
            progress=False,
            accel=accel,
        )
        runs[mode] = _losses(result.history)
    assert torch.allclose(
        runs["step"], runs[False], rtol=1e-4 if precision is Precision.FP32 else 2e-2
    )


def test_a_diverging_run_stops_with_the_clear_error(device):
    settings = TrainSettings(epochs=2, batch_size=8, lr=1e12)
    with pytest.raises(FloatingPointError, match=r"loss became .* at epoch 0, batch \d+; lower"):
        fit(_network(2).to(device), _images(), loss_fn=onehot_ce, settings=settings, seed=0,
            progress=False)  # fmt: skip

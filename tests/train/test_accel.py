"""The opt-in speed options: what each does, and the clear errors where one cannot work."""

from __future__ import annotations

import copy

import pytest
import torch

from bayesdistill.data import ArrayData
from bayesdistill.errors import ConfigError
from bayesdistill.losses import onehot_ce
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import DeterministicTeacher
from bayesdistill.train import TrainSettings, fit, predict_in_batches, sgd_step
from bayesdistill.train import accel as accel_module
from bayesdistill.train.accel import Acceleration

from ..conftest import make_mlp

SETTINGS = TrainSettings(epochs=2, batch_size=16, lr=0.05)


def _images(n: int = 48) -> ArrayData:
    gen = torch.Generator().manual_seed(0)
    return ArrayData(torch.randn(n, 3, 8, 8, generator=gen), torch.arange(n) % 4, 4)


def _conv_net() -> torch.nn.Module:
    with seeded(1):
        return create_model("resnet8", (3, 8, 8), 4)


def test_fp16_needs_cuda_and_says_what_works(tiny_splits):
    with pytest.raises(ConfigError, match="precision 'fp16' needs a CUDA device.*use 'bf16'"):
        Acceleration(precision="fp16").check("cpu")
    with pytest.raises(ConfigError, match="fp16"):
        fit(
            make_mlp(tiny_splits),
            tiny_splits.train,
            loss_fn=onehot_ce,
            settings=SETTINGS,
            seed=0,
            progress=False,
            accel=Acceleration(precision="fp16"),
        )


def test_unknown_precision_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, fp16, got 'fp8'"):
        Acceleration(precision="fp8")


def test_compile_where_torch_compile_is_unavailable_is_refused(monkeypatch):
    monkeypatch.setattr(accel_module, "compile_available", lambda: False)
    with pytest.raises(ConfigError, match="compile: true needs torch.compile"):
        Acceleration(compile=True).check("cpu")


def test_the_scaled_step_takes_the_plain_step_when_nothing_overflows(tiny_splits):
    """GradScaler (fp16's loss scaling) multiplies the loss by 2¹⁶ and divides the gradient
    back: the update equals the plain step's."""
    plain, scaled = make_mlp(tiny_splits), make_mlp(tiny_splits)
    x, y = tiny_splits.train.x[:32], tiny_splits.train.y[:32]
    for model, scaler in ((plain, None), (scaled, torch.amp.GradScaler("cpu"))):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            sgd_step(
                model,
                optimizer,
                lambda m=model: onehot_ce(m(x), None, y),
                max_norm=1.0,
                scaler=scaler,
            )
    for p, q in zip(plain.parameters(), scaled.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_channels_last_trains_to_the_same_weights():
    data = _images()
    plain = _conv_net()
    fast = copy.deepcopy(plain)
    fit(plain, data, loss_fn=onehot_ce, settings=SETTINGS, seed=0, progress=False)
    fit(
        fast,
        data,
        loss_fn=onehot_ce,
        settings=SETTINGS,
        seed=0,
        progress=False,
        accel=Acceleration(channels_last=True),
    )
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for p, q in zip(plain.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_runs_forward_passes_in_bfloat16(tiny_splits):
    seen = []
    model = make_mlp(tiny_splits)
    model.head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    fit(
        model,
        tiny_splits.train,
        loss_fn=onehot_ce,
        settings=TrainSettings(epochs=1, batch_size=64),
        seed=0,
        progress=False,
        accel=Acceleration(precision="bf16"),
    )
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights


def test_bf16_teacher_predictions_are_renormalised_rows(tiny_splits):
    teacher = DeterministicTeacher(make_mlp(tiny_splits))
    x = tiny_splits.train.x
    fp32 = predict_in_batches(teacher, x)
    bf16 = predict_in_batches(teacher, x, accel=Acceleration(precision="bf16"))
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16.sum(1), torch.ones(len(x)), rtol=0, atol=1e-6)
    assert 0 < (bf16 - fp32).abs().max() < 2e-2  # computed in bfloat16, close to fp32
    assert torch.equal(fp32, teacher.predict_proba(x))  # fp32: untouched


@pytest.mark.slow
def test_compiled_training_matches_eager():
    """torch.compile on the CPU (inductor needs a C++ compiler): same weights as eager."""
    data = _images()
    eager = _conv_net()
    compiled = copy.deepcopy(eager)
    fit(eager, data, loss_fn=onehot_ce, settings=SETTINGS, seed=0, progress=False)
    fit(
        compiled,
        data,
        loss_fn=onehot_ce,
        settings=SETTINGS,
        seed=0,
        progress=False,
        accel=Acceleration(compile=True),
    )
    for p, q in zip(eager.parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-4)

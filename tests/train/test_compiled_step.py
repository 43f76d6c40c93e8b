"""compile: step — the whole training step compiled (torch.compile on the CPU here).

The compiled step must train as the eager one does (to float rounding: fused kernels sum in
another order), through a learning-rate schedule and a last partial batch; where it cannot
be captured it says so once and is the eager loop exactly. torch.compile needs a C++
compiler on the CPU (gcc); the first compilation of a network takes seconds (tens for a
convolutional one), so the networks are tiny and the compiled configurations few.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch

from bayesdistill.config import load_config
from bayesdistill.data import ArrayData
from bayesdistill.errors import ConfigError
from bayesdistill.losses import kd, onehot_ce
from bayesdistill.losses.response import linear_warmup
from bayesdistill.models import create_model
from bayesdistill.runner.study import config_values
from bayesdistill.seeding import seeded
from bayesdistill.train import TrainSettings, fit, sgd_step
from bayesdistill.train import compiled as compiled_module
from bayesdistill.train.accel import Acceleration
from bayesdistill.train.compiled import capture_obstacle
from bayesdistill.train.objective import LogitLoss, LossTerm, WeightedSum
from bayesdistill.train.targets import CachedTargets
from bayesdistill.train.variance_reduction import SVRGCorrection

from ..conftest import interrupt_after

N, CLASSES, BATCH = 100, 5, 16
"""100 examples in batches of 16: six full batches and a last one of 4 per epoch."""
SETTINGS = TrainSettings(
    epochs=3, batch_size=BATCH, lr=0.05, schedule="cosine", grad_clip_norm=1.0, evals_per_epoch=2
)
"""21 steps: a cosine schedule that changes the learning rate at every step, clipping."""
STEP = Acceleration(compile="step")
COMPILED_CALLS = SETTINGS.epochs * (N // BATCH) - 1
"""Every full batch but the first (run eagerly: it creates the optimiser's state)."""


def _data(shape: tuple[int, ...]) -> tuple[ArrayData, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, *shape, generator=gen)
    probs = torch.softmax(2 * torch.randn(N, CLASSES, generator=gen), dim=1)
    return ArrayData(x, torch.arange(N) % CLASSES, CLASSES), probs


def _mlp(seed: int = 1) -> torch.nn.Module:
    with seeded(seed):
        return create_model("mlp", (6,), CLASSES, hidden=(16,))


def _without_time(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def _assert_same_training(eager, compiled, rtol: float = 1e-4) -> None:
    """Same learning curve (every logged loss, term and lr) and weights, to ``rtol``."""
    assert len(eager.history) == len(compiled.history)
    for a, b in zip(_without_time(eager.history), _without_time(compiled.history), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=rtol, abs=1e-7), key
    for (name, p), q in zip(
        eager.model.state_dict().items(), compiled.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(q, p, rtol=rtol, atol=1e-5, msg=name)


@pytest.fixture
def compiled_calls(monkeypatch) -> list[int]:
    """The batch sizes the compiled step function was called with (torch.compile spied on)."""
    calls: list[int] = []
    real = torch.compile

    def spy(fn: Callable, **options: Any) -> Callable:
        compiled = real(fn, **options)

        def call(inputs, weight):
            calls.append(len(inputs.x))
            return compiled(inputs, weight)

        return call

    monkeypatch.setattr(compiled_module.torch, "compile", spy)
    return calls


def _fallback_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot capture" in r.getMessage()]


# --- the option ----------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "value"), [("step", "step"), ("true", True), ("false", False)])
def test_compile_values_and_their_identity(given, value):
    """false and true keep their meaning and their place in a run's identity (config values
    and checkpoint fingerprints see the same booleans as before); step is new."""
    config = load_config(None, [f"runtime.compile={given}"])
    assert config.runtime.compile == value
    assert config_values(config)["runtime"]["compile"] == value
    accel = config.runtime.acceleration()
    assert accel.facts()["compile"] == value
    assert accel.compiles_step == (value == "step")
    assert accel.compiles_forward == (value is True)
    assert Acceleration(compile=False) == Acceleration()


def test_a_bad_compile_value_names_it_and_the_allowed_ones():
    allowed = r"false \(no compilation\), true \(.*forward pass\) or 'step' \(.*whole training step"
    with pytest.raises(ConfigError, match=f"runtime.compile: compile must be {allowed}.*'fast'"):
        load_config(None, ["runtime.compile=fast"])
    with pytest.raises(ConfigError, match=f"compile must be {allowed}.*got 2"):
        Acceleration(compile=2)


# --- compiled = eager, to float rounding ---------------------------------------------------


def test_compiled_step_trains_an_mlp_as_the_eager_step(compiled_calls, caplog):
    """Named loss terms (one-hot CE + KD from a cached teacher table), a cosine schedule,
    gradient clipping, and a last partial batch (run uncompiled)."""
    data, probs = _data((6,))
    objective = WeightedSum([LossTerm("onehot_ce"), LossTerm("kd", weight=0.5)])

    def train(accel: Acceleration):
        return fit(
            _mlp(),
            data,
            objective=objective,
            targets=CachedTargets(probs),
            settings=SETTINGS,
            seed=0,
            progress=False,
            accel=accel,
        )

    eager = train(Acceleration())
    with caplog.at_level(logging.WARNING, logger="bayesdistill"):
        compiled = train(STEP)
    assert not _fallback_warnings(caplog)
    assert compiled_calls == [BATCH] * COMPILED_CALLS  # the partial batches ran eagerly
    assert {"train_loss/onehot_ce", "train_loss/kd"} <= compiled.history[-1].keys()
    _assert_same_training(eager, compiled)


@pytest.mark.slow  # compiling a ResNet's step on the CPU takes about a minute
def test_compiled_step_distils_a_resnet_as_the_eager_step(compiled_calls):
    """KD from a cached teacher table into a small ResNet (BatchNorm buffers included)."""
    data, probs = _data((3, 8, 8))
    with seeded(1):
        network = create_model("resnet8", (3, 8, 8), CLASSES)

    def train(accel: Acceleration):
        return fit(
            copy.deepcopy(network),
            data,
            loss_fn=kd,
            targets=CachedTargets(probs),
            settings=SETTINGS,
            seed=0,
            progress=False,
            accel=accel,
        )

    eager, compiled = train(Acceleration()), train(STEP)
    assert compiled_calls == [BATCH] * COMPILED_CALLS
    _assert_same_training(eager, compiled)


def test_a_compiled_run_resumes_to_the_uninterrupted_run(tmp_path):
    """The checkpoint holds the learning rate as a tensor; resuming continues exactly (the
    same compiled kernels, the random state of dropout restored)."""
    data, _ = _data((6,))

    def train(folder, resume=False):
        model = _mlp()
        model.body.insert(2, torch.nn.Dropout(0.2))
        return fit(
            model,
            data,
            loss_fn=onehot_ce,
            settings=SETTINGS,
            seed=3,
            run_dir=folder,
            resume=resume,
            progress=False,
            accel=STEP,
        )

    full = train(tmp_path / "full")
    interrupt_after(2, lambda: train(tmp_path / "part"))
    resumed = train(tmp_path / "part", resume=True)
    assert resumed.resumed_from_epoch == 2
    assert _without_time(resumed.history) == _without_time(full.history)
    for p, q in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q)


def test_trainings_in_one_process_each_compile_afresh(compiled_calls):
    """Each training drops its compiled code when it ends: without that, every new optimiser
    adds entries to PyTorch's cache of ``SGD.step`` until the recompilation limit makes
    Dynamo run the update uncompiled, with only a warning of its own."""
    data, _ = _data((6,))
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    dynamo_log = logging.getLogger("torch._dynamo")
    dynamo_log.addHandler(handler)
    try:
        with torch._dynamo.config.patch(recompile_limit=2):
            for seed in range(3):
                fit(
                    _mlp(seed),
                    data,
                    loss_fn=onehot_ce,
                    settings=SETTINGS,
                    seed=0,
                    progress=False,
                    accel=STEP,
                )
    finally:
        dynamo_log.removeHandler(handler)
    assert not [m for m in messages if "recompile_limit" in m]
    assert len(compiled_calls) == 3 * COMPILED_CALLS


# --- what is not captured: said once, then the eager loop exactly ---------------------------


def _own_step(model, optimizer, compute_loss):
    return sgd_step(model, optimizer, compute_loss)


def _warm_ce(logits, teacher_probs, labels, *, epoch: float):
    return onehot_ce(logits, teacher_probs, labels) * (0.5 + 0.5 * linear_warmup(epoch, 2.0))


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("own step", r"its own step function \(_own_step\)"),
        ("warm-up", "its loss warms up: it reads the fractional epoch"),
        ("no torch.compile", r"torch.compile is not available in this PyTorch"),
    ],
    ids=["own-step", "warm-up", "no-torch-compile"],
)
def test_an_uncapturable_step_says_so_once_and_trains_eagerly(
    case, reason, monkeypatch, caplog, compiled_calls
):
    data, _ = _data((6,))
    options: dict[str, Any] = {"loss_fn": onehot_ce}
    if case == "own step":
        options["step"] = _own_step
    elif case == "warm-up":
        options = {"objective": LogitLoss(_warm_ce, runtime=("epoch",))}
    else:
        monkeypatch.setattr(compiled_module, "compile_available", lambda: False)

    def train(accel: Acceleration):
        return fit(_mlp(), data, settings=SETTINGS, seed=0, progress=False, accel=accel, **options)

    eager = train(Acceleration())
    with caplog.at_level(logging.WARNING, logger="bayesdistill"):
        uncompiled = train(STEP)
    (warning,) = _fallback_warnings(caplog)
    assert "compile 'step' cannot capture this training step" in warning
    assert "trained uncompiled (eager)" in warning
    assert re.search(reason, warning)
    assert compiled_calls == []
    assert _without_time(uncompiled.history) == _without_time(eager.history)
    for p, q in zip(
        eager.model.state_dict().values(), uncompiled.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q)


def test_capture_obstacles_name_their_reason():
    """The cases that need a GPU or several processes to reach through `fit`."""
    plain = LogitLoss(onehot_ce)
    free = {"own_step": None, "grad_scaler": False, "distributed": False}
    assert capture_obstacle(plain, **free) is None
    assert capture_obstacle(WeightedSum([LossTerm("onehot_ce")]), **free) is None
    fp16 = capture_obstacle(plain, **{**free, "grad_scaler": True})
    assert "precision 'fp16'" in fp16 and "GradScaler" in fp16 and "'bf16'" in fp16
    assert "DDP" in capture_obstacle(plain, **{**free, "distributed": True})
    svrg = SVRGCorrection(plain, [], lam=1.0, ramp_epochs=1.0)
    assert "SVRG correction" in capture_obstacle(svrg, **free)
    assert "fractional epoch" in capture_obstacle(svrg, **free)
    own = capture_obstacle(lambda model, inputs: plain(model, inputs), **free)
    assert "its objective (function) is not one the step is known to capture" in own
    online = WeightedSum(
        [LossTerm("onehot_ce"), LossTerm("w2_empirical", weight=0.1)],
        teacher_features=lambda x, index: x,
    )
    assert "teacher run in Python per step" in capture_obstacle(online, **free)

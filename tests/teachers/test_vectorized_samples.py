"""Vectorised weight samples (``samples_per_pass``): the same predictive as the loop, the
loop itself unchanged, and bad values refused."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from bayesdistill.config.runtime import RuntimeConfig
from bayesdistill.errors import ConfigError
from bayesdistill.models import create_model
from bayesdistill.seeding import generator, seeded
from bayesdistill.teachers import IVONTeacher, MeanFieldTeacher, to_mean_field
from bayesdistill.teachers.variational import sampling
from bayesdistill.train import Acceleration, predict_in_batches, vectorized_samples
from bayesdistill.train.accel import DEFAULT_ACCELERATION, samples_per_pass

from ..conftest import make_mlp

S = 5


def conv_ivon(seed: int = 0) -> IVONTeacher:
    """An IVON teacher on a small CIFAR ResNet (convolutions and BatchNorm buffers)."""
    with seeded(seed):
        net = create_model("resnet8", (3, 8, 8), 4)
        for module in net.modules():  # non-trivial running statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    std = {n: torch.full_like(p, 0.05) for n, p in net.named_parameters()}
    return IVONTeacher(net, std, num_samples=S, seed=3)


def images(n: int = 12) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=generator(11, 0))


def test_default_loop_is_the_sequential_sum_bit_for_bit():
    teacher = conv_ivon()
    x = images()
    net = teacher.network.eval()
    total = None
    with torch.no_grad():
        for s in range(S):
            probs = torch.softmax(functional_call(net, teacher.sample_parameters(s), (x,)), 1)
            total = probs if total is None else total + probs
    assert torch.equal(teacher.predict_proba(x), total / S)


@pytest.mark.parametrize("per_pass", [2, S, 64])
def test_ivon_vectorised_equals_the_loop(per_pass):
    teacher = conv_ivon()
    x = images()
    loop = teacher.predict_proba(x)
    with vectorized_samples(per_pass):
        fast = teacher.predict_proba(x)
    torch.testing.assert_close(fast, loop, rtol=0, atol=1e-6)
    assert not torch.equal(loop, conv_ivon(seed=1).predict_proba(x))  # the test can fail


@pytest.mark.parametrize("vectorised_first", [True, False])
def test_mfvi_vectorised_equals_the_loop_and_draws_the_same_weights(tiny_splits, vectorised_first):
    def teacher() -> MeanFieldTeacher:
        network = to_mean_field(make_mlp(tiny_splits, hidden=(8,)), init_std=0.3)
        return MeanFieldTeacher(network, num_samples=S, seed=2)

    x = tiny_splits.test.x
    a, b = teacher(), teacher()
    if vectorised_first:  # samples drawn by the vectorised path (a one-example pass)
        with vectorized_samples(3):
            fast = a.predict_proba(x)
        loop = b.predict_proba(x)
    else:  # samples drawn by the loop, then stacked
        loop = b.predict_proba(x)
        with vectorized_samples(3):
            fast = b.predict_proba(x)
    torch.testing.assert_close(fast, loop, rtol=0, atol=1e-6)
    expected = torch.zeros_like(loop)
    network = teacher().network
    with torch.no_grad():
        for s in range(S):
            with sampling(network, generator(2, s)):
                expected += torch.softmax(network(x), 1)
    torch.testing.assert_close(fast, expected / S, rtol=0, atol=1e-6)
    # after stacking, the loop reads the same weights (views of the stack)
    used = a if vectorised_first else b
    torch.testing.assert_close(used.predict_proba(x), loop, rtol=0, atol=1e-6)


def test_acceleration_option_reaches_the_teacher():
    teacher = conv_ivon()
    x = images(40)
    seen = []
    original = teacher._predict
    teacher._predict = lambda batch: seen.append(samples_per_pass()) or original(batch)
    loop = predict_in_batches(teacher, x, batch_size=16)
    fast = predict_in_batches(teacher, x, batch_size=16, accel=Acceleration(samples_per_pass=S))
    assert seen == [1, 1, 1, S, S, S]
    torch.testing.assert_close(fast, loop, rtol=0, atol=1e-6)
    assert samples_per_pass() == 1  # restored after the block


def test_nested_blocks_restore_the_outer_value():
    with vectorized_samples(4):
        with vectorized_samples(2):
            assert samples_per_pass() == 2
        assert samples_per_pass() == 4
    assert samples_per_pass() == 1


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_bad_values_are_refused_naming_them(bad):
    with pytest.raises(
        ConfigError, match=rf"samples_per_pass must be a whole number >= 1.*{bad!r}"
    ):
        Acceleration(samples_per_pass=bad)
    with pytest.raises(ConfigError, match="samples_per_pass"), vectorized_samples(bad):
        pass


def test_config_key_and_fingerprint_facts():
    assert RuntimeConfig(samples_per_pass=10).acceleration().samples_per_pass == 10
    with pytest.raises(ValueError, match="samples_per_pass"):
        RuntimeConfig(samples_per_pass=0)
    # the default adds nothing to run fingerprints (runs from before the option resume)
    assert "samples_per_pass" not in DEFAULT_ACCELERATION.facts()
    assert Acceleration(samples_per_pass=3).facts()["samples_per_pass"] == 3


def test_mfvi_convolutions_vectorise():
    with seeded(0):
        network = to_mean_field(create_model("resnet8", (3, 8, 8), 4), init_std=0.05)
    x = images()
    loop = MeanFieldTeacher(network, num_samples=S, seed=1).predict_proba(x)
    with vectorized_samples(S):
        fast = MeanFieldTeacher(network, num_samples=S, seed=1).predict_proba(x)
    torch.testing.assert_close(fast, loop, rtol=0, atol=1e-6)


def test_default_acceleration_keeps_an_enclosing_block():
    teacher = conv_ivon()
    seen = []
    original = teacher._predict
    teacher._predict = lambda batch: seen.append(samples_per_pass()) or original(batch)
    with vectorized_samples(3):
        predict_in_batches(teacher, images(8))  # default Acceleration: the block holds
        predict_in_batches(teacher, images(8), accel=Acceleration(samples_per_pass=2))
    assert seen == [3, 2]


def test_mfvi_restacks_when_the_number_of_samples_changes(tiny_splits):
    network = to_mean_field(make_mlp(tiny_splits, hidden=(8,)), init_std=0.3)
    x = tiny_splits.test.x
    teacher = MeanFieldTeacher(network, num_samples=S, seed=2)
    with vectorized_samples(S):
        teacher.predict_proba(x)
    for fewer_or_more in (3, 7):
        teacher.num_samples = fewer_or_more
        with vectorized_samples(S):
            fast = teacher.predict_proba(x)
        loop = MeanFieldTeacher(network, num_samples=fewer_or_more, seed=2).predict_proba(x)
        torch.testing.assert_close(fast, loop, rtol=0, atol=1e-6)


def test_the_runner_asks_the_teacher_with_the_configured_option(tmp_path, monkeypatch):
    """Every prediction of a teacher run (test/val metrics, the exact cache of its training
    predictions) goes through runtime.samples_per_pass."""
    from bayesdistill.config import load_config
    from bayesdistill.runner import run_teachers

    seen = []
    original = IVONTeacher._predict
    monkeypatch.setattr(
        IVONTeacher,
        "_predict",
        lambda self, x: seen.append(samples_per_pass()) or original(self, x),
    )
    config = load_config(
        {
            "data": {"name": "synthetic", "num_samples": 240, "num_classes": 3, "dim": 4},
            "teacher": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1}},
            "teachers": [{"name": "ivon", "num_samples": 3}],
            "student": {"model": {"name": "linear"}, "train": {"epochs": 1}, "losses": ["kd"]},
            "seeds": [0],
            "device": "cpu",
        },
        ["runtime.samples_per_pass=3"],
    )
    run_teachers(config, tmp_path / "run", progress=False)
    assert len(seen) >= 3 and set(seen) == {3}

"""Self-distillation: soft CE on the mixed label, CE at λ = 0, and the linear ramp of λ."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bayesdistill.errors import ConfigError
from bayesdistill.losses import LOSSES, self_distill, soft_ce

Z = torch.tensor(
    [[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 3.0, -2.0], [1.0, 1.5, -0.5, 0.3]], dtype=torch.float64
)
P = torch.tensor(
    [[0.6, 0.1, 0.2, 0.1], [0.2, 0.1, 0.6, 0.1], [0.05, 0.7, 0.05, 0.2]], dtype=torch.float64
)
Y = torch.tensor([0, 2, 3])


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _by_hand(lam: float, temperature: float = 1.0) -> float:
    """(1 − λ)·CE(z, y) + λ·CE(z, q), written as the two terms."""
    log_s = _log_softmax(Z.numpy())
    q = P.numpy() ** (1 / temperature)
    q /= q.sum(1, keepdims=True)
    ce_labels = -log_s[np.arange(3), Y.numpy()].mean()
    ce_teacher = -(q * log_s).sum(1).mean()
    return (1 - lam) * ce_labels + lam * ce_teacher


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.7, 1.0])
def test_is_the_two_term_objective(lam):
    assert self_distill(Z, P, Y, lam=lam).item() == pytest.approx(_by_hand(lam), rel=1e-12)


def test_is_soft_ce_on_the_mixed_label():
    mixed = 0.6 * F.one_hot(Y, 4).double() + 0.4 * P
    assert self_distill(Z, P, Y, lam=0.4).item() == pytest.approx(soft_ce(Z, mixed, Y).item())


def test_lambda_zero_is_cross_entropy_and_needs_no_teacher():
    ce = F.cross_entropy(Z, Y)
    assert self_distill(Z, P, Y, lam=0.0).item() == ce.item()
    assert self_distill(Z, None, Y, lam=0.0).item() == ce.item()


def test_temperature_tempers_the_teacher_target_only():
    value = self_distill(Z, P, Y, lam=0.5, temperature=3.0).item()
    assert value == pytest.approx(_by_hand(0.5, temperature=3.0), rel=1e-12)
    assert value != pytest.approx(_by_hand(0.5))


@pytest.mark.parametrize(("epoch", "fraction"), [(0.0, 0.0), (2.5, 0.25), (10.0, 1.0), (40.0, 1.0)])
def test_linear_ramp(epoch, fraction):
    value = self_distill(Z, P, Y, lam=0.8, ramp_epochs=10.0, epoch=epoch).item()
    assert value == pytest.approx(_by_hand(0.8 * fraction), rel=1e-12)


def test_without_an_epoch_the_ramp_is_done():
    assert self_distill(Z, P, Y, lam=0.8, ramp_epochs=10.0).item() == pytest.approx(_by_hand(0.8))
    assert self_distill(Z, P, Y, lam=0.8, epoch=0.0).item() == pytest.approx(_by_hand(0.8))


def test_epoch_is_a_runtime_input_not_an_option():
    entry = LOSSES.entry("self_distill")
    assert entry.tags["runtime"] == ("epoch",)
    assert [o.name for o in entry.options] == ["lam", "ramp_epochs", "temperature"]


def test_float32_logits_with_float64_teacher():
    value = self_distill(Z.float(), P, Y, lam=0.5)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(_by_hand(0.5), rel=1e-6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lam": 1.5}, r"lam must lie in \[0, 1\], got 1.5"),
        ({"lam": -0.1}, r"lam must lie in \[0, 1\], got -0.1"),
        ({"ramp_epochs": -1.0}, r"ramp_epochs must lie in \[0, inf\) \(non-negative\), got -1.0"),
        ({"temperature": 0.0}, r"temperature must lie in \(0, inf\) \(positive\), got 0.0"),
    ],
)
def test_rejects_bad_hyperparameters(options, message):
    with pytest.raises(ConfigError, match=message):
        self_distill(Z, P, Y, **options)

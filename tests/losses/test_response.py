"""Each loss against a hand computation, and the properties theory promises."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayesdistill.errors import ConfigError
from bayesdistill.losses import LOSSES, kd, needs_teacher, onehot_ce, soft_ce, temper_probs

Z = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], dtype=torch.float64)
P = torch.tensor([[0.6, 0.1, 0.3], [0.2, 0.2, 0.6]], dtype=torch.float64)
Y = torch.tensor([0, 2])


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def test_onehot_ce_by_hand():
    logp = _log_softmax(Z.numpy())
    assert onehot_ce(Z, None, Y).item() == pytest.approx(-(logp[0, 0] + logp[1, 2]) / 2)


def test_soft_ce_by_hand():
    logp = _log_softmax(Z.numpy())
    assert soft_ce(Z, P, Y).item() == pytest.approx(-(P.numpy() * logp).sum(1).mean())


@pytest.mark.parametrize(("alpha", "temperature"), [(0.5, 4.0), (0.9, 2.0), (1.0, 1.0), (0.3, 0.5)])
def test_kd_by_hand(alpha, temperature):
    z, p = Z.numpy(), P.numpy()
    ce = -(_log_softmax(z)[[0, 1], [0, 2]]).mean()
    q = p ** (1 / temperature)
    q /= q.sum(1, keepdims=True)
    kl = (q * (np.log(q) - _log_softmax(z / temperature))).sum(1).mean()
    expected = (1 - alpha) * ce + alpha * temperature**2 * kl
    assert kd(Z, P, Y, alpha=alpha, temperature=temperature).item() == pytest.approx(expected)


def test_kd_tends_to_ce_as_alpha_goes_to_zero():
    ce = onehot_ce(Z, None, Y).item()
    gaps = [abs(kd(Z, P, Y, alpha=a, temperature=4.0).item() - ce) for a in (1e-1, 1e-3, 1e-6)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-5
    assert kd(Z, P, Y, alpha=0.0, temperature=4.0).item() == pytest.approx(ce)


def test_kd_at_t1_alpha1_has_soft_ce_gradients():
    z1 = Z.clone().requires_grad_(True)
    z2 = Z.clone().requires_grad_(True)
    kd(z1, P, Y, alpha=1.0, temperature=1.0).backward()
    soft_ce(z2, P, Y).backward()
    assert torch.allclose(z1.grad, z2.grad)


def test_soft_ce_is_minimised_at_the_target():
    z_star = P.log().clone().requires_grad_(True)
    value = soft_ce(z_star, P, Y)
    value.backward()
    # value = entropy of the target, gradient (softmax(z) − p)/B = 0
    entropy = -(P * P.log()).sum(1).mean()
    assert value.item() == pytest.approx(entropy.item())
    assert z_star.grad.abs().max().item() < 1e-12
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        moved = P.log() + 0.3 * torch.randn(P.shape, generator=gen, dtype=torch.float64)
        assert soft_ce(moved, P, Y).item() > value.item()


def test_temper_probs_equals_softmax_of_scaled_logits():
    logits = torch.tensor([[1.0, 2.0, -3.0]], dtype=torch.float64)
    p = torch.softmax(logits, 1)
    assert torch.allclose(temper_probs(p, 3.0), torch.softmax(logits / 3.0, 1))
    assert torch.equal(temper_probs(p, 1.0), p)


@pytest.mark.parametrize(
    "name", [n for n in LOSSES.names() if not LOSSES.entry(n).tags.get("binary")]
)
def test_losses_that_need_a_teacher_say_so(name):
    if needs_teacher(name):
        with pytest.raises(ConfigError, match="needs teacher probabilities"):
            LOSSES.get(name)(Z, None, Y)
    else:
        assert math.isfinite(LOSSES.get(name)(Z, None, Y).item())


def test_kd_rejects_bad_hyperparameters():
    with pytest.raises(ConfigError, match="alpha must lie in"):
        kd(Z, P, Y, alpha=1.5)
    with pytest.raises(ConfigError, match=r"temperature must lie in \(0, inf\) \(positive\)"):
        kd(Z, P, Y, temperature=0.0)

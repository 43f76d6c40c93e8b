"""WTTM against a hand computation of the power transform and the U weighting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bayesdistill.errors import ConfigError
from bayesdistill.losses import kl_to_student, wttm

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


def _by_hand(z: np.ndarray, p: np.ndarray, y: np.ndarray, gamma: float, beta: float) -> float:
    log_s = _log_softmax(z)
    total = 0.0
    for i in range(len(y)):
        powered = p[i] ** gamma
        u = powered.sum()
        p_hat = powered / u
        present = p_hat > 0  # 0·log 0 = 0
        kl = (p_hat[present] * (np.log(p_hat[present]) - log_s[i, present])).sum()
        total += -log_s[i, y[i]] + beta * u * kl
    return total / len(y)


@pytest.mark.parametrize(("gamma", "beta"), [(0.1, 4.0), (0.5, 1.0), (2.0, 0.3)])
def test_by_hand(gamma, beta):
    expected = _by_hand(Z.numpy(), P.numpy(), Y.numpy(), gamma, beta)
    assert wttm(Z, P, Y, gamma=gamma, beta=beta).item() == pytest.approx(expected, rel=1e-10)


def test_defaults_are_gamma_0_1_beta_4():
    expected = _by_hand(Z.numpy(), P.numpy(), Y.numpy(), 0.1, 4.0)
    assert wttm(Z, P, Y).item() == pytest.approx(expected, rel=1e-10)


def test_exact_zeros_stay_zero_after_the_power_transform():
    p = torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    z, y = Z[:2], Y[:2]
    expected = _by_hand(z.numpy(), p.numpy(), y.numpy(), 0.1, 4.0)
    assert wttm(z, p, y).item() == pytest.approx(expected, rel=1e-10)
    # a one-hot teacher: U = 1 and p̂ = p, whatever γ
    one_hot = p[1:]
    reference = F.cross_entropy(z[1:], y[1:]) + 4.0 * kl_to_student(one_hot, z[1:])
    assert wttm(z[1:], one_hot, y[1:], gamma=0.1).item() == pytest.approx(reference.item())


def test_gamma_one_is_ce_plus_kl():
    reference = F.cross_entropy(Z, Y) + 2.5 * kl_to_student(P, Z)
    assert wttm(Z, P, Y, gamma=1.0, beta=2.5).item() == pytest.approx(reference.item(), rel=1e-10)


def test_a_uniform_teacher_weighs_c_to_the_one_minus_gamma():
    """p̂ = p for a uniform teacher, and U = C·C^(−γ): uncertain examples weigh more."""
    uniform = torch.full((1, 4), 0.25, dtype=torch.float64)
    z, y = Z[:1], Y[:1]
    term = wttm(z, uniform, y, gamma=0.1, beta=1.0) - F.cross_entropy(z, y)
    expected = 4**0.9 * kl_to_student(uniform, z)
    assert term.item() == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gamma": 0.0}, r"gamma must lie in \(0, inf\) \(positive\), got 0.0"),
        ({"gamma": -0.1}, r"gamma must lie in \(0, inf\) \(positive\), got -0.1"),
        ({"beta": -4.0}, r"beta must lie in \[0, inf\) \(non-negative\), got -4.0"),
    ],
)
def test_rejects_bad_hyperparameters(options, message):
    with pytest.raises(ConfigError, match=message):
        wttm(Z, P, Y, **options)

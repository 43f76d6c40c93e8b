"""DIST against Pearson correlations computed by numpy.corrcoef."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bayesdistill.errors import ConfigError
from bayesdistill.losses import dist, dist_terms, pearson_rows
from bayesdistill.losses.dist import PEARSON_EPS

Z = torch.tensor(
    [[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 3.0, -2.0], [1.0, 1.5, -0.5, 0.3]], dtype=torch.float64
)
P = torch.tensor(
    [[0.6, 0.1, 0.2, 0.1], [0.2, 0.1, 0.6, 0.1], [0.05, 0.7, 0.05, 0.2]], dtype=torch.float64
)
Y = torch.tensor([0, 2, 3])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """numpy.corrcoef, shrunk as the official code does by the 1e-8 added to ‖a‖·‖b‖."""
    norms = np.linalg.norm(a - a.mean()) * np.linalg.norm(b - b.mean())
    return np.corrcoef(a, b)[0, 1] * norms / (norms + PEARSON_EPS)


def _terms_by_hand(temperature: float, z: torch.Tensor = Z) -> tuple[float, float]:
    student = _softmax(z.numpy() / temperature)
    teacher = P.numpy() ** (1 / temperature)
    teacher /= teacher.sum(1, keepdims=True)
    rows = [_pearson(student[i], teacher[i]) for i in range(student.shape[0])]
    cols = [_pearson(student[:, c], teacher[:, c]) for c in range(student.shape[1])]
    return 1 - np.mean(rows), 1 - np.mean(cols)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_terms_match_numpy_corrcoef(temperature):
    inter, intra = dist_terms(Z, P, temperature=temperature)
    expected_inter, expected_intra = _terms_by_hand(temperature)
    assert inter.item() == pytest.approx(expected_inter, rel=1e-10)
    assert intra.item() == pytest.approx(expected_intra, rel=1e-10)
    assert expected_inter > 1e-3 and expected_intra > 1e-3


def test_loss_is_ce_plus_weighted_kd_term():
    inter, intra = _terms_by_hand(4.0)
    ce = F.cross_entropy(Z, Y).item()
    expected = ce + 2.0 * 16.0 * (0.5 * inter + 3.0 * intra)
    value = dist(Z, P, Y, beta=0.5, gamma=3.0, temperature=4.0, kd_weight=2.0)
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_defaults_are_the_cifar_recipe():
    inter, intra = _terms_by_hand(4.0)
    expected = F.cross_entropy(Z, Y).item() + 2.0 * 16.0 * (inter + intra)
    assert dist(Z, P, Y).item() == pytest.approx(expected, rel=1e-10)


def test_perfect_relations_leave_only_cross_entropy():
    """A student whose tempered probabilities equal the teacher's: every correlation is 1."""
    inter, intra = dist_terms(P.log(), P, temperature=4.0)
    expected_inter, expected_intra = _terms_by_hand(4.0, P.log())
    assert inter.item() == pytest.approx(expected_inter, rel=1e-6)
    assert intra.item() == pytest.approx(expected_intra, rel=1e-6)
    assert 0 < inter.item() < 1e-5 and 0 < intra.item() < 1e-5  # 1 − ρ only through the 1e-8


def test_pearson_is_zero_for_a_constant_row():
    a = torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.5]], dtype=torch.float64)
    rho = pearson_rows(a, b)
    assert rho[0].item() == 0.0
    assert rho[1].item() == pytest.approx(np.corrcoef(a[1], b[1])[0, 1], rel=1e-7)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"beta": -1.0}, r"beta must lie in \[0, inf\) \(non-negative\), got -1.0"),
        ({"gamma": -1.0}, r"gamma must lie in \[0, inf\) \(non-negative\), got -1.0"),
        ({"temperature": -4.0}, r"temperature must lie in \(0, inf\) \(positive\), got -4.0"),
        ({"kd_weight": -2.0}, r"kd_weight must lie in \[0, inf\) \(non-negative\), got -2.0"),
    ],
)
def test_rejects_bad_hyperparameters(options, message):
    with pytest.raises(ConfigError, match=message):
        dist(Z, P, Y, **options)

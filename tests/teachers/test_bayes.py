"""Exact and noisy Bayes teachers: noise moments and determinism per input."""

from __future__ import annotations

import pytest
import torch

from bayesdistill.data import GaussianMixture, Standardizer
from bayesdistill.errors import ConfigError
from bayesdistill.teachers import ExactBayesTeacher, NoisyBayesTeacher


@pytest.fixture(scope="module")
def mixture_and_points():
    gen = torch.Generator().manual_seed(0)
    mixture = GaussianMixture.random(3, 2, (0.0, 1.0), 0.5, gen)
    ident = Standardizer(torch.zeros(2), torch.ones(2))
    # one point repeated many times with tiny jitter: same p*, distinct inputs
    base = torch.tensor([[0.4, 0.6]])
    x = base + 1e-6 * torch.randn(20_000, 2, generator=gen)
    return mixture, ident, x


def test_dirichlet_noise_is_unbiased_with_the_predicted_variance(mixture_and_points):
    mixture, ident, x = mixture_and_points
    a = 5.0
    teacher = NoisyBayesTeacher(mixture, ident, noise="dirichlet", level=a, seed=0)
    noisy = teacher.predict_proba(x).double()
    p = ExactBayesTeacher(mixture, ident).predict_proba(x).double().mean(0)
    assert torch.allclose(noisy.mean(0), p, atol=0.01)
    assert torch.allclose(noisy.var(0), p * (1 - p) / (a + 1), rtol=0.08)


def test_additive_noise_has_variance_nu(mixture_and_points):
    mixture, ident, x = mixture_and_points
    nu = 1e-4  # small enough that clipping at zero never happens here
    noisy = NoisyBayesTeacher(mixture, ident, noise="additive", level=nu, seed=0).predict_proba(x)
    exact = ExactBayesTeacher(mixture, ident).predict_proba(x)
    residual = (noisy - exact).double()
    assert residual.mean(0).abs().max() < 3e-4
    # renormalisation divides by 1 + Σε, which shrinks the variance by ≈ (1 − 1/K)… to first
    # order the per-class variance is ν·(1 − 2p_k + K p_k²)
    p = exact.double().mean(0)
    predicted = nu * (1 - 2 * p + 3 * p.square())
    assert torch.allclose(residual.var(0), predicted, rtol=0.08)


def test_noise_is_a_fixed_function_of_the_input(mixture_and_points):
    mixture, ident, x = mixture_and_points
    teacher = NoisyBayesTeacher(mixture, ident, noise="dirichlet", level=1.0, seed=3)
    a = teacher.predict_proba(x[:50])
    b = teacher.predict_proba(torch.cat([x[25:50], x[:25]]))
    assert torch.equal(a, torch.cat([b[25:], b[:25]]))
    other_seed = NoisyBayesTeacher(mixture, ident, noise="dirichlet", level=1.0, seed=4)
    assert not torch.equal(a, other_seed.predict_proba(x[:50]))


def test_bad_levels():
    mixture = GaussianMixture.random(2, 1, (0.0, 1.0), 1.0, torch.Generator().manual_seed(0))
    ident = Standardizer(torch.zeros(1), torch.ones(1))
    with pytest.raises(ConfigError, match="concentration"):
        NoisyBayesTeacher(mixture, ident, noise="dirichlet", level=0.0)
    with pytest.raises(ConfigError, match="variance"):
        NoisyBayesTeacher(mixture, ident, noise="additive", level=-1.0)

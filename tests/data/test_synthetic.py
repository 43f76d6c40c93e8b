"""The Gaussian mixture's exact BCPs against Bayes' rule computed independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from bayesdistill.data import GaussianMixture, gaussian_mixture, make_splits
from bayesdistill.teachers import ExactBayesTeacher


def test_bcp_matches_bayes_rule_with_scipy_densities():
    raw = gaussian_mixture(num_classes=4, dim=3, variance=2.5, num_samples=200, seed=3)
    mixture = GaussianMixture.from_state(raw.bayes_state["mixture"])
    x = raw.x.double().numpy()
    # Bayes' rule: p(k|x) = π_k N(x; μ_k, s²I) / Σ_j π_j N(x; μ_j, s²I)
    joint = np.stack(
        [
            0.25 * multivariate_normal(mean=mixture.means[k].numpy(), cov=2.5 * np.eye(3)).pdf(x)
            for k in range(4)
        ],
        axis=1,
    )
    expected = joint / joint.sum(1, keepdims=True)
    np.testing.assert_allclose(raw.bcp.double().numpy(), expected, atol=1e-6)


def test_means_drawn_from_the_given_values_and_labels_balanced():
    raw = gaussian_mixture(num_classes=5, dim=30, num_samples=20_000, seed=0)
    means = raw.bayes_state["mixture"]["means"]
    assert set(means.flatten().tolist()) <= {4.0, 5.0, 6.0}
    counts = torch.bincount(raw.y, minlength=5).double() / 20_000
    assert torch.allclose(counts, torch.full((5,), 0.2, dtype=torch.float64), atol=0.02)
    # class-conditional sample variance is s² = 2.5
    resid = raw.x.double() - means[raw.y]
    assert resid.var().item() == pytest.approx(2.5, rel=0.02)


def test_linear_parameters_reproduce_the_posterior():
    raw = gaussian_mixture(num_classes=5, dim=30, num_samples=500, seed=2)
    mixture = GaussianMixture.from_state(raw.bayes_state["mixture"])
    weight, bias = mixture.linear_parameters()
    x = raw.x.double()
    assert torch.allclose(torch.softmax(x @ weight.T + bias, 1), mixture.posterior(x), atol=1e-10)


def test_exact_teacher_inverts_standardisation():
    raw = gaussian_mixture(num_classes=3, dim=4, num_samples=300, seed=1)
    splits = make_splits(raw, val_fraction=0.2, test_fraction=0.2, seed=0)
    mixture = GaussianMixture.from_state(splits.bayes_state["mixture"])
    teacher = ExactBayesTeacher(mixture, splits.standardizer)
    assert torch.allclose(teacher.predict_proba(splits.test.x), splits.test.bcp, atol=1e-5)
    # standardised inputs really are standardised with train statistics
    assert splits.train.x.mean(0).abs().max() < 1e-5
    assert (splits.train.x.std(0) - 1).abs().max() < 1e-5


def test_seeded_and_reproducible():
    a = gaussian_mixture(num_classes=3, dim=4, num_samples=50, seed=7)
    b = gaussian_mixture(num_classes=3, dim=4, num_samples=50, seed=7)
    c = gaussian_mixture(num_classes=3, dim=4, num_samples=50, seed=8)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)

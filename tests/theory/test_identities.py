"""Self-distillation gradient identity and the exact variance of empirical risks."""

from __future__ import annotations

import itertools

import torch

from bayesdistill.theory.common import mixture_problem, one_hot
from bayesdistill.theory.risk_variance import exact_variances
from bayesdistill.theory.self_distill import identity_error, mixed_loss


def test_self_distillation_gradient_identity_holds_to_float_precision():
    problem = mixture_problem(0, 3, 4, (4.0, 5.0, 6.0), 2.5)
    assert identity_error(problem, seed=0) < 1e-13


def test_self_distillation_identity_fails_for_a_nonlinear_model():
    # sanity check that the identity is specific to linear models: with a tanh feature map
    # the mixed gradient is not ∇f(θ) − λ∇f(θ_T) evaluated at the teacher's own features
    problem = mixture_problem(0, 3, 4, (4.0, 5.0, 6.0), 2.5)
    f, y, _ = problem.sample(64, torch.Generator().manual_seed(0))
    theta = torch.randn(
        problem.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    ).requires_grad_()
    teacher = torch.randn(
        problem.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    (auto,) = torch.autograd.grad(mixed_loss(theta, teacher, torch.tanh(f), y, 0.5), theta)
    e = one_hot(y, 3)
    formula = problem.gradients(theta.detach(), f, e).mean(0) - 0.5 * problem.gradients(
        teacher, f, e
    ).mean(0)
    assert (auto - formula).abs().max() > 1e-3


def test_exact_variances_on_a_small_discrete_problem():
    px = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    pyx = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.25, 0.75]], dtype=torch.float64)
    loss = torch.tensor([[0.1, 2.3], [0.9, 0.5], [1.4, 0.3]], dtype=torch.float64)
    n = 2
    risk, var_onehot, var_bayes = exact_variances(px, pyx, loss, n)
    # enumerate every training set of size 2 of (x, y) pairs, with its probability
    pairs = [(x, y, float(px[x] * pyx[x, y])) for x in range(3) for y in range(2)]
    mean_r = mean_r2 = mean_b = mean_b2 = 0.0
    for (x1, y1, w1), (x2, y2, w2) in itertools.product(pairs, repeat=2):
        w = w1 * w2
        r = (float(loss[x1, y1]) + float(loss[x2, y2])) / 2
        b = (float(pyx[x1] @ loss[x1]) + float(pyx[x2] @ loss[x2])) / 2
        mean_r += w * r
        mean_r2 += w * r * r
        mean_b += w * b
        mean_b2 += w * b * b
    assert abs(mean_r - risk) < 1e-12 and abs(mean_b - risk) < 1e-12  # both unbiased
    assert abs((mean_r2 - mean_r**2) - var_onehot) < 1e-12
    assert abs((mean_b2 - mean_b**2) - var_bayes) < 1e-12
    assert var_bayes <= var_onehot
    # the gap is the expected conditional variance (law of total variance)
    cond = (pyx * loss.square()).sum(1) - (pyx * loss).sum(1).square()
    assert abs((var_onehot - var_bayes) - float(px @ cond) / n) < 1e-12

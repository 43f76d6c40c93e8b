"""θ*, per-sample gradients and the closed forms of σ* on the linear-softmax problem."""

from __future__ import annotations

import numpy as np
import torch

from bayesdistill.data.synthetic import GaussianMixture
from bayesdistill.theory.common import dirichlet, mixture_problem, one_hot
from bayesdistill.theory.gradients import (
    gradient_noise,
    network_sample_gradients,
    per_sample_gradients,
)
from bayesdistill.theory.linear_softmax import LinearSoftmaxProblem
from bayesdistill.theory.noise import _loss


def _problem(seed: int = 0) -> LinearSoftmaxProblem:
    return mixture_problem(seed, num_classes=4, dim=6, mean_values=(4.0, 5.0, 6.0), variance=2.5)


def test_theta_star_reproduces_bayes_rule_exactly():
    problem = _problem()
    gen = torch.Generator().manual_seed(1)
    x, _ = problem.mixture.sample(500, gen)
    # Bayes' rule computed here from the Gaussian densities, independently of the library
    m = problem.mixture
    log_joint = torch.stack(
        [
            torch.distributions.MultivariateNormal(
                m.means[k], m.variance * torch.eye(m.dim, dtype=torch.float64)
            ).log_prob(x)
            + m.priors[k].log()
            for k in range(m.num_classes)
        ],
        dim=1,
    )
    bayes = torch.softmax(log_joint, dim=1)
    probs = problem.probs(problem.theta_star(), problem.features(x))
    assert torch.allclose(probs, bayes, atol=1e-12, rtol=0)


def test_population_standardisation_matches_a_large_sample():
    problem = _problem()
    x, _ = problem.mixture.sample(400_000, torch.Generator().manual_seed(2))
    assert torch.allclose(x.mean(0), problem.mean, atol=0.02)
    assert torch.allclose(x.std(0), problem.scale, rtol=0.01)


def test_per_sample_gradient_vanishes_at_theta_star_for_exact_bcps():
    problem = _problem()
    f, _, p = problem.sample(2000, torch.Generator().manual_seed(3))
    g = per_sample_gradients(_loss, problem.theta_star(), f, p)
    assert g.abs().max() < 1e-12
    # and not for one-hot labels
    _, y, _ = problem.sample(2000, torch.Generator().manual_seed(3))
    assert per_sample_gradients(_loss, problem.theta_star(), f, one_hot(y, 4)).abs().max() > 0.1


def test_closed_form_gradients_equal_torch_func_gradients():
    problem = _problem()
    gen = torch.Generator().manual_seed(4)
    f, _, p = problem.sample(64, gen)
    theta = torch.randn(problem.shape, generator=gen, dtype=torch.float64)
    q = p + 0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64)  # need not sum to 1
    assert torch.allclose(
        per_sample_gradients(_loss, theta, f, q), problem.gradients(theta, f, q), atol=1e-13
    )


def test_monte_carlo_sigma_star_agrees_with_closed_forms_within_standard_error():
    problem = _problem()
    theta = problem.theta_star()
    f, y, p = problem.sample(20_000, torch.Generator().manual_seed(5))
    cf, _, cp = problem.sample(200_000, torch.Generator().manual_seed(6))
    a, b = problem.noise_terms(cf, cp)
    closed_se_onehot = float(a.std() / len(a) ** 0.5)
    cases = [
        (one_hot(y, 4), float(a.mean()), closed_se_onehot),
        (
            p
            + 0.05
            * torch.randn(p.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64),
            0.05**2 * float(b.mean()),
            0.0,
        ),
        (
            dirichlet(p, 2.0, torch.Generator().manual_seed(8)),
            float(a.mean()) / 3.0,
            closed_se_onehot / 3,
        ),
    ]
    for targets, closed, closed_se in cases:
        sq = problem.gradients(theta, f, targets).square().sum((1, 2))
        mc, se = float(sq.mean()), float(sq.std() / len(sq) ** 0.5)
        assert abs(mc - closed) < 4 * (se**2 + closed_se**2) ** 0.5, (mc, closed, se)


def test_hessian_matches_autograd_hessian_of_the_risk():
    problem = _problem()
    f, _, p = problem.sample(300, torch.Generator().manual_seed(9))
    theta = problem.theta_star()
    auto = torch.autograd.functional.hessian(lambda t: problem.risk(t, f, p), theta)
    size = theta.numel()
    assert torch.allclose(problem.hessian(theta, f), auto.reshape(size, size), atol=1e-12)


def test_network_per_sample_gradients_and_noise():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x = torch.randn(10, 3)
    q = torch.softmax(torch.randn(10, 2), 1)
    g = network_sample_gradients(net, x, q, chunk=3)
    for i in (0, 7):
        net.zero_grad()
        loss = -(q[i] * torch.log_softmax(net(x[i : i + 1]), 1)).sum()
        loss.backward()
        expected = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
        assert torch.allclose(g[i], expected, atol=1e-6)
    noise, _ = gradient_noise(g)
    assert abs(noise - (g - g.mean(0)).square().sum(1).mean().item()) < 1e-6


def test_gaussian_mixture_linear_parameters_unchanged():
    m = GaussianMixture.random(3, 4, (4.0, 6.0), 1.5, torch.Generator().manual_seed(0))
    x, _ = m.sample(10, torch.Generator().manual_seed(1))
    w, b = m.linear_parameters()
    assert torch.allclose(torch.softmax(x @ w.T + b, 1), m.posterior(x), atol=1e-12)


def test_sgd_records_every_requested_step_even_when_repeated():
    """A record list with repeats (``linspace`` over few steps) fills every row, each with
    the distance at its own step: the same as a record of distinct steps."""
    from bayesdistill.seeding import generator
    from bayesdistill.theory.sgd import run_sgd, target_gradient

    problem = _problem()
    start = torch.zeros(problem.shape, dtype=torch.float64)
    gradient = target_gradient(problem, "onehot")

    def run(record):
        return run_sgd(problem, start, [0.1, 0.5], 3, 6, gradient, generator(0, 1), record)

    repeated = run([0, 0, 1, 3, 3, 6])
    distinct = run([0, 1, 3, 6])
    assert np.isfinite(repeated).all()
    np.testing.assert_array_equal(repeated[[0, 2, 3, 5]], distinct)
    np.testing.assert_array_equal(repeated[0], repeated[1])
    np.testing.assert_array_equal(repeated[3], repeated[4])

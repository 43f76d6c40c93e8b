"""Vectorised plain SGD on the linear-softmax problem: many runs, one sample per step each.

Every run draws a *fresh* sample from the mixture at every step (streaming SGD on the
population risk), so θ* is exactly the minimiser being approached and the distance
E‖θ_t − θ*‖² has no finite-sample bias. Runs are stacked along a leading dimension and
updated together; the expectation is the mean over repeated runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

import numpy as np
import torch
from torch import Tensor

from bayesdistill.theory.common import dirichlet, one_hot
from bayesdistill.theory.linear_softmax import LinearSoftmaxProblem

GradientFn = Callable[[Tensor, Tensor, Tensor, Tensor, torch.Generator], Tensor]
"""(θ per run (n, K−1, d+1), features (n, d+1), labels (n,), p* (n, K), gen) → gradients."""


class Target(str, Enum):
    """What the student is trained against."""

    ONEHOT = "onehot"
    """The sampled label y ~ p*(·|x) as a one-hot vector."""
    EXACT = "exact"
    """The exact Bayes class probabilities p*(·|x)."""
    ADDITIVE = "additive"
    """p* + ε with ε_k ~ N(0, ν) independent (not renormalised)."""
    DIRICHLET = "dirichlet"
    """q ~ Dirichlet(a·p*)."""


def target_gradient(
    problem: LinearSoftmaxProblem, target: Target | str, level: float = 0.0
) -> GradientFn:
    """The per-sample cross-entropy gradient against ``target`` (ν or a from ``level``)."""
    target = Target(target)

    def gradient(theta: Tensor, f: Tensor, y: Tensor, p: Tensor, gen: torch.Generator) -> Tensor:
        if target is Target.ONEHOT:
            q = one_hot(y, problem.num_classes)
        elif target is Target.EXACT:
            q = p
        elif target is Target.ADDITIVE:
            q = p + level**0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype)
        else:
            q = dirichlet(p, level, gen)
        return problem.gradients(theta, f, q)

    return gradient


def log_spaced_steps(steps: int, points: int) -> list[int]:
    """About ``points`` distinct step counts from 0 to ``steps``, log-spaced after 1."""
    grid = np.unique(np.round(np.geomspace(1, steps, points)).astype(int))
    return [0, *grid.tolist()]


def run_sgd(
    problem: LinearSoftmaxProblem,
    theta0: Tensor,
    step_sizes: Sequence[float],
    repeats: int,
    steps: int,
    gradient: GradientFn,
    gen: torch.Generator,
    record: Sequence[int],
) -> np.ndarray:
    """E‖θ_t − θ*‖² at the steps ``record``: array ``(len(record), len(step_sizes), repeats)``.

    All ``len(step_sizes) · repeats`` runs start at ``theta0`` and take ``steps`` plain SGD
    steps θ ← θ − α g with one fresh sample each.
    """
    theta_star = problem.theta_star()
    alphas = torch.tensor(step_sizes, dtype=torch.float64).repeat_interleave(repeats)
    theta = theta0.to(torch.float64).expand(len(alphas), *theta0.shape).clone()
    rows: dict[int, list[int]] = {}  # step → the rows of ``record`` that ask for it
    for row, t in enumerate(record):
        if not 0 <= t <= steps:
            raise ValueError(f"record step {t} lies outside [0, {steps}]")
        rows.setdefault(int(t), []).append(row)
    out = np.empty((len(record), len(step_sizes), repeats))
    for t in range(steps + 1):
        if t in rows:
            dist = (theta - theta_star).square().sum((1, 2))
            out[rows[t]] = dist.reshape(len(step_sizes), repeats).numpy()
        if t == steps:
            break
        f, y, p = problem.sample(len(alphas), gen)
        theta -= alphas[:, None, None] * gradient(theta, f, y, p, gen)
    return out

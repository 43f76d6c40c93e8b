"""Pieces shared by the theory experiments: the mixture of a seed, plotting helpers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from bayesdistill.data.synthetic import GaussianMixture
from bayesdistill.seeding import generator
from bayesdistill.theory.linear_softmax import LinearSoftmaxProblem

MIXTURE_STREAM = 11
"""Seed stream of the mixture's means (the samples use other streams)."""


def mixture_problem(
    seed: int, num_classes: int, dim: int, mean_values: Sequence[float], variance: float
) -> LinearSoftmaxProblem:
    """The linear-softmax problem of the mixture whose means are drawn from ``seed``."""
    mixture = GaussianMixture.random(
        num_classes, dim, mean_values, variance, generator(seed, MIXTURE_STREAM)
    )
    return LinearSoftmaxProblem.from_mixture(mixture)


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    return torch.nn.functional.one_hot(labels, num_classes).to(torch.float64)


def dirichlet(probs: Tensor, concentration: float, gen: torch.Generator) -> Tensor:
    """Rows q ~ Dirichlet(a·p) (p clipped at 1e-12), drawn with ``gen`` via Gamma variates."""
    alpha = (concentration * probs.clamp_min(1e-12)).numpy()
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=gen)))
    g = rng.standard_gamma(alpha)
    return torch.from_numpy(g / g.sum(1, keepdims=True))


def band(ax, x: np.ndarray, runs: np.ndarray, label: str, color=None, log: bool = False) -> None:
    """Mean over runs (rows of ``runs``) with a ±1 std band (geometric for log scales)."""
    runs = np.asarray(runs, dtype=np.float64)
    if log:
        logs = np.log(np.clip(runs, 1e-300, None))
        mid, sd = logs.mean(0), logs.std(0)
        lo, hi, mid = np.exp(mid - sd), np.exp(mid + sd), np.exp(mid)
    else:
        mid, sd = runs.mean(0), runs.std(0)
        lo, hi = mid - sd, mid + sd
    (line,) = ax.plot(x, mid, label=label, color=color, lw=1.4)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)

"""Gaussian-mixture data with exact Bayes class probabilities (REFERENCE.md §1).

Model (Morad et al., 2026, synthetic study): y ~ Uniform{0..K−1},
x | y ~ N(μ_y, s²·I_d), each coordinate of each μ_k drawn from a set of values
(default {4, 5, 6}). With equal priors and a shared isotropic covariance the Bayes class
probabilities are

    p*(k | x) = softmax_k( −‖x − μ_k‖² / (2 s²) ),

which is also a *linear* softmax in x: softmax_k(μ_kᵀx / s² − ‖μ_k‖² / (2 s²)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bayesdistill.data.raw import RawDataset
from bayesdistill.errors import ConfigError


@dataclass(frozen=True)
class GaussianMixture:
    """K isotropic Gaussians N(μ_k, s²·I) with class priors π.

    Attributes:
        means: ``(K, d)`` class means μ_k.
        variance: the shared variance s² of every coordinate.
        priors: ``(K,)`` class probabilities π_k (uniform by default).
    """

    means: Tensor
    variance: float
    priors: Tensor

    @classmethod
    def random(
        cls,
        num_classes: int,
        dim: int,
        mean_values: Sequence[float],
        variance: float,
        generator: torch.Generator,
    ) -> GaussianMixture:
        """Means whose coordinates are drawn uniformly from ``mean_values`` (on the
        generator's device)."""
        device = generator.device
        values = torch.as_tensor(list(mean_values), dtype=torch.float64, device=device)
        choice = torch.randint(len(values), (num_classes, dim), generator=generator, device=device)
        priors = torch.full((num_classes,), 1.0 / num_classes, device=device)
        return cls(values[choice], float(variance), priors)

    @property
    def num_classes(self) -> int:
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw ``n`` pairs: inputs ``(n, d)`` float64 and labels ``(n,)`` int64."""
        y = torch.multinomial(self.priors, n, replacement=True, generator=generator)
        noise = torch.randn(
            n, self.dim, generator=generator, dtype=torch.float64, device=generator.device
        )
        return self.means[y] + noise * self.variance**0.5, y

    def logits(self, x: Tensor) -> Tensor:
        """Log joint up to a constant: log π_k − ‖x − μ_k‖²/(2s²), ``(n, K)`` float64."""
        x = x.to(torch.float64)
        sq = torch.cdist(x, self.means.to(x), p=2.0).square()
        return self.priors.to(x).log() - sq / (2.0 * self.variance)

    def posterior(self, x: Tensor) -> Tensor:
        """Exact Bayes class probabilities p*(k|x), ``(n, K)``, computed in float64."""
        return torch.softmax(self.logits(x), dim=1)

    def linear_parameters(self) -> tuple[Tensor, Tensor]:
        """(W, b) with p*(·|x) = softmax(W x + b): W = μ/s², b = log π − ‖μ‖²/(2s²)."""
        weight = self.means / self.variance
        bias = self.priors.log() - self.means.square().sum(1) / (2.0 * self.variance)
        return weight, bias

    def state(self) -> dict[str, object]:
        return {"means": self.means, "variance": self.variance, "priors": self.priors}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> GaussianMixture:
        return cls(state["means"], float(state["variance"]), state["priors"])  # type: ignore[arg-type]


def gaussian_mixture(
    *,
    num_classes: int = 5,
    dim: int = 30,
    mean_values: tuple[float, ...] = (4.0, 5.0, 6.0),
    variance: float = 2.5,
    num_samples: int = 50_000,
    seed: int = 0,
) -> RawDataset:
    """Synthetic Gaussian mixture with exact Bayes class probabilities (Morad et al. 2026 §5.1).

    Args:
        num_classes: K.
        dim: input dimension d.
        mean_values: each coordinate of each class mean is drawn uniformly from these.
        variance: s², the per-coordinate variance of every class.
        num_samples: N, the total number of examples (split later into train/val/test).
        seed: seeds both the means and the samples.
    """
    if num_classes < 2 or dim < 1 or num_samples < num_classes:
        raise ConfigError(
            f"need num_classes >= 2, dim >= 1, num_samples >= num_classes; got "
            f"{num_classes}, {dim}, {num_samples}"
        )
    if variance <= 0:
        raise ConfigError(f"variance must be positive, got {variance}")
    if not mean_values:
        raise ConfigError("mean_values must not be empty")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    mixture = GaussianMixture.random(num_classes, dim, mean_values, variance, gen)
    x, y = mixture.sample(num_samples, gen)
    return RawDataset(
        name="synthetic",
        x=x.float(),
        y=y,
        num_classes=num_classes,
        bcp=mixture.posterior(x).float(),
        bayes_posterior=mixture.posterior,
        bayes_state={"mixture": mixture.state()},
    )

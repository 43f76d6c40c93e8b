"""Teachers that know the data's generative model: the exact Bayes teacher and noisy copies.

Only available on synthetic data, where p*(y|x) is known in closed form. Inputs arrive
standardised; the teacher undoes the standardisation and evaluates p* on the raw inputs.

Noisy teachers (Morad et al. 2026 §5.1; REFERENCE.md §1) perturb p* per example:

* Dirichlet: p̃ ~ Dirichlet(a · max(p*, 1e-12)). Unbiased, Var(p̃_k) = p*_k(1 − p*_k)/(a + 1):
  small a is noisy, large a close to exact.
* additive: p̃ = normalise(max(p* + ε, 0)), ε_k ~ N(0, ν) i.i.d. The clipping at zero (needed
  to stay a distribution) makes p̃ slightly biased when ν is comparable to p*_k².

The noise of an example is drawn from a generator seeded by (teacher seed, a hash of the
example's bytes), so a noisy teacher is a fixed function of x, as a trained teacher is: the
same input always gets the same noisy probabilities, whatever the batching.
"""

from __future__ import annotations

import hashlib
from enum import Enum
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bayesdistill.data.standardize import Standardizer
from bayesdistill.data.synthetic import GaussianMixture
from bayesdistill.errors import ConfigError
from bayesdistill.teachers.base import SavableTeacher
from bayesdistill.teachers.context import TEACHERS, TeacherContext

DIRICHLET_FLOOR = 1e-12


class ExactBayesTeacher(SavableTeacher):
    """The exact Bayes class probabilities p*(y|x) of a Gaussian mixture."""

    kind = "exact_bcp"

    def __init__(self, mixture: GaussianMixture, standardizer: Standardizer) -> None:
        self.mixture = mixture
        self.standardizer = standardizer
        self.num_classes = mixture.num_classes

    def bcp(self, x: Tensor) -> Tensor:
        """p*(·|x) for standardised inputs ``x`` ``(B, d)``, float64."""
        return self.mixture.posterior(self.standardizer.inverse(x.double()))

    def _predict(self, x: Tensor) -> Tensor:
        return self.bcp(x).to(torch.float32)

    def payload(self) -> dict[str, Any]:
        return {"mixture": self.mixture.state(), "standardizer": self.standardizer.state()}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ExactBayesTeacher:
        return cls(
            GaussianMixture.from_state(payload["mixture"]),
            Standardizer.from_state(payload["standardizer"]),
        )


class NoiseKind(str, Enum):
    """How a noisy Bayes teacher perturbs p*."""

    DIRICHLET = "dirichlet"
    """p̃ ~ Dirichlet(a·p*); level = a (concentration; larger is less noisy)."""
    ADDITIVE = "additive"
    """p̃ = normalise(max(p* + ε, 0)), ε ~ N(0, ν·I); level = ν (variance)."""


class NoisyBayesTeacher(ExactBayesTeacher):
    """p* perturbed per example by Dirichlet or additive noise, deterministically in x."""

    kind = "noisy_bcp"

    def __init__(
        self,
        mixture: GaussianMixture,
        standardizer: Standardizer,
        *,
        noise: NoiseKind | str,
        level: float,
        seed: int = 0,
    ) -> None:
        super().__init__(mixture, standardizer)
        self.noise = NoiseKind(noise)
        if level <= 0 and self.noise is NoiseKind.DIRICHLET:
            raise ConfigError(f"Dirichlet concentration a must be positive, got {level}")
        if level < 0:
            raise ConfigError(f"additive noise variance ν must be >= 0, got {level}")
        self.level = float(level)
        self.seed = seed

    def _predict(self, x: Tensor) -> Tensor:
        exact = self.bcp(x).cpu().numpy()
        rows = x.detach().to(torch.float32).cpu().numpy()
        noisy = np.empty_like(exact)
        for i in range(len(rows)):
            rng = np.random.default_rng([self.seed, _row_key(rows[i])])
            noisy[i] = self._perturb(exact[i], rng)
        return torch.as_tensor(noisy, dtype=torch.float32, device=x.device)

    def _perturb(self, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.noise is NoiseKind.DIRICHLET:
            q = rng.dirichlet(self.level * np.maximum(p, DIRICHLET_FLOOR))
            if not np.all(np.isfinite(q)) or q.sum() <= 0:  # all-underflow at tiny a·p
                q = np.eye(len(p))[rng.choice(len(p), p=p / p.sum())]
        else:
            q = np.maximum(p + rng.normal(0.0, np.sqrt(self.level), size=p.shape), 0.0)
            if q.sum() <= 0:
                q = p.copy()
        return q / q.sum()

    def payload(self) -> dict[str, Any]:
        return {
            **super().payload(),
            "noise": self.noise.value,
            "level": self.level,
            "seed": self.seed,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> NoisyBayesTeacher:
        return cls(
            GaussianMixture.from_state(payload["mixture"]),
            Standardizer.from_state(payload["standardizer"]),
            noise=payload["noise"],
            level=payload["level"],
            seed=payload["seed"],
        )

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "noise": self.noise.value, "level": self.level}


@TEACHERS.register(
    "exact_bcp",
    saves=ExactBayesTeacher,
    needs_network=False,
    learns_from_data=False,
    bayesian=False,
)
def build_exact_bcp(context: TeacherContext) -> ExactBayesTeacher:
    """The exact Bayes class probabilities p*(y|x) (synthetic data only)."""
    return ExactBayesTeacher(context.need_mixture("exact_bcp"), context.splits.standardizer)


@TEACHERS.register(
    "noisy_bcp",
    saves=NoisyBayesTeacher,
    needs_network=False,
    learns_from_data=False,
    bayesian=False,
)
def build_noisy_bcp(
    context: TeacherContext, *, noise: NoiseKind = NoiseKind.DIRICHLET, level: float = 5.0
) -> NoisyBayesTeacher:
    """p* with per-example Dirichlet(a·p*) (level = a) or additive N(0, ν) noise (level = ν)."""
    return NoisyBayesTeacher(
        context.need_mixture("noisy_bcp"),
        context.splits.standardizer,
        noise=noise,
        level=level,
        seed=context.seed,
    )


def _row_key(row: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")

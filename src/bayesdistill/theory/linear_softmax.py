"""The linear-softmax problem on a Gaussian mixture, where θ* and σ* are known.

With K isotropic Gaussians N(μ_k, s²·I) and priors π, the Bayes class probabilities are a
linear softmax (REFERENCE.md §1):

    p*(k | x) = softmax_k( μ_kᵀx / s² − ‖μ_k‖² / (2s²) + log π_k ).

A linear-softmax student can therefore represent p* exactly, and θ*, the minimiser of both
the one-hot risk and the BCP risk, is known in closed form. Conventions used throughout:

- **Inputs** are standardised with the mixture's *population* moments (mean
  m = Σ_k π_k μ_k, per-coordinate variance s² + Σ_k π_k (μ_kj − m_j)²), so that no sample
  statistic enters θ*. A sample is ``x̃ = (x − m) / sd`` with a constant 1 appended.
- **Parameters** use class K as the reference (its logit is fixed at 0): θ is a
  ``(K − 1, d + 1)`` matrix and the logits are ``[θ x̃, 0]``. This removes the softmax's
  shift invariance, so θ* is unique and the risk's Hessian at θ* is positive definite — no
  L2 term is needed for strong convexity near θ*. (Cross-entropy is not *globally*
  strongly convex; the constants μ and L are those of the Hessian at θ*.)
- **Per-sample gradient** of the cross-entropy against a target vector q (one-hot, exact
  BCP, or noisy; q need not sum to one, the loss is linear in it):
  ``∇_θ ℓ(θ; x, q) = (softmax(z) − q)[:K−1] ⊗ x̃`` when Σ q = 1, and in general
  ``(Σq · softmax(z) − q)[:K−1] ⊗ x̃``.

Closed forms of the gradient noise at the optimum σ* = E‖∇ℓ(θ*; x, q)‖² (Morad et al. 2026,
Thm. on gradient noise; with J_k = ∂p_k/∂θ = p_k (e_k − p)[:K−1] ⊗ x̃):

- one-hot labels y ~ p*(·|x):  σ* = E_x[Σ_k ‖J_k‖² / p_k] = E[‖x̃‖² Σ_k p_k ‖(e_k − p)[:K−1]‖²];
- additive noise q = p* + ε, ε_k independent, zero mean, variance ν:
  σ̃* = ν·E_x[Σ_k ‖J_k‖² / p_k²] = ν·E[‖x̃‖² Σ_k ‖(e_k − p)[:K−1]‖²];
- Dirichlet noise q ~ Dir(a·p*): Cov(q) = (diag p − ppᵀ)/(a + 1), and since Σ_k J_k = 0,
  σ̃* = σ*_one-hot / (a + 1) (one-hot labels are the a → 0 limit);
- exact BCPs: σ* = 0 (interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bayesdistill.data.synthetic import GaussianMixture

HESSIAN_CHUNK = 20_000
"""Samples per chunk when averaging per-sample Hessians (bounds memory)."""


@dataclass(frozen=True)
class LinearSoftmaxProblem:
    """A Gaussian mixture seen through standardised inputs and a reference-class softmax.

    Attributes:
        mixture: the data distribution.
        mean: ``(d,)`` population mean m used to standardise.
        scale: ``(d,)`` population standard deviation used to standardise.
    """

    mixture: GaussianMixture
    mean: Tensor
    scale: Tensor

    @classmethod
    def from_mixture(cls, mixture: GaussianMixture) -> LinearSoftmaxProblem:
        """Standardise with the mixture's exact population moments (float64)."""
        priors = mixture.priors.to(torch.float64)
        means = mixture.means.to(torch.float64)
        mean = priors @ means
        between = priors @ (means - mean).square()
        return cls(mixture, mean, (mixture.variance + between).sqrt())

    @property
    def num_classes(self) -> int:
        return self.mixture.num_classes

    @property
    def dim(self) -> int:
        return self.mixture.dim

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of θ: ``(K − 1, d + 1)``."""
        return self.num_classes - 1, self.dim + 1

    # -- data ---------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Fresh samples: standardised inputs with a bias column ``(n, d + 1)``, labels
        ``(n,)`` and exact BCPs ``(n, K)``, all float64."""
        x, y = self.mixture.sample(n, generator)
        return self.features(x), y, self.mixture.posterior(x)

    def features(self, x: Tensor) -> Tensor:
        """Raw inputs ``(n, d)`` → standardised inputs with a constant 1, ``(n, d + 1)``."""
        z = (x.to(torch.float64) - self.mean) / self.scale
        return torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], dim=1)

    # -- the model ----------------------------------------------------------------------
    def theta_star(self) -> Tensor:
        """θ* ``(K − 1, d + 1)``: logits of p* in standardised coordinates, minus class K's.

        With x = sd ⊙ x̃ + m, the Bayes logits W x + b become (W·diag(sd)) x̃ + (W m + b).
        """
        weight, bias = self.mixture.linear_parameters()
        weight, bias = weight.to(torch.float64), bias.to(torch.float64)
        full = torch.cat([weight * self.scale, (weight @ self.mean + bias)[:, None]], dim=1)
        return full[:-1] - full[-1]

    @staticmethod
    def logits(theta: Tensor, features: Tensor) -> Tensor:
        """Logits ``(..., n, K)`` of θ ``(..., K − 1, d + 1)`` on features ``(..., n, d + 1)``."""
        z = features @ theta.transpose(-1, -2)
        return torch.cat([z, torch.zeros_like(z[..., :1])], dim=-1)

    def probs(self, theta: Tensor, features: Tensor) -> Tensor:
        return torch.softmax(self.logits(theta, features), dim=-1)

    def gradients(self, theta: Tensor, features: Tensor, targets: Tensor) -> Tensor:
        """Per-sample gradients ``(n, K − 1, d + 1)`` of −Σ_k q_k log softmax(z)_k.

        ``theta`` is ``(K − 1, d + 1)`` or one θ per sample ``(n, K − 1, d + 1)``;
        ``targets`` q is ``(n, K)`` (one-hot, BCP or noisy; need not sum to one).
        """
        if theta.dim() == 2:
            p = self.probs(theta, features)
        else:
            p = self.probs(theta, features[:, None, :])[:, 0]
        residual = targets.sum(-1, keepdim=True) * p - targets
        return residual[:, :-1, None] * features[:, None, :]

    def risk(self, theta: Tensor, features: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy −Σ_k q_k log softmax(z)_k over the samples."""
        log_p = torch.log_softmax(self.logits(theta, features), dim=-1)
        return -(targets * log_p).sum(-1).mean()

    def hessian(self, theta: Tensor, features: Tensor) -> Tensor:
        """Mean Hessian of the risk at θ, ``(P, P)`` with P = (K − 1)(d + 1).

        Per sample it is (diag p − ppᵀ)[:K−1, :K−1] ⊗ x̃x̃ᵀ, whatever the target (the
        risk is linear in the target and the target sums to one).
        """
        size = self.shape[0] * self.shape[1]
        total = torch.zeros(size, size, dtype=torch.float64)
        for start in range(0, len(features), HESSIAN_CHUNK):
            f = features[start : start + HESSIAN_CHUNK]
            p = self.probs(theta, f)[:, :-1]
            a = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
            total += torch.einsum("nij,nab->iajb", a, f[:, :, None] * f[:, None, :]).reshape(
                size, size
            )
        return total / len(features)

    # -- closed forms of the gradient noise at θ* ---------------------------------------
    def noise_terms(self, features: Tensor, bcp: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample closed-form terms at θ*: (one-hot σ*, additive-noise σ̃*/ν).

        ``a_n = ‖x̃‖² Σ_k p_k ‖(e_k − p)[:K−1]‖²`` and ``b_n = ‖x̃‖² Σ_k ‖(e_k − p)[:K−1]‖²``;
        their means are σ*_one-hot and the slope of σ̃* in ν.
        """
        eye = torch.eye(self.num_classes, dtype=torch.float64)
        diff = (eye[None, :, :] - bcp[:, None, :])[:, :, :-1]  # (n, k, K−1): e_k − p
        sq = diff.square().sum(-1)  # (n, k)
        norm2 = features.square().sum(-1)
        return norm2 * (bcp * sq).sum(-1), norm2 * sq.sum(-1)

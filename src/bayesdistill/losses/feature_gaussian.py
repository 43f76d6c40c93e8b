"""Gaussians fitted to feature batches, and the closed-form distances between them.

The Gaussian members of KD²M (Montesuma, GSI 2025, arXiv 2504.01757) replace each batch of
features by the Gaussian with the batch's mean and (maximum-likelihood, 1/B) covariance and
compare the two Gaussians in closed form:

    W2²(N_a, N_b) = ‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_b^{1/2} Σ_a Σ_b^{1/2})^{1/2})   (Bures)
    KL(N_a ‖ N_b) = ½ [Tr(Σ_b⁻¹ Σ_a) + (μ_b − μ_a)ᵀ Σ_b⁻¹ (μ_b − μ_a) − D + ln det Σ_b − ln det Σ_a]

``covariance="diagonal"`` keeps only the variances (what the KD²M code does); then the Bures
term is ``‖σ_a − σ_b‖²`` and the KL a sum over dimensions. ``covariance="full"`` uses the
whole (D, D) matrix; with B ≤ D samples it is singular, which the two floors below keep finite.

Every function accepts leading batch dimensions (one Gaussian per class, say): means
``(..., D)``, variances ``(..., D)`` or covariances ``(..., D, D)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Covariance = Literal["diagonal", "full"]
"""``"diagonal"``: per-dimension variances ``(..., D)``; ``"full"``: covariances ``(..., D, D)``."""

COVARIANCES: tuple[str, ...] = ("diagonal", "full")

GAUSSIAN_KL_RIDGE = 1e-6
"""Added to every variance (diagonal) or covariance diagonal (full) before the KL's inverse
and log-determinants, so that a dead feature (zero variance in the batch) contributes a
finite term; a feature dead in both batches contributes exactly 0."""

SQRT_RELATIVE_FLOOR = 1e-6
"""Eigenvalues λ of ``Σ_b^{1/2} Σ_a Σ_b^{1/2}`` below ``floor = 1e-6 · λ_max`` enter the
Bures trace as ``max(λ, 0) / √floor`` instead of ``√λ`` (see `floored_sqrt`)."""


def floored_sqrt(eigenvalues: Tensor) -> Tensor:
    """``√λ`` for eigenvalues of a PSD matrix, with a bounded gradient; ``(..., n) → (..., n)``.

    The square root has an infinite slope at 0, and the eigenvalues of a rank-deficient
    covariance product (B ≤ D samples, dead features) are 0 up to rounding, sometimes
    slightly negative: ``√λ`` would give NaN values or infinite gradients. Below
    ``floor = SQRT_RELATIVE_FLOOR · λ_max + tiny`` (λ_max detached, per matrix) the square
    root is replaced by the chord ``max(λ, 0) / √floor``: exact above the floor, off by at
    most ``√floor / 4`` below it, never above ``√λ`` (so a W2 of identical sets stays ≥ 0
    up to rounding), and with slope at most ``1 / √floor``. The floor is relative so that
    the loss scales as the square of the features whatever their units; 1e-6 sits above
    the float32 rounding of an eigendecomposition (≈ 1e-7 · λ_max).
    """
    tiny = torch.finfo(eigenvalues.dtype).tiny
    scale = eigenvalues.detach().amax(dim=-1, keepdim=True).clamp_min(0)
    floor = SQRT_RELATIVE_FLOOR * scale + tiny
    above = eigenvalues >= floor
    root = eigenvalues.clamp_min(floor).sqrt()
    chord = eigenvalues.clamp_min(0) / floor.sqrt()
    return torch.where(above, root, chord)


def fit_gaussian(features: Tensor, covariance: Covariance = "diagonal") -> tuple[Tensor, Tensor]:
    """Maximum-likelihood Gaussian of a ``(B, D)`` batch: mean ``(D,)``, variances or covariance.

    Returns variances ``(D,)`` for ``"diagonal"``, the covariance ``(D, D)`` for ``"full"``.

    ``Σ = (1/B) Σ_i (z_i − μ)(z_i − μ)ᵀ`` (the 1/B estimator, as KD²M's ``std(correction=0)``).
    """
    mean = features.mean(dim=0)
    centred = features - mean
    if covariance == "diagonal":
        return mean, centred.pow(2).mean(dim=0)
    return mean, centred.T @ centred / features.shape[0]


def fit_class_gaussians(
    features: Tensor, labels: Tensor, num_classes: int, covariance: Covariance = "diagonal"
) -> tuple[Tensor, Tensor]:
    """One maximum-likelihood Gaussian per class of ``labels`` (values in ``0..num_classes-1``).

    Args:
        features: ``(B, D)``.
        labels: ``(B,)`` integer labels; every class in ``0..num_classes-1`` must occur.
        num_classes: K.
        covariance: see `Covariance`.

    Returns:
        means ``(K, D)`` and variances ``(K, D)`` or covariances ``(K, D, D)``, each with the
        1/n_k estimator over the n_k samples of class k (a class seen once has variance 0).
    """
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(features.dtype)  # (B, K)
    counts = onehot.sum(dim=0).unsqueeze(1)  # (K, 1)
    means = onehot.T @ features / counts
    centred = features - means[labels]
    if covariance == "diagonal":
        return means, onehot.T @ centred.pow(2) / counts
    covs = torch.einsum("bk,bi,bj->kij", onehot, centred, centred)
    return means, covs / counts.unsqueeze(2)


def bures_wasserstein_squared(
    mean_a: Tensor,
    cov_a: Tensor,
    mean_b: Tensor,
    cov_b: Tensor,
    covariance: Covariance = "diagonal",
) -> Tensor:
    """Squared 2-Wasserstein distance between Gaussians N_a and N_b; shape ``(...)``.

    ``‖μ_a − μ_b‖² + Tr(Σ_a) + Tr(Σ_b) − 2 Tr((Σ_b^{1/2} Σ_a Σ_b^{1/2})^{1/2})``. The cross
    term is written with Σ_b's square root, which has the same trace as the textbook
    ``(Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}`` (both matrices have the eigenvalues of Σ_a Σ_b).

    N_b is the reference and is treated as a constant: Σ_b^{1/2} is computed without
    gradient from a symmetric eigendecomposition (negative rounding eigenvalues clamped to
    0). The only differentiated decomposition is that of the eigenvalues of
    ``M = Σ_b^{1/2} Σ_a Σ_b^{1/2}``, whose gradient ``U diag(∂/∂λ) Uᵀ`` stays finite when
    eigenvalues repeat (unlike a gradient through eigenvectors, which divides by eigenvalue
    gaps); `floored_sqrt` bounds ``∂√λ/∂λ`` near 0. For diagonal covariances M is
    ``diag(σ_a² σ_b²)`` and the value is ``‖μ_a − μ_b‖² + ‖σ_a − σ_b‖²``.
    """
    mean_term = (mean_a - mean_b).pow(2).sum(dim=-1)
    cov_b = cov_b.detach()
    if covariance == "diagonal":
        cross = floored_sqrt(cov_a * cov_b).sum(dim=-1)
        return mean_term + cov_a.sum(dim=-1) + cov_b.sum(dim=-1) - 2 * cross
    root_b = _psd_sqrt(cov_b)
    product = root_b @ cov_a @ root_b
    product = (product + product.mT) / 2
    cross = floored_sqrt(torch.linalg.eigvalsh(product)).sum(dim=-1)
    trace = cov_a.diagonal(dim1=-2, dim2=-1).sum(-1) + cov_b.diagonal(dim1=-2, dim2=-1).sum(-1)
    return mean_term + trace - 2 * cross


def gaussian_kl_divergence(
    mean_a: Tensor,
    cov_a: Tensor,
    mean_b: Tensor,
    cov_b: Tensor,
    covariance: Covariance = "diagonal",
    ridge: float = GAUSSIAN_KL_RIDGE,
) -> Tensor:
    """KL(N_a ‖ N_b) between Gaussians whose covariances get ``ridge`` added; shape ``(...)``.

    ``½ [Tr(Σ_b⁻¹ Σ_a) + (μ_b − μ_a)ᵀ Σ_b⁻¹ (μ_b − μ_a) − D + ln det Σ_b − ln det Σ_a]`` with
    ``Σ ← Σ + ridge·I`` (variances ``σ² ← σ² + ridge`` when diagonal). Differentiable in both
    Gaussians. Full covariances are inverted through a symmetric eigendecomposition whose
    negative rounding eigenvalues are clamped to 0 before the ridge; the gradient is that of
    ``(Σ + ridge·I)⁻¹`` and ``ln det(Σ + ridge·I)``, which involves no eigenvalue gaps.
    """
    diff = mean_b - mean_a
    dim = mean_a.shape[-1]
    if covariance == "diagonal":
        var_a, var_b = cov_a + ridge, cov_b + ridge
        terms = var_a / var_b + diff.pow(2) / var_b - 1 + var_b.log() - var_a.log()
        return terms.sum(dim=-1) / 2
    _, logdet_a = _RidgedInverse.apply(cov_a, ridge)
    inv_b, logdet_b = _RidgedInverse.apply(cov_b, ridge)
    eye = torch.eye(dim, dtype=cov_a.dtype, device=cov_a.device)
    trace = (inv_b * (cov_a + ridge * eye).mT).sum(dim=(-2, -1))
    mahalanobis = (diff.unsqueeze(-2) @ inv_b @ diff.unsqueeze(-1)).squeeze(-1).squeeze(-1)
    return (trace + mahalanobis - dim + logdet_b - logdet_a) / 2


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """Square root of a symmetric PSD matrix (no gradient), eigenvalues clamped at 0."""
    with torch.no_grad():
        values, vectors = torch.linalg.eigh(matrix)
        return (vectors * values.clamp_min(0).sqrt().unsqueeze(-2)) @ vectors.mT


class _RidgedInverse(torch.autograd.Function):
    """``(Σ + r·I)⁻¹`` and ``ln det(Σ + r·I)`` for symmetric PSD Σ, by one eigendecomposition.

    Eigenvalues are clamped at 0 (rounding can make them slightly negative) before adding
    the ridge r. The backward pass is the exact derivative of the two maps at Σ, i.e.
    ``−X Ḡ X + g·X`` with ``X = (Σ + r·I)⁻¹``: it needs no eigenvector derivative, whose
    ``1/(λ_i − λ_j)`` factors are infinite for the repeated zero eigenvalues of a
    rank-deficient covariance.
    """

    @staticmethod
    def forward(ctx, matrix: Tensor, ridge: float) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        values, vectors = torch.linalg.eigh(matrix)
        values = values.clamp_min(0) + ridge
        inverse = (vectors / values.unsqueeze(-2)) @ vectors.mT
        ctx.save_for_backward(inverse)
        return inverse, values.log().sum(dim=-1)

    @staticmethod
    def backward(ctx, grad_inverse: Tensor, grad_logdet: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (inverse,) = ctx.saved_tensors
        grad = -inverse @ grad_inverse @ inverse + grad_logdet[..., None, None] * inverse
        return grad, None

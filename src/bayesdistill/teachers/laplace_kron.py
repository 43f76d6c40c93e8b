"""The exact GLM predictive of laplace-torch's last-layer K-FAC posterior, without Jacobians.

This module reads laplace-torch's internals (the fitted ``posterior_precision`` of a
``KronLLLaplace``: its ``KronDecomposed`` eigenvectors, eigenvalues, deltas and damping, and
its ``_glm_predictive_samples`` sampler), so it is the one place that depends on how
laplace-torch 0.3 lays them out; pyproject.toml bounds laplace-torch to the versions the
tests check it against. Where the layout is not the one it knows, it returns None and the
teacher falls back to laplace-torch's public predictive.

Fast GLM predictive for the last-layer K-FAC posterior (`kron_glm_moments`,
`kron_glm_predictive`). laplace-torch 0.3 computes the GLM predictive of a last-layer
Kronecker-factored posterior by materialising the Jacobians ``(B, C, C·D + C)`` with respect
to the head's weight and bias and pushing them through ``KronDecomposed.inv_square_form``:
for a ResNet50 head on CIFAR-100 (D = 2048 features, C = 100 classes) that took 100 s for
*one* batch of 64 on CPU, and students query the teacher on every augmented batch. The
head's Jacobian is structured, J(x) = [I_C ⊗ φ(x)ᵀ, I_C], and laplace-torch's posterior
precision for it is block-diagonal, one Kronecker block (Q_out ⊗ Q_in) diag(λ_out ⊗ λ_in + δ_w)
(Q_out ⊗ Q_in)ᵀ for the weight (output-gradient factor first, input factor second, the
weight flattened row-major) and one dense block Q_b diag(λ_b + δ_b) Q_bᵀ for the bias; the
likelihood factor 1/(σ²·temperature) is already in the eigenvalues and the (scalar or
per-layer) prior precision is δ. Hence, with ψ = Q_inᵀ φ(x),

    Σ_f(x)[c, c'] = Σ_a Q_out[c, a] Q_out[c', a] Σ_j ψ_j² / (λ_out,a λ_in,j + δ_w)
                    + (Q_b diag(1 / (λ_b + δ_b)) Q_bᵀ)[c, c'],

which costs O(B·D² + B·C·D + B·C³) (O(B·C²) for the diagonal the probit link needs) and no
Jacobian at all. It reads laplace-torch's own fitted ``posterior_precision`` (eigenvectors,
eigenvalues, deltas, damping) and applies the links with laplace-torch's formulas (``mc``
calls its own sampler), so it is the same predictive up to float rounding; the tests check
it against laplace-torch's ``_glm_predictive_distribution`` and ``la(x, pred_type='glm')``.
Any posterior it does not recognise (another structure or subset, a head that is not an
``nn.Linear``, enable_backprop, a non-classification likelihood, factors of unexpected
shape) goes through laplace-torch's generic path.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

LINKS = ("probit", "mc", "bridge", "bridge_norm")
"""The GLM links `kron_glm_predictive` applies (laplace-torch's ``link_approx`` values)."""


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence laplace-torch's advisory warnings and prints."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


class _KronHead:
    """laplace-torch's last-layer K-FAC posterior covariance in its eigenbases.

    The covariance of the head's weight (row-major ``(C, D)``) is
    ``(q_out ⊗ q_in) diag(inv_eig.flatten()) (q_out ⊗ q_in)ᵀ``; ``bias_cov`` is the bias's
    ``(C, C)`` covariance, or None for a head without bias.
    """

    def __init__(
        self, q_out: Tensor, q_in: Tensor, inv_eig: Tensor, bias_cov: Tensor | None
    ) -> None:
        self.q_out, self.q_in, self.inv_eig, self.bias_cov = q_out, q_in, inv_eig, bias_cov


def _kron_head(la: Any) -> _KronHead | None:
    """The posterior of ``la`` in Kronecker form, or None where it is not laplace-torch's
    last-layer K-FAC posterior of an ``nn.Linear`` head in the layout read below."""
    with quiet():
        from laplace.lllaplace import KronLLLaplace
        from laplace.utils.enums import Likelihood
        from laplace.utils.matrix import KronDecomposed

    if not isinstance(la, KronLLLaplace) or la.enable_backprop:
        return None
    if la.likelihood != Likelihood.CLASSIFICATION:
        return None
    head = la.model.last_layer
    if not isinstance(head, nn.Linear) or getattr(la, "H_facs", None) is None:
        return None  # unfitted: laplace-torch's own path reports it
    if not isinstance(la.H, KronDecomposed):
        return None
    prior = la.prior_precision
    if prior.ndim != 1 or len(prior) not in (1, la.n_layers):
        return None  # (laplace-torch allows only scalar or per-layer priors on K-FAC)
    # H·(1/(σ²·temperature)) + prior: the likelihood factor is spread over the Kronecker
    # factors' eigenvalues and the prior precision becomes the per-block deltas.
    post = la.posterior_precision
    n_out, n_in = head.weight.shape
    has_bias = head.bias is not None
    n_blocks = 2 if has_bias else 1
    vecs, vals, deltas = post.eigenvectors, post.eigenvalues, post.deltas
    if len(vecs) != n_blocks or len(vals) != n_blocks or tuple(deltas.shape) != (n_blocks,):
        return None
    # curvlinops backend: [gradient factor (C, C), input factor (D, D)] for the weight, then
    # [gradient factor (C, C)] for the bias (the bias is not folded into the input factor)
    if len(vecs[0]) != 2 or len(vals[0]) != 2:
        return None
    q_out, q_in = vecs[0]
    l_out, l_in = vals[0]
    if q_out.shape != (n_out, n_out) or q_in.shape != (n_in, n_in):
        return None
    if l_out.shape != (n_out,) or l_in.shape != (n_in,):
        return None
    delta = deltas[0]
    if post.damping:  # KronDecomposed's damped form, (λ_out + √δ)(λ_in + √δ)
        root = torch.sqrt(delta)
        inv_eig = torch.outer(l_out + root, l_in + root).reciprocal()
    else:
        inv_eig = (torch.outer(l_out, l_in) + delta).reciprocal()
    bias_cov = None
    if has_bias:
        if len(vecs[1]) != 1 or len(vals[1]) != 1:
            return None
        q_b, l_b = vecs[1][0], vals[1][0]
        if q_b.shape != (n_out, n_out) or l_b.shape != (n_out,):
            return None
        bias_cov = (q_b * (l_b + deltas[1]).reciprocal()) @ q_b.T  # (undamped, as in its bmm)
    return _KronHead(q_out, q_in, inv_eig, bias_cov)


@torch.no_grad()
def kron_glm_moments(la: Any, x: Tensor, *, diagonal: bool = False) -> tuple[Tensor, Tensor] | None:
    """GLM predictive mean and covariance of a last-layer K-FAC laplace-torch posterior.

    The same quantities as laplace-torch's ``la._glm_predictive_distribution(x)`` (see the
    module docstring for the formula), without forming Jacobians.

    Args:
        la: a fitted laplace-torch ``KronLLLaplace`` (classification).
        x: a batch of inputs of the network.
        diagonal: return only the variances ``(B, C)`` instead of covariances ``(B, C, C)``.

    Returns:
        ``(f_mu (B, C), f_var)``, or None where ``la`` is not a posterior this handles
        (use laplace-torch's generic path then).
    """
    kh = _kron_head(la)
    if kh is None:
        return None
    f_mu, phi = la.model.forward_with_features(x)
    n_out, n_in = kh.inv_eig.shape
    if f_mu.ndim != 2 or phi.ndim != 2 or f_mu.shape[1] != n_out or phi.shape[1] != n_in:
        return None
    psi = phi @ kh.q_in  # (B, D): features in the input eigenbasis
    scale = psi.square() @ kh.inv_eig.T  # (B, C): variance along each output eigenvector
    if diagonal:
        f_var = scale @ kh.q_out.square().T
        if kh.bias_cov is not None:
            f_var = f_var + kh.bias_cov.diagonal()
    else:
        f_var = (kh.q_out * scale.unsqueeze(1)) @ kh.q_out.T
        if kh.bias_cov is not None:
            f_var = f_var + kh.bias_cov
    return f_mu.detach(), f_var


@torch.no_grad()
def kron_glm_predictive(
    la: Any, x: Tensor, link_approx: str = "probit", n_samples: int = 100
) -> Tensor | None:
    """``la(x, pred_type='glm', link_approx=..., n_samples=...)`` via `kron_glm_moments`.

    The links are laplace-torch 0.3's (``BaseLaplace._glm_forward_call``): probit scaling,
    the (normalised) Laplace bridge, or its own Monte-Carlo sampler ``mc`` (which draws from
    torch's global generator as laplace-torch does). Returns None where `kron_glm_moments`
    does, or for a link not in `LINKS`.
    """
    if link_approx not in LINKS:
        return None
    moments = kron_glm_moments(la, x, diagonal=link_approx == "probit")
    if moments is None:
        return None
    f_mu, f_var = moments
    if link_approx == "probit":
        kappa = 1 / torch.sqrt(1.0 + torch.pi / 8 * f_var)
        return torch.softmax(kappa * f_mu, dim=-1)
    if link_approx == "mc":
        samples = la._glm_predictive_samples(f_mu, f_var, n_samples=n_samples)
        return samples.mean(dim=0)
    return _laplace_bridge(f_mu, f_var, normalise=link_approx == "bridge_norm")


def _laplace_bridge(f_mu: Tensor, f_var: Tensor, *, normalise: bool) -> Tensor:
    """laplace-torch 0.3's Laplace bridge (``_glm_forward_call``), without its in-place ops."""
    total = f_var.sum(dim=(1, 2))
    # zero-mean correction
    f_mu = f_mu - f_var.sum(-1) * f_mu.sum(-1).reshape(-1, 1) / total.reshape(-1, 1)
    f_var = f_var - torch.einsum("bi,bj->bij", f_var.sum(-1), f_var.sum(-2)) / total.reshape(
        -1, 1, 1
    )
    k = f_mu.size(-1)
    f_var_diag = torch.diagonal(f_var, dim1=1, dim2=2)
    if normalise:  # variance correction
        f_var_diag_mean = f_var_diag.mean(dim=1)
        f_var_diag_mean = (
            f_var_diag_mean / torch.as_tensor([k / 2], device=f_mu.device, dtype=f_mu.dtype).sqrt()
        )
        f_mu = f_mu / f_var_diag_mean.sqrt().unsqueeze(-1)
        f_var_diag = f_var_diag / f_var_diag_mean.unsqueeze(-1)
    sum_exp = torch.exp(-f_mu).sum(dim=1).unsqueeze(-1)
    alpha = (1 - 2 / k + f_mu.exp() / k**2 * sum_exp) / f_var_diag
    return torch.nan_to_num(alpha / alpha.sum(dim=1).unsqueeze(-1), nan=1.0)

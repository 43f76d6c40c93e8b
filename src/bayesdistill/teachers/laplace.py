"""Laplace teachers: a Gaussian posterior around the trained network, via laplace-torch.

Post hoc on the trained (deterministic) network (Daxberger et al. 2021, "Laplace Redux"):
fit the curvature of the training loss at the MAP weights (last layer by default,
Kronecker-factored GGN), choose the prior precision (marginal likelihood, or grid search on
validation NLL), and predict with the linearised (GLM) predictive and the probit
approximation of the softmax by default. This is the Laplace teacher of Morad et al. (2026).

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
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from bayesdistill.data.stream import LabelledData
from bayesdistill.errors import CheckpointError, ConfigError
from bayesdistill.models import Classifier
from bayesdistill.teachers.base import NetworkTeacher, network_from_state, network_state
from bayesdistill.train.batches import data_loader

LAST_LAYER_NAME = "head"
"""Every bayesdistill `Classifier` names its last linear layer ``head``."""

FIT_BATCH_SIZE = 256

KRON_LAYERS = (nn.Linear, nn.Conv2d)
"""Layers whose weights laplace-torch's default backend (curvlinops K-FAC) can
Kronecker-factor; parameters anywhere else make ``all``/``kron`` fail."""


class SubsetOfWeights(str, Enum):
    """Which weights get a posterior."""

    LAST_LAYER = "last_layer"
    """Only the final linear layer (``head``); cheap and the paper's choice."""
    ALL = "all"
    """Every weight of the network."""


class HessianStructure(str, Enum):
    """Structure of the generalised Gauss-Newton approximation of the Hessian."""

    KRON = "kron"
    """Kronecker-factored (K-FAC) blocks per layer."""
    DIAG = "diag"
    """Diagonal."""
    FULL = "full"
    """Dense (only sensible for the last layer of a small network)."""


class PriorMethod(str, Enum):
    """How the prior precision λ is chosen after fitting the curvature."""

    MARGLIK = "marglik"
    """Maximise the Laplace marginal likelihood on the training data."""
    GRIDSEARCH = "gridsearch"
    """Minimise the NLL of the predictive on the validation set over a log grid."""


class PredType(str, Enum):
    """Which predictive integral is approximated."""

    GLM = "glm"
    """Linearised network (GLM): Gaussian logits, then ``link_approx``."""
    NN = "nn"
    """Monte Carlo over sampled weights of the network itself (link must be ``mc``)."""


class LinkApprox(str, Enum):
    """How E[softmax(f)] under Gaussian logits is approximated (GLM predictive)."""

    PROBIT = "probit"
    """Probit (MacKay) scaling of the mean logits: deterministic and cheap."""
    MC = "mc"
    """Monte Carlo with ``n_samples`` logit draws."""
    BRIDGE = "bridge"
    """Laplace bridge to a Dirichlet."""
    BRIDGE_NORM = "bridge_norm"
    """Normalised Laplace bridge."""


class LaplaceTeacher(NetworkTeacher):
    """Predictive of a laplace-torch posterior (GLM/probit by default)."""

    kind = "laplace"

    def __init__(
        self,
        network: Classifier,
        laplace: Any,
        *,
        subset_of_weights: SubsetOfWeights | str,
        hessian_structure: HessianStructure | str,
        pred_type: PredType | str = PredType.GLM,
        link_approx: LinkApprox | str = LinkApprox.PROBIT,
        n_samples: int = 100,
        seed: int = 0,
        prior_method: str = "given",
    ) -> None:
        super().__init__(network)
        self.laplace = laplace
        self.subset_of_weights = SubsetOfWeights(subset_of_weights)
        self.hessian_structure = HessianStructure(hessian_structure)
        self.pred_type = PredType(pred_type)
        self.link_approx = LinkApprox(link_approx)
        self.n_samples = n_samples
        self.seed = seed
        self.prior_method = prior_method
        _check_predictive(self.pred_type, self.link_approx)

    @property
    def prior_precision(self) -> float | list[float]:
        value = self.laplace.prior_precision.detach().cpu().flatten()
        return float(value[0]) if value.numel() == 1 else value.tolist()

    def _predict(self, x: Tensor) -> Tensor:
        # laplace-torch draws Monte-Carlo samples from torch's global generator (it ignores
        # its `generator` argument), so seed that generator in a forked state for each call:
        # the 'nn' predictive then uses the same S weight samples on every call and batch.
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), _quiet():
            torch.manual_seed(self.seed)
            probs = None
            if (
                self.pred_type is PredType.GLM
                and self.subset_of_weights is SubsetOfWeights.LAST_LAYER
                and self.hessian_structure is HessianStructure.KRON
            ):
                # exact, Jacobian-free; None where the posterior is not the one it handles
                probs = kron_glm_predictive(self.laplace, x, self.link_approx.value, self.n_samples)
            if probs is None:
                with torch.enable_grad():
                    # the generic GLM predictive differentiates the network for its Jacobians
                    probs = self.laplace(
                        x,
                        pred_type=self.pred_type.value,
                        link_approx=self.link_approx.value,
                        n_samples=self.n_samples,
                    )
        probs = probs.detach().clamp_min(0.0)
        return probs / probs.sum(1, keepdim=True)

    def to(self, device: torch.device | str) -> LaplaceTeacher:
        # laplace-torch keeps tensors in many attributes; moving a fitted object is
        # unsupported, so rebuild it on the target device from its state.
        if torch.device(device) == self.device:
            return self
        return LaplaceTeacher.from_payload(self.payload(), device=device)

    def payload(self) -> dict[str, Any]:
        return {
            "network": network_state(self.network),
            "laplace_state": _plain(self.laplace.state_dict()),
            "subset_of_weights": self.subset_of_weights.value,
            "hessian_structure": self.hessian_structure.value,
            "pred_type": self.pred_type.value,
            "link_approx": self.link_approx.value,
            "n_samples": self.n_samples,
            "seed": self.seed,
            "prior_method": self.prior_method,
        }

    @classmethod
    def from_payload(
        cls, payload: dict[str, Any], device: torch.device | str = "cpu"
    ) -> LaplaceTeacher:
        network = network_from_state(payload["network"]).to(device)
        la = _make_laplace(network, payload["subset_of_weights"], payload["hessian_structure"])
        state = dict(payload["laplace_state"])
        state = {k: _to_device(v, device) for k, v in state.items()}
        try:
            la.load_state_dict(state)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"saved Laplace state does not fit its network: {exc}") from exc
        return cls(
            network,
            la,
            subset_of_weights=payload["subset_of_weights"],
            hessian_structure=payload["hessian_structure"],
            pred_type=payload["pred_type"],
            link_approx=payload["link_approx"],
            n_samples=payload["n_samples"],
            seed=payload["seed"],
            prior_method=payload.get("prior_method", "given"),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subset_of_weights": self.subset_of_weights.value,
            "hessian_structure": self.hessian_structure.value,
            "prior_method": self.prior_method,
            "prior_precision": self.prior_precision,
            "pred_type": self.pred_type.value,
            "link_approx": self.link_approx.value,
        }


def fit_laplace(
    network: Classifier,
    train: LabelledData,
    val: LabelledData | None = None,
    *,
    subset_of_weights: SubsetOfWeights | str = SubsetOfWeights.LAST_LAYER,
    hessian_structure: HessianStructure | str = HessianStructure.KRON,
    prior_precision: PriorMethod | str | float = PriorMethod.MARGLIK,
    prior_structure: str = "scalar",
    grid: tuple[float, float, int] = (-4.0, 4.0, 41),
    pred_type: PredType | str = PredType.GLM,
    link_approx: LinkApprox | str = LinkApprox.PROBIT,
    n_samples: int = 100,
    seed: int = 0,
) -> LaplaceTeacher:
    """Fit a laplace-torch posterior around ``network`` and wrap it as a teacher.

    Args:
        network: the trained network (MAP weights); it is not modified.
        train: data for the curvature (the network's training set).
        val: validation data, needed for ``prior_precision="gridsearch"``.
        subset_of_weights: ``last_layer`` or ``all``.
        hessian_structure: ``kron``, ``diag`` or ``full``.
        prior_precision: ``marglik``, ``gridsearch``, or a fixed positive number.
        prior_structure: ``scalar``, ``layerwise`` or ``diag`` (marglik only).
        grid: (log10 min, log10 max, points) of the grid search.
        pred_type, link_approx, n_samples: the predictive (see the enums).
        seed: seeds Monte-Carlo predictives so repeated calls agree. With
            ``pred_type='nn'`` the S weight samples are the same for every call and batch;
            with ``link_approx='mc'`` under ``glm`` the logit samples depend on the batch.
    """
    subset_of_weights = SubsetOfWeights(subset_of_weights)
    hessian_structure = HessianStructure(hessian_structure)
    pred_type, link_approx = PredType(pred_type), LinkApprox(link_approx)
    _check_predictive(pred_type, link_approx)
    device = next(network.parameters()).device
    _check_supported(network, subset_of_weights, hessian_structure)
    la = _make_laplace(network, subset_of_weights, hessian_structure)
    with _quiet(), _translate_laplace_errors(network, subset_of_weights, hessian_structure):
        la.fit(_loader(train, device))
        if isinstance(prior_precision, (int, float)) and not isinstance(prior_precision, bool):
            if prior_precision <= 0:
                raise ConfigError(f"prior_precision must be positive, got {prior_precision}")
            la.prior_precision = float(prior_precision)
            method = "given"
        else:
            method = PriorMethod(prior_precision).value
            options: dict[str, Any] = {
                "pred_type": pred_type.value,
                "method": method,
                "link_approx": link_approx.value,
                "n_samples": n_samples,
            }
            if method == PriorMethod.GRIDSEARCH.value:
                if val is None:
                    raise ConfigError("prior_precision='gridsearch' needs validation data")
                lo, hi, points = grid
                options.update(
                    val_loader=_loader(val, device),
                    log_prior_prec_min=lo,
                    log_prior_prec_max=hi,
                    grid_size=int(points),
                )
            else:
                options["prior_structure"] = prior_structure
            la.optimize_prior_precision(**options)
    return LaplaceTeacher(
        network,
        la,
        subset_of_weights=subset_of_weights,
        hessian_structure=hessian_structure,
        pred_type=pred_type,
        link_approx=link_approx,
        n_samples=n_samples,
        seed=seed,
        prior_method=method,
    )


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
    with _quiet():
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
    does, or for an unknown link.
    """
    link = LinkApprox(link_approx)
    moments = kron_glm_moments(la, x, diagonal=link is LinkApprox.PROBIT)
    if moments is None:
        return None
    f_mu, f_var = moments
    if link is LinkApprox.PROBIT:
        kappa = 1 / torch.sqrt(1.0 + torch.pi / 8 * f_var)
        return torch.softmax(kappa * f_mu, dim=-1)
    if link is LinkApprox.MC:
        samples = la._glm_predictive_samples(f_mu, f_var, n_samples=n_samples)
        return samples.mean(dim=0)
    return _laplace_bridge(f_mu, f_var, normalise=link is LinkApprox.BRIDGE_NORM)


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


def _make_laplace(network: Classifier, subset: str, structure: str) -> Any:
    with _quiet():  # its import warns about torch.jit deprecations
        from laplace import Laplace

    kwargs: dict[str, Any] = {}
    if SubsetOfWeights(subset) is SubsetOfWeights.LAST_LAYER:
        kwargs["last_layer_name"] = LAST_LAYER_NAME
    return Laplace(
        network,
        "classification",
        subset_of_weights=SubsetOfWeights(subset).value,
        hessian_structure=HessianStructure(structure).value,
        **kwargs,
    )


def _check_predictive(pred_type: PredType, link_approx: LinkApprox) -> None:
    if pred_type is PredType.NN and link_approx is not LinkApprox.MC:
        raise ConfigError(
            f"pred_type='nn' samples weights and needs link_approx='mc', got '{link_approx.value}'"
        )


def kron_unsupported_layers(network: nn.Module) -> dict[str, str]:
    """Qualified name → type of each module holding parameters that K-FAC cannot factor."""
    return {
        name: type(module).__name__
        for name, module in network.named_modules()
        if not isinstance(module, KRON_LAYERS) and any(True for _ in module.parameters(False))
    }


def _check_supported(
    network: nn.Module, subset: SubsetOfWeights, structure: HessianStructure
) -> None:
    if subset is not SubsetOfWeights.ALL or structure is not HessianStructure.KRON:
        return
    unsupported = kron_unsupported_layers(network)
    if unsupported:
        raise ConfigError(_kron_message(unsupported))


def _kron_message(unsupported: dict[str, str]) -> str:
    listing = ", ".join(f"{kind} ('{name}')" for name, kind in unsupported.items())
    return (
        "Laplace with subset_of_weights='all' and hessian_structure='kron' needs every "
        "parameter in an nn.Linear or nn.Conv2d layer (laplace-torch's K-FAC backend, "
        f"curvlinops, supports no others), but this network has parameters in {listing}. "
        "What works on this network: hessian_structure='diag' with subset_of_weights='all', "
        "or subset_of_weights='last_layer' with any hessian_structure."
    )


def _loader(data: LabelledData, device: torch.device) -> DataLoader:
    return data_loader(data, device, FIT_BATCH_SIZE)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence laplace-torch's advisory warnings and prints."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _translate_laplace_errors(
    network: Classifier, subset: SubsetOfWeights, structure: HessianStructure
) -> Iterator[None]:
    try:
        yield
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        unsupported = kron_unsupported_layers(network)
        if "un-supported layers" in str(exc) and unsupported:
            raise ConfigError(_kron_message(unsupported)) from exc
        layers = sorted({type(m).__name__ for m in network.modules() if not list(m.children())})
        raise ConfigError(
            f"laplace-torch cannot fit subset_of_weights='{subset.value}', "
            f"hessian_structure='{structure.value}' on this network (layers: "
            f"{', '.join(layers)}): {type(exc).__name__}: {exc}. Try "
            "subset_of_weights='last_layer' or hessian_structure='diag'."
        ) from exc


def _plain(value: Any) -> Any:
    """Laplace state with enums turned into strings and tuples into lists (weights_only-safe)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Tensor):
        return value.detach().cpu()
    return value


def _to_device(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value

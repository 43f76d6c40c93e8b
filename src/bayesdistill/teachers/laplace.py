"""Laplace teachers: a Gaussian posterior around the trained network, via laplace-torch.

Post hoc on the trained (deterministic) network (Daxberger et al. 2021, "Laplace Redux"):
fit the curvature of the training loss at the MAP weights (last layer by default,
Kronecker-factored GGN), choose the prior precision (marginal likelihood, or grid search on
validation NLL), and predict with the linearised (GLM) predictive and the probit
approximation of the softmax by default. This is the Laplace teacher of Morad et al. (2026).

The default configuration (GLM predictive of a last-layer K-FAC posterior) is computed
without Jacobians by `bayesdistill.teachers.laplace_kron`, which reads laplace-torch's
internals; every other configuration uses laplace-torch's public predictive.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.metadata
from collections.abc import Iterator, MutableMapping
from enum import Enum
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import CheckpointError, ConfigError
from bayesdistill.metrics import NLL_EPS
from bayesdistill.models import Classifier
from bayesdistill.teachers import laplace_kron
from bayesdistill.teachers.base import NetworkTeacher, network_from_state, network_state
from bayesdistill.teachers.context import TEACHERS, TeacherContext
from bayesdistill.teachers.laplace_kron import quiet
from bayesdistill.train.batches import data_loader

LAST_LAYER_NAME = "head"
"""Every bayesdistill `Classifier` names its last linear layer ``head``."""

FIT_BATCH_SIZE = 256

KRON_LAYERS = (nn.Linear, nn.Conv2d)
"""Layers whose weights laplace-torch's default backend (curvlinops K-FAC) can
Kronecker-factor; parameters anywhere else make ``all``/``kron`` fail."""

LAYER_ERROR_WORDS = ("un-supported", "unsupported", "not supported")
"""How laplace-torch and curvlinops word an error about a layer they cannot handle (with
`NotImplementedError` for a structure they do not implement): only such an error can be
avoided by asking less of the network's layers."""


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
        with torch.random.fork_rng(devices=devices), quiet():
            torch.manual_seed(self.seed)
            probs = None
            if (
                self.pred_type is PredType.GLM
                and self.subset_of_weights is SubsetOfWeights.LAST_LAYER
                and self.hessian_structure is HessianStructure.KRON
            ):
                # exact, Jacobian-free; None where the posterior is not the one it handles
                probs = laplace_kron.kron_glm_predictive(
                    self.laplace, x, self.link_approx.value, self.n_samples
                )
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
        network: the trained network (MAP weights); it is not modified. One with
            non-contiguous parameters (channels-last, as ``runtime.channels_last`` leaves
            it) is fitted as a contiguous copy, which the teacher holds.
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
    network = _contiguous(network)
    device = next(network.parameters()).device
    _check_supported(network, subset_of_weights, hessian_structure)
    la = _make_laplace(network, subset_of_weights, hessian_structure)
    with quiet(), _translate_laplace_errors(network, subset_of_weights, hessian_structure):
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
                    # laplace-torch 0.3's default loss, a RunningNLLMetric, is never reset
                    # between grid points, so each point scored the running mean over all
                    # points so far; a plain callable is called once per point on the whole
                    # validation set instead (its "offline" path in `validate`)
                    loss=_validation_nll,
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


def _validation_nll(probs: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of the labels, the grid search's score of one prior precision.

    ``-(1/N) Σ_n log p_n[y_n]`` for ``probs`` ``(N, C)`` and integer ``targets`` ``(N,)``: the
    NLL of laplace-torch's ``RunningNLLMetric`` for one grid point, with probabilities
    clamped to at least `NLL_EPS` (as `bayesdistill.metrics.nll`) so that an exact zero
    scores a large finite loss rather than ``inf``. Returns a 0-d tensor.
    """
    p_true = probs.reshape(-1, probs.shape[-1]).gather(1, targets.reshape(-1, 1).long())
    return -p_true.clamp_min(NLL_EPS).log().mean()


@TEACHERS.register(
    "laplace", saves=LaplaceTeacher, needs_network=True, learns_from_data=True, bayesian=True
)
def build_laplace(
    context: TeacherContext,
    *,
    subset_of_weights: SubsetOfWeights = SubsetOfWeights.LAST_LAYER,
    hessian_structure: HessianStructure = HessianStructure.KRON,
    prior_precision: PriorMethod | float = PriorMethod.GRIDSEARCH,
    prior_structure: Literal["scalar", "layerwise", "diag"] = "scalar",
    grid_log10_min: float = -4.0,
    grid_log10_max: float = 4.0,
    grid_points: int = 41,
    pred_type: PredType = PredType.GLM,
    link_approx: LinkApprox = LinkApprox.PROBIT,
    n_samples: int = 100,
) -> LaplaceTeacher:
    """Post-hoc Laplace approximation of the trained network (laplace-torch)."""
    return fit_laplace(
        context.need_network("laplace"),
        context.splits.train,
        context.splits.val,
        subset_of_weights=subset_of_weights,
        hessian_structure=hessian_structure,
        prior_precision=prior_precision,
        prior_structure=prior_structure,
        grid=(grid_log10_min, grid_log10_max, grid_points),
        pred_type=pred_type,
        link_approx=link_approx,
        n_samples=n_samples,
        seed=context.seed,
    )


def _make_laplace(network: Classifier, subset: str, structure: str) -> Any:
    with quiet():  # its import warns about torch.jit deprecations
        from laplace import Laplace

    kwargs: dict[str, Any] = {}
    if SubsetOfWeights(subset) is SubsetOfWeights.LAST_LAYER:
        kwargs["last_layer_name"] = LAST_LAYER_NAME
    return Laplace(
        network,
        "classification",
        subset_of_weights=SubsetOfWeights(subset).value,
        hessian_structure=HessianStructure(structure).value,
        backend=_ggn_backend(),
        **kwargs,
    )


@functools.cache
def _ggn_backend() -> type:
    """laplace-torch's default curvature backend (curvlinops' GGN), with its dense GGN built
    on the device of the network's parameters.

    laplace-torch 0.3's ``CurvlinopsInterface.full`` multiplies the curvlinops operator onto
    ``torch.eye(n)`` made without a device, i.e. on torch's default device (the CPU), so
    every ``hessian_structure='full'`` fit of a CUDA network failed with "Expected all
    tensors to be on the same device". This subclass runs that ``full`` with the parameters'
    device as torch's default device, which puts the identity (and anything else made there
    without a device) where the parameters are; on the CPU it gives exactly laplace-torch's
    numbers. The Kronecker and diagonal curvatures are laplace-torch's own. The class is made
    on first use because laplace-torch is imported only when a Laplace teacher is built.
    """
    with quiet():
        from laplace.curvature import CurvlinopsGGN

    class DeviceGGN(CurvlinopsGGN):  # type: ignore[misc]
        def full(
            self, x: Tensor | MutableMapping[str, Any], y: Tensor, **kwargs: Any
        ) -> tuple[Tensor, Tensor]:
            # torch's default-device context: laplace-torch 0.3 makes its identity without one
            with torch.device(next(self.model.parameters()).device):
                return super().full(x, y, **kwargs)

    return DeviceGGN


def _contiguous(network: Classifier) -> Classifier:
    """``network``, or a contiguous copy of it where some parameter is not contiguous.

    laplace-torch 0.3 flattens the weights with ``parameters_to_vector``, whose
    ``param.view(-1)`` refuses a channels-last convolution weight ("view size is not
    compatible with input tensor's size and stride"), and training with
    ``runtime.channels_last`` leaves the network so. The copy computes the same function;
    the caller's network keeps its format.
    """
    if all(p.is_contiguous() for p in network.parameters()):
        return network
    copied = copy.deepcopy(network)
    copied.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return copied


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
def _translate_laplace_errors(
    network: Classifier, subset: SubsetOfWeights, structure: HessianStructure
) -> Iterator[None]:
    """Turn laplace-torch's errors into `ConfigError`s that name only settings that help.

    An error about the network's layers (one laplace-torch cannot handle, a structure it
    does not implement) may go away with settings that ask less of them, so the message
    suggests those of the last layer and a diagonal curvature that differ from the given
    ones. Any other error (a device mismatch, a numerical failure) no setting is known to
    avoid: the message says it failed inside laplace-torch, with its version and the error.
    """
    try:
        yield
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        given = f"subset_of_weights='{subset.value}', hessian_structure='{structure.value}'"
        if not _is_layer_error(exc):
            raise ConfigError(
                f"Laplace with {given} failed inside laplace-torch {_laplace_version()}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        unsupported = kron_unsupported_layers(network)
        all_kron = subset is SubsetOfWeights.ALL and structure is HessianStructure.KRON
        if all_kron and "un-supported layers" in str(exc) and unsupported:
            raise ConfigError(_kron_message(unsupported)) from exc
        layers = sorted({type(m).__name__ for m in network.modules() if not list(m.children())})
        raise ConfigError(
            f"laplace-torch cannot fit {given} on this network (layers: {', '.join(layers)}): "
            f"{type(exc).__name__}: {exc}. {_lighter_settings(subset, structure)}"
        ) from exc


def _is_layer_error(exc: Exception) -> bool:
    message = str(exc).lower()
    return isinstance(exc, NotImplementedError) or any(w in message for w in LAYER_ERROR_WORDS)


def _lighter_settings(subset: SubsetOfWeights, structure: HessianStructure) -> str:
    """A hint naming the settings that ask less of the layers than those given, if any."""
    lighter = []
    if subset is not SubsetOfWeights.LAST_LAYER:
        lighter.append(f"subset_of_weights='{SubsetOfWeights.LAST_LAYER.value}'")
    if structure is not HessianStructure.DIAG:
        lighter.append(f"hessian_structure='{HessianStructure.DIAG.value}'")
    if not lighter:
        return "No setting asks less of the network's layers than these (last layer, diagonal)."
    return f"Try {' or '.join(lighter)}."


def _laplace_version() -> str:
    try:
        return importlib.metadata.version("laplace-torch")
    except importlib.metadata.PackageNotFoundError:  # installed under another name
        return "(version unknown)"


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

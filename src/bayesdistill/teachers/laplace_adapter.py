"""laplace-torch behind one seam: the options it takes, the object it builds, its errors.

Everything bayesdistill needs from laplace-torch's public API (Daxberger et al. 2021,
"Laplace Redux") goes through here, with the workarounds for laplace-torch 0.3 that the
Laplace teacher (`bayesdistill.teachers.laplace`) relies on:

- the options as string enums, one docstring per member (`SubsetOfWeights`,
  `HessianStructure`, `PriorMethod`, `PredType`, `LinkApprox`);
- `make_laplace`: a ``Laplace`` object on a bayesdistill `Classifier` (its last layer is
  ``head``) whose GGN backend builds its dense curvature on the parameters' device
  (`ggn_backend`), fitted on a contiguous copy of a channels-last network
  (`contiguous_network`);
- `translate_laplace_errors`: laplace-torch's errors as `ConfigError`s that name the
  settings that help (`check_supported` refuses ``all``/``kron`` on layers K-FAC cannot
  factor before fitting);
- `validation_nll`: the grid search's loss (laplace-torch 0.3's default never resets);
- `plain_state` / `state_to_device`: a fitted object's state as tensors and plain values
  (saved with ``weights_only``) and back.

The fast GLM predictive that reads laplace-torch's *internals* is `bayesdistill.teachers.
laplace_kron`; pyproject.toml bounds laplace-torch to the versions the tests cover.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.metadata
from collections.abc import Iterator, MutableMapping
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.metrics import NLL_EPS
from bayesdistill.models import Classifier
from bayesdistill.teachers.laplace_kron import quiet

LAST_LAYER_NAME = "head"
"""Every bayesdistill `Classifier` names its last linear layer ``head``."""

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


def make_laplace(network: Classifier, subset: str, structure: str) -> Any:
    """An unfitted laplace-torch ``Laplace`` for classification on ``network``: over its
    ``head`` for ``last_layer``, with the device-safe GGN backend (`ggn_backend`)."""
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
        backend=ggn_backend(),
        **kwargs,
    )


@functools.cache
def ggn_backend() -> type:
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


def contiguous_network(network: Classifier) -> Classifier:
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


def kron_unsupported_layers(network: nn.Module) -> dict[str, str]:
    """Qualified name → type of each module holding parameters that K-FAC cannot factor."""
    return {
        name: type(module).__name__
        for name, module in network.named_modules()
        if not isinstance(module, KRON_LAYERS) and any(True for _ in module.parameters(False))
    }


def check_supported(
    network: nn.Module, subset: SubsetOfWeights, structure: HessianStructure
) -> None:
    """Refuse ``all``/``kron`` before fitting when some parameter lies outside the layers
    K-FAC factors (`kron_unsupported_layers`), with a `ConfigError` naming them."""
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


@contextlib.contextmanager
def translate_laplace_errors(
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


def validation_nll(probs: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of the labels, the grid search's score of one prior precision.

    ``-(1/N) Σ_n log p_n[y_n]`` for ``probs`` ``(N, C)`` and integer ``targets`` ``(N,)``: the
    NLL of laplace-torch's ``RunningNLLMetric`` for one grid point, with probabilities
    clamped to at least `NLL_EPS` (as `bayesdistill.metrics.nll`) so that an exact zero
    scores a large finite loss rather than ``inf``. Returns a 0-d tensor.
    """
    p_true = probs.reshape(-1, probs.shape[-1]).gather(1, targets.reshape(-1, 1).long())
    return -p_true.clamp_min(NLL_EPS).log().mean()


def plain_state(value: Any) -> Any:
    """Laplace state with enums turned into strings and tuples into lists (weights_only-safe)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: plain_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_state(v) for v in value]
    if isinstance(value, Tensor):
        return value.detach().cpu()
    return value


def state_to_device(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [state_to_device(v, device) for v in value]
    return value

"""Laplace teachers: a Gaussian posterior around the trained network, via laplace-torch.

Post hoc on the trained (deterministic) network (Daxberger et al. 2021, "Laplace Redux"):
fit the curvature of the training loss at the MAP weights (last layer by default,
Kronecker-factored GGN), choose the prior precision (marginal likelihood, or grid search on
validation NLL), and predict with the linearised (GLM) predictive and the probit
approximation of the softmax by default. This is the Laplace teacher of Morad et al. (2026).

The default configuration (GLM predictive of a last-layer K-FAC posterior) is computed
without Jacobians by `bayesdistill.teachers.laplace_kron`, which reads laplace-torch's
internals; every other configuration uses laplace-torch's public predictive. What this
module asks of laplace-torch's public API (its options, building and fitting the object,
its errors, its state) goes through `bayesdistill.teachers.laplace_adapter`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import CheckpointError, ConfigError
from bayesdistill.models import Classifier
from bayesdistill.teachers import laplace_kron
from bayesdistill.teachers.base import NetworkTeacher, network_from_state, network_state
from bayesdistill.teachers.context import TEACHERS, TeacherContext
from bayesdistill.teachers.laplace_adapter import (
    HessianStructure,
    LinkApprox,
    PredType,
    PriorMethod,
    SubsetOfWeights,
    check_supported,
    contiguous_network,
    make_laplace,
    plain_state,
    state_to_device,
    translate_laplace_errors,
    validation_nll,
)
from bayesdistill.teachers.laplace_kron import quiet
from bayesdistill.train.batches import data_loader

FIT_BATCH_SIZE = 256
"""Examples per batch laplace-torch reads when fitting the curvature."""


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
            "laplace_state": plain_state(self.laplace.state_dict()),
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
        la = make_laplace(network, payload["subset_of_weights"], payload["hessian_structure"])
        state = dict(payload["laplace_state"])
        state = {k: state_to_device(v, device) for k, v in state.items()}
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
    network = contiguous_network(network)
    device = next(network.parameters()).device
    check_supported(network, subset_of_weights, hessian_structure)
    la = make_laplace(network, subset_of_weights, hessian_structure)
    with quiet(), translate_laplace_errors(network, subset_of_weights, hessian_structure):
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
                    loss=validation_nll,
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


def _check_predictive(pred_type: PredType, link_approx: LinkApprox) -> None:
    if pred_type is PredType.NN and link_approx is not LinkApprox.MC:
        raise ConfigError(
            f"pred_type='nn' samples weights and needs link_approx='mc', got '{link_approx.value}'"
        )


def _loader(data: LabelledData, device: torch.device) -> DataLoader:
    return data_loader(data, device, FIT_BATCH_SIZE)

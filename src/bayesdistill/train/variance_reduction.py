"""Variance-reduced self-distillation: the SVRG estimator of Safaryan et al. (NeurIPS 2023).

Self-distillation with the mixed label, L_n(x) = (1 − λ)·CE(f_x(a_n), y_n) + λ·CE(f_x(a_n),
f_θ(a_n)) (`bayesdistill.losses.self_distill`), has, for linear softmax models at T = 1,
exactly the gradient ∇f_n(x) − λ∇f_n(θ): SVRG's estimator without its full-gradient
correction. Adding the correction +λ∇f(θ), where ∇f(θ) = (1/N) Σ_n ∇CE(f_θ(a_n), y_n) is the
one-hot full-batch gradient at the teacher's weights θ, gives the SVRG estimator

    g_n(x) = ∇f_n(x) − λ∇f_n(θ) + λ∇f(θ),

unbiased for ∇f(x) and with zero variance at x = θ when λ = 1. `SVRGCorrection` adds the
linear term λ·Σ_p ⟨∇f(θ)_p, x_p⟩ to any objective, so back-propagation adds λ∇f(θ) to each
step's gradient; the teacher must be a network of the student's architecture
(self-distillation). For networks the mixed-label gradient is only approximately
∇f_n(x) − λ∇f_n(θ) (exact for the last layer's logits), so the correction is the natural
generalisation, not an identity. The loss name is ``self_distill_vr``: its registry entry
names the objective ``"svrg"``, which `distill` builds with `svrg_objective`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import ConfigError
from bayesdistill.losses.response import linear_warmup
from bayesdistill.train.batches import iterate
from bayesdistill.train.features import feature_network
from bayesdistill.train.objective import Objective, StepInputs, StepLoss
from bayesdistill.train.protocol import Teacher

GRADIENT_BATCH_SIZE = 1024
"""Examples per forward pass when computing the full gradient at the teacher's weights."""


def full_gradient(
    network: nn.Module, data: LabelledData, batch_size: int = GRADIENT_BATCH_SIZE
) -> list[Tensor]:
    """∇f(θ) = (1/N) Σ_n ∇_θ CE(f_θ(a_n), y_n) at ``network``'s weights (eval mode), one
    tensor per parameter, detached."""
    params = [p for p in network.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    device = params[0].device
    was_training = network.training
    network.eval()
    try:
        for x, y in iterate(data, device, batch_size):
            loss = F.cross_entropy(network(x), y, reduction="sum") / len(data)
            for acc, grad in zip(total, torch.autograd.grad(loss, params), strict=True):
                acc += grad
    finally:
        network.train(was_training)
    return [g.detach() for g in total]


def check_same_architecture(student: nn.Module, teacher: nn.Module) -> None:
    """Raise `ConfigError` unless the two networks have parameters of the same names/shapes."""
    s = [(n, tuple(p.shape)) for n, p in student.named_parameters() if p.requires_grad]
    t = [(n, tuple(p.shape)) for n, p in teacher.named_parameters() if p.requires_grad]
    if s != t:
        diff = next(
            (f"'{a[0]}' {a[1]} vs '{b[0]}' {b[1]}" for a, b in zip(s, t, strict=False) if a != b),
            f"{len(s)} vs {len(t)} parameter tensors",
        )
        raise ConfigError(
            "self_distill_vr adds the teacher's full gradient to the student's, so the teacher "
            f"network must have the student's architecture (self-distillation); they differ: {diff}"
        )


class SVRGCorrection:
    """``objective + λ_t·Σ_p ⟨G_p, x_p⟩`` with G = ∇f(θ) fixed (on the student's device);
    λ_t = λ·min(1, epoch/ramp)."""

    def __init__(
        self, objective: Objective, gradient: Sequence[Tensor], lam: float, ramp_epochs: float
    ) -> None:
        self.objective = objective
        self.gradient = list(gradient)
        self.lam = lam
        self.ramp_epochs = ramp_epochs

    def __call__(self, model: nn.Module, inputs: StepInputs) -> StepLoss:
        loss, terms = self.objective(model, inputs)
        params = [p for p in model.parameters() if p.requires_grad]
        weight = self.lam * linear_warmup(inputs.epoch, self.ramp_epochs)
        linear = sum((g * p).sum() for g, p in zip(self.gradient, params, strict=True))
        # adds weight·G to the gradient and nothing to the logged value of the loss
        return loss + weight * (linear - linear.detach()), terms  # type: ignore[operator]


def svrg_objective(
    name: str,
    loss: Objective,
    options: Mapping[str, Any],
    *,
    student: nn.Module,
    teacher: Teacher,
    train: LabelledData,
) -> SVRGCorrection:
    """``loss`` (the self-distillation loss ``name`` on the logits) plus the SVRG correction
    λ·∇f(θ) at the teacher's network, with λ and its ramp from ``options`` (``lam``,
    ``ramp_epochs``, defaults filled in).

    Raises `ConfigError` when the teacher has no single network or its network is not of
    the student's architecture.
    """
    try:
        network = feature_network(teacher)
    except ConfigError:
        kind = getattr(teacher, "kind", type(teacher).__name__)
        raise ConfigError(
            f"{name} needs the teacher's network (its full gradient), but a teacher of kind "
            f"'{kind}' has none (ensembles and exact/noisy Bayes teachers do not); use a "
            "teacher of another kind whose network has the student's architecture"
        ) from None
    check_same_architecture(student, network)
    gradient = full_gradient(network, train)
    device = next(student.parameters()).device
    return SVRGCorrection(
        loss,
        [g.to(device) for g in gradient],
        float(options["lam"]),
        float(options["ramp_epochs"]),
    )

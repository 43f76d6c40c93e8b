"""Point-estimate teachers trained *to estimate the Bayes class probabilities*, the two
non-Bayesian baselines of Morad et al. (2026, REFERENCE §1).

* MSE teacher (Hamidi et al., ECCV 2024, "How to Train the Teacher Model for Effective
  Knowledge Distillation"): trained from scratch with the squared error between the
  softmax output and the one-hot label (the Brier score),
  L = (1/B) Σ_b Σ_k (softmax(f(x_b))_k − [y_b = k])². Its minimiser over all functions is
  p*(·|x), and unlike CE it does not reward over-confidence on hard examples. Option
  ``target_space='logits'`` instead regresses the raw logits on the one-hot vector,
  ``mse_loss(f(x), e_y)`` averaged over B·C, as the public code of Morad et al.
  (``scripts/train_teacher_deterministic_VI.py --mse``) does.
* MCMI teacher (Ye et al., ICLR 2024, "Bayes Conditional Distribution Estimation for
  Knowledge Distillation Based on Conditional Mutual Information"): the trained network
  fine-tuned to maximise the log-likelihood *and* the conditional mutual information
  I(X; Ŷ | Y) = E_y E_{x|y} KL(p(·|x) ‖ Q_y), with the class centroid
  Q_y = E_{x|y}[p(·|x)]. The loss is L = CE − λ · (1/B) Σ_b KL(p(·|x_b) ‖ Q_{y_b}), with
  Q recomputed on the whole training set (network in eval mode, no gradient) at the start
  of every fine-tuning epoch and treated as a constant. What is left out: their per-batch
  exponential-moving-average centroid updates from a class-balanced sample, and any
  λ tuning. Note that the public code of Morad et al. (``scripts/train_teacher_MCMI.py``)
  *adds* λ·KL (minimising the CMI) with centroids fixed before fine-tuning; a negative
  ``cmi_weight`` gives that sign.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayesdistill.data.augment import Augmentation
from bayesdistill.data.stream import LabelledData
from bayesdistill.errors import ConfigError
from bayesdistill.losses.response import PROB_FLOOR
from bayesdistill.models import Classifier
from bayesdistill.teachers.base import network_from_state, network_state
from bayesdistill.teachers.deterministic import DeterministicTeacher
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.batches import iterate, num_batches
from bayesdistill.train.loop import FitResult, fit
from bayesdistill.train.settings import TrainSettings

TargetSpace = Literal["softmax", "logits"]
CENTROID_BATCH_SIZE = 2048


def brier_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """(1/B) Σ_b Σ_k (softmax(z_b)_k − [y_b = k])² for logits ``(B, C)``, labels ``(B,)``."""
    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return (torch.softmax(logits, dim=1) - onehot).pow(2).sum(1).mean()


def logit_mse_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """mean over B·C of (z_{b,k} − [y_b = k])² (the public code's ``mse_loss(logits, e_y)``)."""
    return F.mse_loss(logits, F.one_hot(labels, logits.shape[1]).to(logits.dtype))


class MSETeacher(DeterministicTeacher):
    """softmax(f(x)) of a network trained with the squared error (Hamidi et al. 2024)."""

    kind = "mse_teacher"

    def __init__(self, network: Classifier, *, target_space: TargetSpace = "softmax") -> None:
        super().__init__(network)
        if target_space not in ("softmax", "logits"):
            raise ConfigError(f"target_space must be 'softmax' or 'logits', got {target_space!r}")
        self.target_space = target_space

    def payload(self) -> dict[str, Any]:
        return {"network": network_state(self.network), "target_space": self.target_space}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MSETeacher:
        return cls(network_from_state(payload["network"]), target_space=payload["target_space"])

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "target_space": self.target_space}


def train_mse_teacher(
    network: Classifier,
    train: LabelledData,
    *,
    settings: TrainSettings,
    seed: int,
    target_space: TargetSpace = "softmax",
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    augment: Augmentation | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    accel: Acceleration = DEFAULT_ACCELERATION,
) -> tuple[MSETeacher, FitResult]:
    """Train ``network`` in place with the Brier (or logit MSE) loss; return the teacher."""
    loss = brier_loss if target_space == "softmax" else logit_mse_loss
    result = fit(
        network,
        train,
        loss_fn=lambda logits, _teacher, y: loss(logits, y),
        settings=settings,
        seed=seed,
        evaluate=evaluate,
        augment=augment,
        run_dir=run_dir,
        resume=resume,
        progress=progress,
        accel=accel,
        description="mse teacher",
        fingerprint_extra={"loss": target_space},
    )
    return MSETeacher(network, target_space=target_space), result


@torch.no_grad()
def class_centroids(network: nn.Module, data: LabelledData, num_classes: int) -> Tensor:
    """Q ``(C, C)``: row y is the mean softmax output over the examples labelled y.

    A class without examples gets the uniform distribution. The network is evaluated in
    eval mode; its mode is restored afterwards.
    """
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    sums = torch.zeros(num_classes, num_classes, device=device)
    counts = torch.zeros(num_classes, device=device)
    for x, y in iterate(data, device, CENTROID_BATCH_SIZE):
        sums.index_add_(0, y, torch.softmax(network(x), dim=1))
        counts.index_add_(0, y, torch.ones_like(y, dtype=counts.dtype))
    network.train(was_training)
    empty = counts == 0
    sums[empty] = 1.0
    counts[empty] = float(num_classes)
    return sums / counts[:, None]


def conditional_mutual_information(logits: Tensor, labels: Tensor, centroids: Tensor) -> Tensor:
    """Batch estimate of I(X; Ŷ | Y): (1/B) Σ_b KL(softmax(z_b) ‖ Q_{y_b}) (Ye et al. 2024)."""
    log_p = torch.log_softmax(logits, dim=1)
    log_q = centroids[labels].clamp_min(PROB_FLOOR).log()
    return (log_p.exp() * (log_p - log_q)).sum(1).mean()


class MCMITeacher(DeterministicTeacher):
    """softmax(f(x)) of a network fine-tuned with the MCMI objective (Ye et al. 2024)."""

    kind = "mcmi"

    def __init__(self, network: Classifier, *, cmi_weight: float) -> None:
        super().__init__(network)
        self.cmi_weight = float(cmi_weight)

    def payload(self) -> dict[str, Any]:
        return {"network": network_state(self.network), "cmi_weight": self.cmi_weight}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MCMITeacher:
        return cls(network_from_state(payload["network"]), cmi_weight=payload["cmi_weight"])

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "cmi_weight": self.cmi_weight}


class _CentroidModel(nn.Module):
    """The network plus class centroids that are refreshed at the start of every epoch.

    Centroids and the step count live in the module's state, so a resumed run continues
    with the centroids it had.
    """

    def __init__(self, network: Classifier, data: LabelledData, steps_per_epoch: int) -> None:
        super().__init__()
        self.network = network
        self.data = data
        self.steps_per_epoch = steps_per_epoch
        c = network.num_classes
        self.register_buffer("centroids", torch.full((c, c), 1.0 / c))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            if int(self.steps_done) % self.steps_per_epoch == 0:
                self.centroids.copy_(
                    class_centroids(self.network, self.data, self.network.num_classes)
                )
            self.steps_done += 1
        return self.network(x)


def finetune_mcmi(
    network: Classifier,
    train: LabelledData,
    *,
    settings: TrainSettings,
    seed: int,
    cmi_weight: float = 0.1,
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    augment: Augmentation | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    accel: Acceleration = DEFAULT_ACCELERATION,
) -> tuple[MCMITeacher, FitResult]:
    """Fine-tune a *copy* of ``network`` with CE − λ·CMI; return the teacher.

    Args:
        network: the trained network (not modified).
        train: the training set (centroids and fine-tuning).
        settings: the fine-tuning run (a few epochs at a small lr).
        seed: seeds the batch order.
        cmi_weight: λ; positive maximises the CMI (Ye et al.), negative minimises it.
    """
    network = copy.deepcopy(network)
    steps_per_epoch = num_batches(len(train), settings.batch_size, settings.drop_last)
    device = next(network.parameters()).device
    model = _CentroidModel(network, train.to(device), steps_per_epoch)

    def loss_fn(logits: Tensor, _teacher: Tensor | None, y: Tensor) -> Tensor:
        cmi = conditional_mutual_information(logits, y, model.centroids)
        return F.cross_entropy(logits, y) - cmi_weight * cmi

    result = fit(
        model,
        train,
        loss_fn=loss_fn,
        settings=settings,
        seed=seed,
        evaluate=evaluate,
        augment=augment,
        run_dir=run_dir,
        resume=resume,
        progress=progress,
        accel=accel,
        description="mcmi teacher",
        fingerprint_extra={"cmi_weight": cmi_weight},
    )
    return MCMITeacher(network.eval(), cmi_weight=cmi_weight), result

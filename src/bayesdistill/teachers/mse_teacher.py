"""The MSE teacher, a non-Bayesian baseline of Morad et al. (2026, REFERENCE §1) trained *to
estimate the Bayes class probabilities* (Hamidi et al., ECCV 2024, "How to Train the Teacher
Model for Effective Knowledge Distillation").

It is trained from scratch with the squared error between the softmax output and the
one-hot label (the Brier score), L = (1/B) Σ_b Σ_k (softmax(f(x_b))_k − [y_b = k])². Its
minimiser over all functions is p*(·|x), and unlike CE it does not reward over-confidence
on hard examples. Option ``target_space='logits'`` instead regresses the raw logits on the
one-hot vector, ``mse_loss(f(x), e_y)`` averaged over B·C, as the public code of Morad et
al. (``scripts/train_teacher_deterministic_VI.py --mse``) does.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import ConfigError
from bayesdistill.models import Classifier
from bayesdistill.teachers.base import network_from_state, network_state
from bayesdistill.teachers.context import TEACHERS, TeacherContext
from bayesdistill.teachers.deterministic import DeterministicTeacher
from bayesdistill.train.loop import FitResult, fit
from bayesdistill.train.run_options import DEFAULT_RUN, RunOptions
from bayesdistill.train.settings import OptimizerName, TrainSettings

TargetSpace = Literal["softmax", "logits"]


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
    run: RunOptions = DEFAULT_RUN,
) -> tuple[MSETeacher, FitResult]:
    """Train ``network`` in place with the Brier (or logit MSE) loss; return the teacher.

    ``run``: how the training runs (evaluation, augmentation, run folder, resume, progress,
    speed: `RunOptions`).
    """
    loss = brier_loss if target_space == "softmax" else logit_mse_loss
    result = fit(
        network,
        train,
        loss_fn=lambda logits, _teacher, y: loss(logits, y),
        settings=settings,
        seed=seed,
        **run.fit_options(),
        description="mse teacher",
        fingerprint_extra={"loss": target_space},
    )
    return MSETeacher(network, target_space=target_space), result


@TEACHERS.register(
    "mse_teacher", saves=MSETeacher, needs_network=False, learns_from_data=True, bayesian=False
)
def build_mse_teacher(
    context: TeacherContext,
    *,
    target_space: TargetSpace = "softmax",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    optimizer: OptimizerName | None = None,
) -> MSETeacher:
    """Network trained from the teacher's init with the Brier/MSE loss (Hamidi et al. 2024).

    Same architecture, initial weights and training settings as the teacher network
    (``context.init_network``; the trained network is not used); only the loss differs.
    ``target_space: logits`` regresses logits on one-hot labels.
    """
    settings = context.settings_with(
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer
    )
    teacher, _ = train_mse_teacher(
        context.need_init_network("mse_teacher"),
        context.splits.train,
        settings=settings,
        seed=context.seed,
        target_space=target_space,
        run=context.run_options(),
    )
    return teacher

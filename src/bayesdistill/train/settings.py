"""Training settings: a typed dataclass that is also the config schema."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import pydantic

from bayesdistill.errors import ConfigError


class OptimizerName(str, Enum):
    """First-order optimiser of a training run."""

    SGD = "sgd"
    """SGD with (optionally Nesterov) momentum and decoupled-from-nothing L2 weight decay."""
    ADAM = "adam"
    """Adam (used by the paper's public code; the theory is for SGD)."""


class ScheduleName(str, Enum):
    """Learning-rate schedule, evaluated per optimisation step."""

    COSINE = "cosine"
    """Cosine decay from lr to 0 over all steps (after warm-up)."""
    MULTISTEP = "multistep"
    """Multiply lr by gamma at each epoch in milestones."""
    CONSTANT = "constant"
    """Keep lr fixed (after warm-up)."""


@dataclass(frozen=True)
class TrainSettings:
    """How to train one network by (stochastic) gradient descent.

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per step.
        optimizer: ``sgd`` or ``adam``.
        lr: peak learning rate.
        momentum: SGD momentum (ignored by Adam).
        nesterov: use Nesterov momentum (SGD only; needs momentum > 0).
        weight_decay: L2 penalty coefficient.
        schedule: ``cosine``, ``multistep`` or ``constant``.
        milestones: epochs at which ``multistep`` multiplies lr by ``gamma``.
        gamma: ``multistep`` factor.
        warmup_epochs: linear warm-up from 0 over this many epochs.
        evals_per_epoch: evaluation points per epoch (learning-curve resolution).
        drop_last: drop the last incomplete batch of each epoch.
        grad_clip_norm: rescale each step's gradient to at most this L2 norm (over all
            parameters; ``torch.nn.utils.clip_grad_norm_``); None = no clipping. Losses
            with large scales (DKD's β·T² = 128, DIST's w·τ² = 32) can make plain SGD
            diverge on networks without normalisation layers. IVON has its own clipping.
    """

    __pydantic_config__ = pydantic.ConfigDict(extra="forbid")

    epochs: int = 30
    batch_size: int = 64
    optimizer: OptimizerName = OptimizerName.SGD
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: ScheduleName = ScheduleName.COSINE
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    evals_per_epoch: int = 1
    drop_last: bool = False
    grad_clip_norm: float | None = None

    def __post_init__(self) -> None:
        finite = {
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "gamma": self.gamma,
            "warmup_epochs": self.warmup_epochs,
            "grad_clip_norm": self.grad_clip_norm,
        }
        for name, value in finite.items():
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value}")
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.gamma > 0, f"gamma must be positive, got {self.gamma}"),
            (
                self.evals_per_epoch >= 1,
                f"evals_per_epoch must be >= 1, got {self.evals_per_epoch}",
            ),
            (
                0 <= self.warmup_epochs < self.epochs,
                f"warmup_epochs must lie in [0, epochs), got {self.warmup_epochs}",
            ),
            (not self.nesterov or self.momentum > 0, "nesterov needs momentum > 0"),
            (
                self.grad_clip_norm is None or self.grad_clip_norm > 0,
                f"grad_clip_norm must be positive (or null), got {self.grad_clip_norm}",
            ),
            (
                all(0 < m <= self.epochs for m in self.milestones),
                f"milestones must lie in (0, epochs={self.epochs}], got {list(self.milestones)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        object.__setattr__(self, "optimizer", OptimizerName(self.optimizer))
        object.__setattr__(self, "schedule", ScheduleName(self.schedule))
        object.__setattr__(self, "milestones", tuple(sorted(self.milestones)))

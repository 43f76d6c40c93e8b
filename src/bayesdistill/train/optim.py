"""Optimisers and per-step learning-rate schedules built from `TrainSettings`."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from bayesdistill.train.settings import OptimizerName, ScheduleName, TrainSettings


def build_optimizer(
    params: Iterable[nn.Parameter], settings: TrainSettings
) -> torch.optim.Optimizer:
    """SGD (momentum / Nesterov / weight decay) or Adam with the settings' lr."""
    if settings.optimizer is OptimizerName.SGD:
        return torch.optim.SGD(
            params,
            lr=settings.lr,
            momentum=settings.momentum,
            nesterov=settings.nesterov,
            weight_decay=settings.weight_decay,
        )
    return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)


class LRFactor:
    """The lr multiplier at optimisation step t (a picklable callable for `LambdaLR`).

    Linear warm-up over ``warmup_epochs``, then the schedule: cosine decay to 0 at the
    last step, step decay by ``gamma`` at each milestone epoch, or constant.
    """

    def __init__(self, settings: TrainSettings, steps_per_epoch: int) -> None:
        self.settings = settings
        self.steps_per_epoch = steps_per_epoch
        self.total = settings.epochs * steps_per_epoch
        self.warmup = round(settings.warmup_epochs * steps_per_epoch)

    def __call__(self, step: int) -> float:
        s = self.settings
        if step < self.warmup:
            return (step + 1) / self.warmup
        if s.schedule is ScheduleName.COSINE:
            progress = (step - self.warmup) / max(1, self.total - self.warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if s.schedule is ScheduleName.MULTISTEP:
            epoch = step / self.steps_per_epoch
            return s.gamma ** sum(epoch >= m for m in s.milestones)
        return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, settings: TrainSettings, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` stepped once per optimisation step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRFactor(settings, steps_per_epoch))

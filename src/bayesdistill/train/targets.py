"""Where a student's soft targets come from during training.

Without augmentation the teacher's predictions on the training set are computed once
(`CachedTargets`) and looked up by index, so a distillation epoch costs about what a
one-hot epoch costs whatever the teacher (a Bayesian one with S samples included). With
augmentation the teacher must see each augmented batch (`OnlineTargets`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:  # avoid an import cycle: teachers train networks with bayesdistill.train
    from bayesdistill.teachers.base import Teacher


class TargetSource(Protocol):
    def __call__(self, x: Tensor, index: Tensor) -> Tensor:
        """Teacher probabilities ``(B, C)`` for a batch ``x`` at dataset positions ``index``."""
        ...


class CachedTargets:
    """Precomputed teacher probabilities ``(N, C)``, looked up by dataset index."""

    def __init__(self, probs: Tensor) -> None:
        self.probs = probs

    def __call__(self, x: Tensor, index: Tensor) -> Tensor:
        return self.probs[index]


class OnlineTargets:
    """Ask the teacher on every batch (needed when inputs are augmented)."""

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher

    def __call__(self, x: Tensor, index: Tensor) -> Tensor:
        return self.teacher.predict_proba(x)


@torch.no_grad()
def predict_in_batches(teacher: Teacher, x: Tensor, batch_size: int = 1024) -> Tensor:
    """``teacher.predict_proba`` over ``x`` in chunks; returns ``(N, C)`` on x's device."""
    chunks = [teacher.predict_proba(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(chunks).to(x.device)

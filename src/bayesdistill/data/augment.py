"""Batch augmentations for in-memory data, each drawing randomness from a generator.

An augmentation is a callable ``(x, generator) -> x'`` on a batch ``(B, ..., L)``. When a
student trains with augmentation, its teacher is queried on every augmented batch instead
of once on the clean training set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from bayesdistill.errors import ConfigError
from bayesdistill.registry import Registry


class Augmentation(Protocol):
    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor: ...


AUGMENTATIONS: Registry = Registry("augmentation")


class RandomShift:
    """Translate each example along its last axis by an integer in [−max_shift, max_shift].

    Positions shifted in from outside are zero (the standardised signal's mean).
    """

    def __init__(self, *, max_shift: int = 4) -> None:
        if max_shift < 0:
            raise ConfigError(f"max_shift must be >= 0, got {max_shift}")
        self.max_shift = max_shift

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        length = x.shape[-1]
        shift = torch.randint(
            -self.max_shift, self.max_shift + 1, (x.shape[0],), generator=generator
        ).to(x.device)
        source = torch.arange(length, device=x.device) - shift[:, None]  # (B, L)
        valid = (source >= 0) & (source < length)
        source = source.clamp(0, length - 1)
        view = (x.shape[0],) + (1,) * (x.ndim - 2) + (length,)
        shifted = torch.gather(x, -1, source.view(view).expand_as(x))
        return shifted * valid.view(view).to(x.dtype)


class GaussianNoise:
    """Add i.i.d. N(0, std²) noise to every input coordinate."""

    def __init__(self, *, std: float = 0.05) -> None:
        if std < 0:
            raise ConfigError(f"std must be >= 0, got {std}")
        self.std = std

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x + self.std * noise.to(x.device)


class Compose:
    """Apply augmentations in order."""

    def __init__(self, steps: Sequence[Augmentation]) -> None:
        self.steps = list(steps)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        for step in self.steps:
            x = step(x, generator)
        return x


AUGMENTATIONS.register("shift")(RandomShift)
AUGMENTATIONS.register("noise")(GaussianNoise)

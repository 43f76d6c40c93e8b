"""The classifier interface every model follows: features, then a linear head."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn


class Classifier(nn.Module):
    """A network ``x ↦ head(features(x))`` whose penultimate features are accessible.

    Subclasses set ``self.head`` (an `nn.Linear`, the last layer that last-layer Laplace
    treats probabilistically) and implement `features`.
    """

    head: nn.Linear
    spec: ModelSpec

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features, ``(B, F)``."""
        raise NotImplementedError

    def forward(self, x: Tensor, with_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits ``(B, C)``; with ``with_features``, ``(logits, features (B, F))`` from one
        pass (through ``forward``, so a DDP or compiled wrapper sees the whole pass)."""
        z = self.features(x)
        logits = self.head(z)
        return (logits, z) if with_features else logits

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits (B, C), features (B, F))`` from one pass."""
        return self(x, with_features=True)  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return self.head.out_features


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a registered model (weights aside)."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    options: dict[str, Any] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ModelSpec:
        return cls(
            state["name"],
            tuple(state["input_shape"]),
            int(state["num_classes"]),
            dict(state["options"]),
        )


def flat_size(input_shape: tuple[int, ...]) -> int:
    return math.prod(input_shape)

"""Monte Carlo dropout teachers (Gal & Ghahramani, ICML 2016, "Dropout as a Bayesian
Approximation").

A network trained with dropout defines an approximate posterior over its weights: each
dropout mask selects a thinned network θ_s. The predictive is the mean of softmax over S
masks, p(y|x) ≈ (1/S) Σ_s softmax(f_{θ_s}(x)), with dropout active and everything else
(BatchNorm included) in eval mode.

Conventions:

* Masks come from a generator seeded by ``(seed, s)`` and are *shared by every example of
  a batch* within sample s: sample s is one thinned network, which is the weight-space view
  of Gal & Ghahramani. Each example's predictive has the same distribution as with
  per-example masks, and the teacher is a fixed function of x (repeated calls and any
  batching give the same probabilities).
* A network without dropout layers is an error, not something to patch: MC dropout is
  approximate inference only for a network *trained* with the same dropout, and inserting
  dropout into a network trained without it adds noise its weights were never fitted to.
  Train the teacher network with dropout (``mlp``/``cnn1d`` option ``dropout``).
* ``p`` (optional) replaces the trained rate of every dropout layer at prediction;
  ``p = 0`` gives the deterministic network exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.models import Classifier
from bayesdistill.seeding import generator
from bayesdistill.teachers.base import NetworkTeacher, network_from_state, network_state
from bayesdistill.teachers.context import TEACHERS, TeacherContext

ELEMENTWISE_DROPOUT = (nn.Dropout,)
"""Layers that drop single activations: the mask has the activation's shape (batch aside)."""
CHANNEL_DROPOUT = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
"""Layers that drop whole channels: the mask has one entry per channel (dim 1)."""
UNSUPPORTED_DROPOUT = (nn.AlphaDropout, nn.FeatureAlphaDropout)


def dropout_layers(network: nn.Module) -> dict[str, nn.Module]:
    """The network's dropout layers by qualified name; raises for unsupported kinds."""
    found: dict[str, nn.Module] = {}
    for name, module in network.named_modules():
        if isinstance(module, UNSUPPORTED_DROPOUT):
            raise ConfigError(
                f"MC dropout does not support {type(module).__name__} (layer '{name}'); "
                "use nn.Dropout or nn.Dropout1d/2d/3d"
            )
        if isinstance(module, ELEMENTWISE_DROPOUT + CHANNEL_DROPOUT):
            found[name] = module
    return found


def checked_dropout_layers(network: nn.Module) -> dict[str, nn.Module]:
    """`dropout_layers`, or a `ConfigError` when the network has none (also checked on the
    configured network, built on the meta device, before a study starts)."""
    found = dropout_layers(network)
    if not found:
        layers = sorted({type(m).__name__ for m in network.modules() if not list(m.children())})
        raise ConfigError(
            "MC dropout needs a network trained with dropout, but this one has no dropout "
            f"layer (layers: {', '.join(layers)}). Train the teacher network with dropout "
            "(e.g. teacher.model.dropout=0.1 for 'mlp' or 'cnn1d'); dropout added "
            "after training is not an approximate posterior."
        )
    return found


class MCDropoutTeacher(NetworkTeacher):
    """Mean of softmax over S dropout masks of a network trained with dropout."""

    kind = "mc_dropout"

    def __init__(
        self, network: Classifier, *, num_samples: int = 10, p: float | None = None, seed: int = 0
    ) -> None:
        super().__init__(network)
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        if p is not None and not 0.0 <= p < 1.0:
            raise ConfigError(f"p must lie in [0, 1), got {p}")
        self.layers = checked_dropout_layers(network)
        self.num_samples = num_samples
        self.p = p
        self.seed = seed

    def rate(self, layer: nn.Module) -> float:
        """The dropout rate used at prediction for ``layer``."""
        return float(layer.p) if self.p is None else self.p  # type: ignore[arg-type]

    def _predict(self, x: Tensor) -> Tensor:
        self.network.eval()
        total = torch.zeros(len(x), self.num_classes, device=x.device)
        for s in range(self.num_samples):
            with self._masks(generator(self.seed, s)):
                total += torch.softmax(self.network(x), dim=1)
        return total / self.num_samples

    @contextlib.contextmanager
    def _masks(self, gen: torch.Generator) -> Iterator[None]:
        """Apply one mask per dropout layer (drawn in forward order, shared by the batch)."""

        def hook(module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> Tensor:
            (h,) = inputs
            keep = 1.0 - self.rate(module)
            if keep == 1.0:
                return h
            shape = list(h.shape[1:])
            if isinstance(module, CHANNEL_DROPOUT):
                shape = [shape[0]] + [1] * (len(shape) - 1)
            # drawn on the CPU (the generator's device), so the masks, and the teacher's
            # probabilities, are the same on every device
            mask = (torch.rand(shape, generator=gen) < keep).to(h.device)
            return h * mask.to(h.dtype) / keep

        handles = [layer.register_forward_hook(hook) for layer in self.layers.values()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def payload(self) -> dict[str, Any]:
        return {
            "network": network_state(self.network),
            "num_samples": self.num_samples,
            "p": self.p,
            "seed": self.seed,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MCDropoutTeacher:
        return cls(
            network_from_state(payload["network"]),
            num_samples=payload["num_samples"],
            p=payload["p"],
            seed=payload["seed"],
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "num_samples": self.num_samples,
            "p": sorted({self.rate(layer) for layer in self.layers.values()}),
        }


@TEACHERS.register(
    "mc_dropout", saves=MCDropoutTeacher, needs_network=True, learns_from_data=True, bayesian=True
)
def build_mc_dropout(
    context: TeacherContext, *, num_samples: int = 10, p: float | None = None
) -> MCDropoutTeacher:
    """MC dropout (Gal & Ghahramani 2016): mean softmax over S dropout masks of the network.

    The teacher network must have been trained with dropout; ``p`` overrides its rate at
    prediction (0 gives the deterministic teacher).
    """
    return MCDropoutTeacher(
        context.need_network("mc_dropout"), num_samples=num_samples, p=p, seed=context.seed
    )

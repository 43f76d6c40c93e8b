"""Per-sample gradients with torch.func, and the gradient-noise statistics built on them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from bayesdistill.losses import soft_cross_entropy

GRADIENT_CHUNK = 512
"""Samples per vmap call (bounds the memory of the stacked gradients)."""


def per_sample_gradients(
    loss: Callable[..., Tensor], params: Tensor, *batched: Tensor, chunk: int = GRADIENT_CHUNK
) -> Tensor:
    """Gradients of ``loss(params, *one_sample)`` for every sample: ``(n, *params.shape)``.

    ``loss`` takes the parameters and one sample of each of ``batched`` (leading dimension
    n) and returns a scalar; `torch.func.vmap` over `torch.func.grad` does the rest.
    """
    fn = vmap(grad(loss), in_dims=(None,) + (0,) * len(batched))
    n = len(batched[0])
    return torch.cat([fn(params, *(b[i : i + chunk] for b in batched)) for i in range(0, n, chunk)])


def network_sample_gradients(
    model: nn.Module, x: Tensor, targets: Tensor, chunk: int = GRADIENT_CHUNK
) -> Tensor:
    """Per-sample gradients ``(n, P)`` of the soft cross-entropy −Σ_k q_k log softmax(f(x))_k
    of a network w.r.t. all its parameters (flattened), with the network in eval mode.

    ``targets`` are probabilities ``(n, C)`` (one-hot rows for labels).
    """
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss(p: dict[str, Tensor], xi: Tensor, qi: Tensor) -> Tensor:
        logits = functional_call(model, (p, buffers), (xi[None],))
        return soft_cross_entropy(logits, qi[None])

    fn = vmap(grad(loss), in_dims=(None, 0, 0))
    parts = []
    for i in range(0, len(x), chunk):
        g = fn(params, x[i : i + chunk], targets[i : i + chunk])
        parts.append(torch.cat([v.reshape(len(v), -1) for v in g.values()], dim=1))
    return torch.cat(parts)


def gradient_noise(gradients: Tensor) -> tuple[float, float]:
    """Trace of the per-sample gradient covariance, E‖g − ḡ‖², and its standard error.

    ``gradients`` is ``(n, ...)``. At an optimum ḡ = 0 and this is σ* = E‖g‖²; a minibatch
    of B samples drawn with replacement has gradient noise E‖g_B − ḡ‖² = this / B.
    """
    g = gradients.reshape(len(gradients), -1).to(torch.float64)
    sq = (g - g.mean(0)).square().sum(1)
    return float(sq.mean()), float(sq.std() / len(sq) ** 0.5)

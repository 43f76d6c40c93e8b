"""Mean-field Gaussian layers: the posterior family of mean-field VI (`variational`).

Every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` weight w (and bias) gets the
posterior q(w) = N(μ, σ²), σ = softplus(ρ), independently per entry, and the Gaussian prior
p(w) = N(0, σ_p²) with σ_p² = 1/fan_in per layer or a given ``prior_std``
(`to_mean_field`). A layer draws its weights with one of two estimators (`Estimator`):

* reparameterisation (Blundell et al. 2015): one weight sample w = μ + σ ⊙ ε per forward
  pass, shared by the batch;
* Flipout (Wen et al., ICLR 2018): the shared perturbation Δw = σ ⊙ ε is decorrelated
  across examples by random signs, Δw_n = Δw ⊙ r_n s_nᵀ, computed as
  ``op(x, μ) + r_n ⊙ op(x ⊙ s_n, Δw)``; s_n has one sign per input feature/channel and
  r_n one per output feature/channel, so every example sees a weight with the exact
  marginal N(μ, σ²) at twice the cost of a forward pass, and lower gradient variance.

In eval mode a layer uses the means; `sampling`, `fixed_weights` and `recording` switch a
whole network to drawn, given or recorded weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.models import Classifier

SUPPORTED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
DEFAULT_INIT_STD = 0.01
"""Initial posterior std σ of every weight (small: training starts near a point estimate)."""


class Estimator(str, Enum):
    """Monte Carlo estimator of the expected log-likelihood's gradient."""

    REPARAM = "reparam"
    """One weight sample per forward pass, shared by the batch (Blundell et al. 2015)."""
    FLIPOUT = "flipout"
    """Per-example sign-flipped perturbations of one sample (Wen et al. 2018)."""


def inverse_softplus(y: float) -> float:
    """ρ with softplus(ρ) = y, for y > 0."""
    return y + math.log(-math.expm1(-y))


def fan_in(layer: nn.Module) -> int:
    """Inputs feeding one output unit: in_features, or in_channels/groups × kernel size."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels // layer.groups * math.prod(layer.kernel_size)  # type: ignore[operator]


def gaussian_kl(mean: Tensor, std: Tensor, prior_std: Tensor) -> Tensor:
    """Σ KL(N(mean, std²) ‖ N(0, prior_std²)) = Σ log(σ_p/σ) + (σ² + μ²)/(2σ_p²) − 1/2."""
    return (torch.log(prior_std / std) + (std**2 + mean**2) / (2 * prior_std**2) - 0.5).sum()


class MeanFieldLayer(nn.Module):
    """A Linear/Conv1d/Conv2d layer with a factorised Gaussian posterior over its weights.

    Parameters ``weight_mean``, ``weight_rho`` (σ = softplus(ρ)) and the same for the bias;
    buffer ``prior_std``. Samples weights in training mode (with ``estimator``), uses the
    means in eval mode; `sampling` overrides both.
    """

    def __init__(self, layer: nn.Module, *, prior_std: float, init_std: float) -> None:
        super().__init__()
        if type(layer) not in SUPPORTED_LAYERS:
            raise ConfigError(
                f"mean-field VI supports nn.Linear, nn.Conv1d and nn.Conv2d, not "
                f"{type(layer).__name__}"
            )
        if not prior_std > 0 or not init_std > 0:
            raise ConfigError(
                f"prior_std and init_std must be positive, got {prior_std}, {init_std}"
            )
        self.layer_type = type(layer).__name__
        weight, bias = layer.weight.detach(), layer.bias
        rho = inverse_softplus(init_std)
        self.weight_mean = nn.Parameter(weight.clone())
        self.weight_rho = nn.Parameter(torch.full_like(weight, rho))
        if bias is not None:
            self.bias_mean = nn.Parameter(bias.detach().clone())
            self.bias_rho = nn.Parameter(torch.full_like(bias.detach(), rho))
        else:
            self.register_parameter("bias_mean", None)
            self.register_parameter("bias_rho", None)
        self.register_buffer(
            "prior_std", torch.tensor(float(prior_std), dtype=weight.dtype, device=weight.device)
        )
        if isinstance(layer, nn.Linear):
            self.in_features, self.out_features = layer.in_features, layer.out_features
            self._conv: Callable[..., Tensor] | None = None
        else:
            if layer.padding_mode != "zeros":  # type: ignore[union-attr]
                raise ConfigError(
                    f"mean-field VI supports zero padding only, got padding_mode="
                    f"'{layer.padding_mode}' in a {self.layer_type}"  # type: ignore[union-attr]
                )
            self._conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
            self._conv_options = {
                "stride": layer.stride,
                "padding": layer.padding,
                "dilation": layer.dilation,
                "groups": layer.groups,
            }
        self.estimator = Estimator.REPARAM
        self.generator: torch.Generator | None = None
        self.sample: bool | None = None
        """None: sample in training mode, use the means in eval mode."""
        self.fixed: tuple[Tensor, Tensor | None] | None = None
        """(weight, bias) to use instead of the posterior, whatever the mode (a stored sample)."""
        self.record: list[tuple[Tensor, Tensor | None]] | None = None
        """When a list, every reparameterised weight sample drawn is appended to it."""

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self._conv is None:
            return F.linear(x, weight, bias)
        return self._conv(x, weight, bias, **self._conv_options)

    def _noise(self, like: Tensor) -> Tensor:
        """Standard normal noise shaped like ``like``, on its device. With a generator the
        draw is made on the generator's device (a teacher's stored weight samples come from
        a CPU generator, so they are the same on every device) and moved."""
        if self.generator is None:
            return torch.randn(like.shape, device=like.device, dtype=like.dtype)
        noise = torch.randn(
            like.shape, generator=self.generator, device=self.generator.device, dtype=like.dtype
        )
        return noise.to(like.device)

    def _signs(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        device = like.device if self.generator is None else self.generator.device
        bits = torch.randint(0, 2, shape, generator=self.generator, device=device)
        return (bits.to(like.dtype) * 2 - 1).to(like.device)

    def forward(self, x: Tensor) -> Tensor:
        if self.fixed is not None:
            return self._op(x, *self.fixed)
        sample = self.training if self.sample is None else self.sample
        if not sample:
            return self._op(x, self.weight_mean, self.bias_mean)
        d_weight = F.softplus(self.weight_rho) * self._noise(self.weight_mean)
        d_bias = None
        if self.bias_mean is not None:
            d_bias = F.softplus(self.bias_rho) * self._noise(self.bias_mean)  # type: ignore[arg-type]
        if self.estimator is Estimator.REPARAM:
            bias = None if d_bias is None else self.bias_mean + d_bias
            weight = self.weight_mean + d_weight
            if self.record is not None:
                self.record.append((weight.detach(), None if bias is None else bias.detach()))
            return self._op(x, weight, bias)
        mean_out = self._op(x, self.weight_mean, self.bias_mean)
        if self._conv is None:  # features on the last dimension
            middle = (1,) * (x.dim() - 2)
            s = self._signs((x.shape[0], *middle, x.shape[-1]), x)
            r = self._signs((x.shape[0], *middle, mean_out.shape[-1]), x)
        else:  # channels on dimension 1, shared over positions
            s = self._signs((x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2), x)
            r = self._signs((mean_out.shape[0], mean_out.shape[1]) + (1,) * (mean_out.dim() - 2), x)
        return mean_out + r * self._op(x * s, d_weight, d_bias)

    def kl(self) -> Tensor:
        """KL(q ‖ p) summed over this layer's weights and bias."""
        total = gaussian_kl(self.weight_mean, F.softplus(self.weight_rho), self.prior_std)
        if self.bias_mean is not None:
            total = total + gaussian_kl(
                self.bias_mean,
                F.softplus(self.bias_rho),  # type: ignore[arg-type]
                self.prior_std,
            )
        return total

    def extra_repr(self) -> str:
        return f"{self.layer_type}, weight {tuple(self.weight_mean.shape)}"


def to_mean_field(
    network: Classifier, *, prior_std: float | None = None, init_std: float = DEFAULT_INIT_STD
) -> Classifier:
    """A copy of ``network`` whose Linear/Conv1d/Conv2d layers are `MeanFieldLayer`s.

    The posterior means start at the network's weights. ``prior_std=None`` gives each
    layer the prior N(0, 1/fan_in). Parameters of other layers (BatchNorm's scale and
    shift) stay point estimates, fitted by the data term of the ELBO alongside the
    variational parameters: the usual treatment of normalisation layers in Bayes by
    backprop (and in the paper's VI teacher, which is variational on conv/linear layers).
    """
    if not any(type(m) in SUPPORTED_LAYERS for m in network.modules()):
        raise ConfigError(
            "mean-field VI needs nn.Linear, nn.Conv1d or nn.Conv2d layers; the network has "
            f"none (its layers: {sorted({type(m).__name__ for m in network.modules()})})"
        )
    converted = copy.deepcopy(network)
    targets = [(n, m) for n, m in converted.named_modules() if type(m) in SUPPORTED_LAYERS]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = converted.get_submodule(parent_name) if parent_name else converted
        std = prior_std if prior_std is not None else 1.0 / math.sqrt(fan_in(module))
        setattr(parent, child, MeanFieldLayer(module, prior_std=std, init_std=init_std))
    return converted


def mean_field_layers(network: nn.Module) -> list[MeanFieldLayer]:
    return [m for m in network.modules() if isinstance(m, MeanFieldLayer)]


def network_kl(network: nn.Module) -> Tensor:
    """KL(q ‖ p) of the whole network (sum over its mean-field layers)."""
    layers = mean_field_layers(network)
    if not layers:
        raise ConfigError("the network has no mean-field layer (convert it with to_mean_field)")
    return torch.stack([layer.kl() for layer in layers]).sum()


@contextmanager
def sampling(
    network: nn.Module,
    gen: torch.Generator | None,
    estimator: Estimator | str = Estimator.REPARAM,
) -> Iterator[None]:
    """Within the block, every layer draws weights (from ``gen``) whatever the mode."""
    layers = mean_field_layers(network)
    saved = [(m.sample, m.estimator, m.generator) for m in layers]
    for m in layers:
        m.sample, m.estimator, m.generator = True, Estimator(estimator), gen
    try:
        yield
    finally:
        for m, (sample, est, g) in zip(layers, saved, strict=True):
            m.sample, m.estimator, m.generator = sample, est, g


@contextmanager
def fixed_weights(
    network: nn.Module, weights: list[tuple[Tensor, Tensor | None]]
) -> Iterator[None]:
    """Within the block, mean-field layer i uses ``weights[i]`` (weight, bias)."""
    layers = mean_field_layers(network)
    for layer, pair in zip(layers, weights, strict=True):
        layer.fixed = pair
    try:
        yield
    finally:
        for layer in layers:
            layer.fixed = None


@contextmanager
def recording(network: nn.Module) -> Iterator[list[tuple[Tensor, Tensor | None]]]:
    """Collect the weight sample each mean-field layer draws in one forward pass (in
    layer order), e.g. to reuse it with `fixed_weights`."""
    layers = mean_field_layers(network)
    drawn: list[tuple[Tensor, Tensor | None]] = []
    for layer in layers:
        layer.record = []
    try:
        yield drawn
        for layer in layers:
            if len(layer.record or []) != 1:
                raise RuntimeError(
                    f"a mean-field layer drew {len(layer.record or [])} weight samples in one "
                    "forward pass; recording needs exactly one per layer"
                )
            drawn.append(layer.record[0])  # type: ignore[index]
    finally:
        for layer in layers:
            layer.record = None

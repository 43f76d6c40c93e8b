"""Mean-field Gaussian variational inference: Bayes by backprop (Blundell et al., ICML 2015).

Every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` weight w (and bias) gets the
posterior q(w) = N(μ, σ²), σ = softplus(ρ), independently per entry, and the Gaussian prior
p(w) = N(0, σ_p²) with σ_p² = 1/fan_in per layer (the VI teacher of Morad et al. 2026,
REFERENCE §1) or a given ``prior_std``. Training minimises the negative ELBO per example,

    L(μ, ρ) = (1/B) Σ_b CE(f_w(x_b), y_b) + β_t · KL(q ‖ p) / N,   w ~ q,

(batch mean of the data term, KL divided by the training-set size N), with the KL weight
β_t = 0 for the first half of training, then raised linearly to 1 (`kl_weight`). Gradients
of the data term use one of two estimators (`Estimator`):

* reparameterisation (Blundell et al. 2015): one weight sample w = μ + σ ⊙ ε per forward
  pass, shared by the batch;
* Flipout (Wen et al., ICLR 2018): the shared perturbation Δw = σ ⊙ ε is decorrelated
  across examples by random signs, Δw_n = Δw ⊙ r_n s_nᵀ, computed as
  ``op(x, μ) + r_n ⊙ op(x ⊙ s_n, Δw)``; s_n has one sign per input feature/channel and
  r_n one per output feature/channel, so every example sees a weight with the exact
  marginal N(μ, σ²) at twice the cost of a forward pass, and lower gradient variance.

The teacher's predictive is p(y|x) ≈ (1/S) Σ_s softmax(f_{w_s}(x)), w_s ~ q, with weight
samples drawn from a generator seeded by (seed, s) and shared by the batch, so the teacher
is a fixed function of x. In eval mode (learning curves) the network uses the means.

Why not a library: bayesian-torch 0.5.0 (IntelLabs, the maintained ``dnn_to_bnn``) fails on
``nn.Conv1d`` (``dnn_to_bnn`` passes the tuple ``kernel_size`` where an int is expected:
TypeError), computes each layer's KL as the *mean* over its entries rather than the sum
(IntelLabs/bayesian-torch issue #36, open), which is not the ELBO's KL, draws its noise
from torch's global generator with no way to pass one, and has one scalar prior for all
layers. blitz-bayesian-pytorch (last release 2022) and torchbnn are unmaintained. The
method is short enough to own, and tested against closed forms (tests/teachers/test_mfvi.py).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayesdistill.data.augment import Augmentation
from bayesdistill.data.stream import LabelledData
from bayesdistill.errors import ConfigError
from bayesdistill.models import Classifier, ModelSpec, build_from_spec
from bayesdistill.seeding import generator
from bayesdistill.teachers.base import SavableTeacher, network_state
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.batches import num_batches
from bayesdistill.train.loop import FitResult, fit
from bayesdistill.train.settings import TrainSettings

SUPPORTED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
DEFAULT_INIT_STD = 0.01
"""Initial posterior std σ of every weight (small: training starts near a point estimate)."""
KL_ZERO_FRACTION = 0.5
"""Fraction of training steps with KL weight 0 (REFERENCE §1: the first half)."""
KL_ANNEAL_FRACTION = 0.25
"""Fraction of training steps over which the KL weight rises linearly from 0 to 1 (the
paper's public code: 100 epochs of likelihood only, then 50 of annealing, out of 200)."""


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
        self.register_buffer("prior_std", torch.tensor(float(prior_std), dtype=weight.dtype))
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
        return torch.randn(
            like.shape, generator=self.generator, device=like.device, dtype=like.dtype
        )

    def _signs(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        bits = torch.randint(0, 2, shape, generator=self.generator, device=like.device)
        return bits.to(like.dtype) * 2 - 1

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


def kl_weight(
    step: int,
    total_steps: int,
    *,
    zero_fraction: float = KL_ZERO_FRACTION,
    anneal_fraction: float = KL_ANNEAL_FRACTION,
) -> float:
    """KL weight β at 0-based optimisation step ``step`` of ``total_steps``.

    β = 0 while step < zero_fraction·T, then rises linearly to 1 over anneal_fraction·T
    steps and stays at 1: β = clip((step − z·T) / (a·T), 0, 1); a = 0 jumps to 1.
    """
    start = zero_fraction * total_steps
    if step < start:
        return 0.0
    ramp = anneal_fraction * total_steps
    return 1.0 if ramp <= 0 else min(1.0, (step - start) / ramp)


class MeanFieldTeacher(SavableTeacher):
    """Mean of softmax over S weight samples of a mean-field Gaussian posterior."""

    kind = "mfvi"

    def __init__(
        self,
        network: Classifier,
        *,
        num_samples: int = 10,
        seed: int = 0,
        estimator: Estimator | str = Estimator.REPARAM,
    ) -> None:
        if not mean_field_layers(network):
            raise ConfigError("MeanFieldTeacher needs a network converted by to_mean_field")
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        self.network = network.eval()
        self.num_classes = network.num_classes
        self.num_samples = num_samples
        self.seed = seed
        self.estimator = Estimator(estimator)
        """The estimator the posterior was trained with (prediction shares weight samples)."""
        self._samples: list[list[tuple[Tensor, Tensor | None]]] = []
        """The S weight samples (per mean-field layer), drawn once (S copies of the weights)."""

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def to(self, device: torch.device | str) -> MeanFieldTeacher:
        self.network.to(device)
        self._samples = [
            [(w.to(device), None if b is None else b.to(device)) for w, b in sample]
            for sample in self._samples
        ]
        return self

    def _predict(self, x: Tensor) -> Tensor:
        """Mean softmax over the S weight samples: drawn on the first call (sample s from
        generator (seed, s)), kept, and reused by every later call."""
        self.network.eval()
        total = torch.zeros(len(x), self.num_classes, device=x.device)
        for s in range(self.num_samples):
            if s < len(self._samples):
                with fixed_weights(self.network, self._samples[s]):
                    total += torch.softmax(self.network(x), dim=1)
                continue
            with (
                sampling(self.network, generator(self.seed, s, device=x.device)),
                recording(self.network) as drawn,
            ):
                total += torch.softmax(self.network(x), dim=1)
            self._samples.append(drawn)
        return total / self.num_samples

    def payload(self) -> dict[str, Any]:
        return {
            "network": network_state(self.network),
            "num_samples": self.num_samples,
            "seed": self.seed,
            "estimator": self.estimator.value,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MeanFieldTeacher:
        state = payload["network"]
        network = to_mean_field(build_from_spec(ModelSpec.from_state(state["spec"])))
        network.load_state_dict(state["weights"])
        return cls(
            network,
            num_samples=payload["num_samples"],
            seed=payload["seed"],
            estimator=payload["estimator"],
        )

    def describe(self) -> dict[str, Any]:
        layers = mean_field_layers(self.network)
        stds = torch.cat([F.softplus(m.weight_rho).detach().flatten() for m in layers])
        return {
            "kind": self.kind,
            "num_samples": self.num_samples,
            "estimator": self.estimator.value,
            "posterior_std_mean": float(stds.mean()),
            "kl": float(network_kl(self.network).detach()),
        }


class _ELBOModel(nn.Module):
    """The mean-field network plus its count of training forward passes.

    The count lives in the module's state, so a resumed run continues the KL schedule
    where it stopped.
    """

    def __init__(self, network: Classifier) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.steps_done += 1
        return self.network(x)


def train_mfvi(
    network: Classifier,
    train: LabelledData,
    *,
    settings: TrainSettings,
    seed: int,
    estimator: Estimator | str = Estimator.REPARAM,
    kl_zero_fraction: float = KL_ZERO_FRACTION,
    kl_anneal_fraction: float = KL_ANNEAL_FRACTION,
    num_samples: int = 10,
    evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    augment: Augmentation | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    accel: Acceleration = DEFAULT_ACCELERATION,
) -> tuple[MeanFieldTeacher, FitResult]:
    """Train a network converted by `to_mean_field` on the ELBO; return the teacher.

    Args:
        network: the mean-field network (trained in place).
        train: the training set; its size N scales the KL term.
        settings: epochs, batch size, optimiser, lr (weight decay should be 0: the prior
            is the regulariser).
        seed: seeds the batch order and the weight noise.
        estimator: ``reparam`` or ``flipout`` for the training forward passes.
        kl_zero_fraction, kl_anneal_fraction: the KL warm-up (`kl_weight`).
        num_samples: S of the teacher's predictive.
        evaluate, run_dir, resume, progress: as in `bayesdistill.train.fit`.
    """
    layers = mean_field_layers(network)
    if not layers:
        raise ConfigError("train_mfvi needs a network converted by to_mean_field")
    for fraction in (kl_zero_fraction, kl_anneal_fraction):
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"KL schedule fractions must lie in [0, 1], got {fraction}")
    estimator = Estimator(estimator)
    for layer in layers:
        layer.estimator = estimator
    model = _ELBOModel(network)
    n_train = len(train)
    steps = settings.epochs * num_batches(len(train), settings.batch_size, settings.drop_last)

    def loss_fn(logits: Tensor, _teacher: Tensor | None, y: Tensor) -> Tensor:
        nll = F.cross_entropy(logits, y)
        beta = kl_weight(
            int(model.steps_done) - 1,
            steps,
            zero_fraction=kl_zero_fraction,
            anneal_fraction=kl_anneal_fraction,
        )
        return nll if beta == 0.0 else nll + beta * network_kl(network) / n_train

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
        description="mfvi teacher",
        fingerprint_extra={
            "estimator": estimator.value,
            "kl": [kl_zero_fraction, kl_anneal_fraction],
        },
    )
    teacher = MeanFieldTeacher(network, num_samples=num_samples, seed=seed, estimator=estimator)
    return teacher, result

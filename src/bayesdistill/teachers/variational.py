"""Mean-field Gaussian variational inference: Bayes by backprop (Blundell et al., ICML 2015).

Every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` weight w (and bias) gets the
posterior q(w) = N(μ, σ²), σ = softplus(ρ), independently per entry, and the Gaussian prior
p(w) = N(0, σ_p²) with σ_p² = 1/fan_in per layer (the VI teacher of Morad et al. 2026,
REFERENCE §1) or a given ``prior_std``. Training minimises the negative ELBO per example,

    L(μ, ρ) = (1/B) Σ_b CE(f_w(x_b), y_b) + β_t · KL(q ‖ p) / N,   w ~ q,

(batch mean of the data term, KL divided by the training-set size N), with the KL weight
β_t = 0 for the first half of training, then raised linearly to 1 (`kl_weight`). Gradients
of the data term use one of two estimators (`Estimator`: reparameterisation or Flipout);
the layers, priors and estimators live in `bayesdistill.teachers.mean_field`.

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

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import ConfigError
from bayesdistill.models import Classifier, ModelSpec, build_from_spec
from bayesdistill.seeding import generator
from bayesdistill.teachers.base import SavableTeacher, network_state, vectorized_mean
from bayesdistill.teachers.context import TEACHERS, TeacherContext
from bayesdistill.teachers.mean_field import (
    DEFAULT_INIT_STD,
    Estimator,
    MeanFieldLayer,
    fixed_weights,
    mean_field_layers,
    network_kl,
    recording,
    sampling,
    to_mean_field,
)
from bayesdistill.train.accel import samples_per_pass
from bayesdistill.train.batches import num_batches
from bayesdistill.train.loop import FitResult, fit
from bayesdistill.train.run_options import DEFAULT_RUN, RunOptions
from bayesdistill.train.settings import OptimizerName, TrainSettings

MFVI_LR = 1e-3
"""Adam learning rate of mean-field VI (the public code of Morad et al. 2026)."""
KL_ZERO_FRACTION = 0.5
"""Fraction of training steps with KL weight 0 (REFERENCE §1: the first half)."""
KL_ANNEAL_FRACTION = 0.25
"""Fraction of training steps over which the KL weight rises linearly from 0 to 1 (the
paper's public code: 100 epochs of likelihood only, then 50 of annealing, out of 200)."""


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
        self._stacked: dict[str, Tensor] | None = None
        """The same samples stacked, ``(S, *shape)``, as ``{"<layer>.w": weights, "<layer>.b":
        biases}`` (layers without bias have no entry), once a vectorised pass asked for them
        (`_samples` then holds views of these)."""

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def to(self, device: torch.device | str) -> MeanFieldTeacher:
        self.network.to(device)
        self._samples = [
            [(w.to(device), None if b is None else b.to(device)) for w, b in sample]
            for sample in self._samples
        ]
        self._stacked = None
        return self

    def _predict(self, x: Tensor) -> Tensor:
        """Mean softmax over the S weight samples: drawn on the first call (sample s from
        generator (seed, s)), kept, and reused by every later call."""
        self.network.eval()
        per_pass = samples_per_pass()
        if per_pass > 1:
            stacked = self._stacked_samples(x)
            num_layers = len(self._samples[0])

            def sample_probs(weights: dict[str, Tensor]) -> Tensor:
                with fixed_weights(self.network, _layer_pairs(weights, num_layers)):
                    return torch.softmax(self.network(x), dim=1)

            return vectorized_mean(sample_probs, stacked, self.num_samples, per_pass)
        total = torch.zeros(len(x), self.num_classes, device=x.device)
        for s in range(self.num_samples):
            if s < len(self._samples):
                with fixed_weights(self.network, self._samples[s]):
                    total += torch.softmax(self.network(x), dim=1)
                continue
            total += torch.softmax(self._draw_sample(x, s), dim=1)
        return total / self.num_samples

    def _draw_sample(self, x: Tensor, sample: int) -> Tensor:
        """Draw weight sample ``sample`` (from generator (seed, sample)) in a forward pass on
        ``x``, keep it, and return the logits. The weights drawn do not depend on ``x``."""
        with (
            sampling(self.network, generator(self.seed, sample)),  # CPU draws: see _noise
            recording(self.network) as drawn,
        ):
            logits = self.network(x)
        self._samples.append(drawn)
        return logits

    def _stacked_samples(self, x: Tensor) -> dict[str, Tensor]:
        """All S samples stacked (`_stacked`; the missing ones drawn with a one-example pass);
        `_samples` becomes views of the stack, so the weights are held once."""
        for s in range(len(self._samples), self.num_samples):
            self._draw_sample(x[:1], s)
        if self._stacked is None or len(self._stacked["0.w"]) != self.num_samples:
            samples = self._samples[: self.num_samples]
            # vmap maps over tensors only: layer i's weight and bias (if any) by name
            self._stacked = {
                f"{i}.{part}": torch.stack([sample[i][j] for sample in samples])  # type: ignore[misc]
                for i, pair in enumerate(samples[0])
                for j, part in enumerate("wb")
                if pair[j] is not None
            }
            pairs = _layer_pairs(self._stacked, len(samples[0]))
            self._samples = [
                [(w[s], None if b is None else b[s]) for w, b in pairs]
                for s in range(self.num_samples)
            ]
        return self._stacked

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


def _layer_pairs(weights: dict[str, Tensor], num_layers: int) -> list[tuple[Tensor, Tensor | None]]:
    """``[(weight, bias or None)]`` per mean-field layer from ``{"<layer>.w", "<layer>.b"}``."""
    return [(weights[f"{i}.w"], weights.get(f"{i}.b")) for i in range(num_layers)]


class _ELBOModel(nn.Module):
    """The mean-field network plus its count of training forward passes.

    The count lives in the module's state, so a resumed run continues the KL schedule
    where it stopped.
    """

    def __init__(self, network: Classifier) -> None:
        super().__init__()
        self.network = network
        # beside the network: `fit` trains where the parameters are and never moves the
        # model, and DDP on NCCL cannot broadcast a CPU buffer
        device = next(network.parameters()).device
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long, device=device))

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
    run: RunOptions = DEFAULT_RUN,
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
        run: how the training runs (evaluation, augmentation, run folder, resume,
            progress, speed: `RunOptions`).
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
        **run.fit_options(),
        description="mfvi teacher",
        fingerprint_extra={
            "estimator": estimator.value,
            "kl": [kl_zero_fraction, kl_anneal_fraction],
        },
    )
    teacher = MeanFieldTeacher(network, num_samples=num_samples, seed=seed, estimator=estimator)
    return teacher, result


def _starts_from_trained_network(options: Mapping[str, Any]) -> bool:
    return options["init"] == "network"


@TEACHERS.register(
    "mfvi",
    saves=MeanFieldTeacher,
    needs_network=_starts_from_trained_network,
    learns_from_data=True,
    bayesian=True,
)
def build_mfvi(
    context: TeacherContext,
    *,
    init: Literal["network", "scratch"] = "network",
    estimator: Estimator = Estimator.REPARAM,
    prior_std: float | None = None,
    init_std: float = DEFAULT_INIT_STD,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float = MFVI_LR,
    optimizer: OptimizerName = OptimizerName.ADAM,
    weight_decay: float = 0.0,
    kl_zero_fraction: float = KL_ZERO_FRACTION,
    kl_anneal_fraction: float = KL_ANNEAL_FRACTION,
    num_samples: int = 10,
) -> MeanFieldTeacher:
    """Mean-field Gaussian VI (Bayes by backprop; reparameterisation or Flipout).

    Posterior means start at the trained network's weights (``init: network``) or at its
    initialisation (``scratch``); prior N(0, 1/fan_in) per layer unless ``prior_std``; KL
    weight 0 for the first ``kl_zero_fraction`` of steps, then linear to 1 over the next
    ``kl_anneal_fraction``. Epochs, batch size and schedule default to the teacher
    network's; the optimiser to Adam at lr 1e-3 (as the paper's VI teachers: SGD barely
    moves the softplus-parameterised stds) with weight decay 0 (the prior regularises).
    Predictive: mean softmax over S samples.
    """
    need = context.need_network if init == "network" else context.need_init_network
    start = need("mfvi")
    network = to_mean_field(start, prior_std=prior_std, init_std=init_std)
    settings = context.settings_with(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
    )
    teacher, _ = train_mfvi(
        network,
        context.splits.train,
        settings=settings,
        seed=context.seed,
        estimator=estimator,
        kl_zero_fraction=kl_zero_fraction,
        kl_anneal_fraction=kl_anneal_fraction,
        num_samples=num_samples,
        run=context.run_options(),
    )
    return teacher


__all__ = [
    "KL_ANNEAL_FRACTION",
    "KL_ZERO_FRACTION",
    "MFVI_LR",
    "Estimator",
    "MeanFieldLayer",
    "MeanFieldTeacher",
    "build_mfvi",
    "fixed_weights",
    "kl_weight",
    "mean_field_layers",
    "network_kl",
    "recording",
    "sampling",
    "to_mean_field",
    "train_mfvi",
]

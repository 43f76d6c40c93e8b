"""Variational teachers trained with IVON (Shen et al., ICML 2024, "Variational Learning
is Effective for Large Deep Networks"), using the ``ivon-opt`` optimiser.

IVON learns a mean-field Gaussian posterior N(m, diag(σ²)) over all weights with
σ² = 1 / (ess · (h + δ)), where h is its running Hessian estimate, ess the effective sample
size and δ the weight decay. The teacher's predictive is the mean of softmax over S weight
samples, p(y|x) ≈ (1/S) Σ_s softmax(f_{θ_s}(x)), θ_s ~ N(m, diag(σ²)). The S samples are
drawn from a seeded generator, so the teacher is a fixed function of x (repeated calls and
any batching give the same probabilities); they are drawn once, on the first prediction,
and kept (S copies of the weights: about 1 GB for a ResNet-50 at S = 10), stacked, so that
under `vectorized_samples` several of them run in one vectorised forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import ConfigError
from bayesdistill.models import Classifier
from bayesdistill.seeding import generator
from bayesdistill.teachers.base import (
    NetworkTeacher,
    network_from_state,
    network_state,
    vectorized_mean,
)
from bayesdistill.teachers.context import TEACHERS, TeacherContext
from bayesdistill.train.accel import samples_per_pass
from bayesdistill.train.loop import FitResult, fit
from bayesdistill.train.run_options import DEFAULT_RUN, RunOptions
from bayesdistill.train.settings import TrainSettings


class IVONTeacher(NetworkTeacher):
    """Mean of softmax over S weight samples from a mean-field Gaussian posterior."""

    kind = "ivon"

    def __init__(
        self,
        network: Classifier,
        posterior_std: Mapping[str, Tensor],
        *,
        num_samples: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__(network)
        names = {n for n, _ in network.named_parameters()}
        if set(posterior_std) != names:
            raise ConfigError(
                f"posterior_std must have one entry per parameter; missing "
                f"{sorted(names - set(posterior_std))}, extra {sorted(set(posterior_std) - names)}"
            )
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        self.posterior_std = {k: v.detach().to(self.device) for k, v in posterior_std.items()}
        self.num_samples = num_samples
        self.seed = seed
        self._stacked: dict[str, Tensor] | None = None
        """The S weight sets stacked (``(S, *shape)`` per parameter): drawn on first use and
        reused by every later call."""

    def to(self, device: torch.device | str) -> IVONTeacher:
        super().to(device)
        self.posterior_std = {k: v.to(device) for k, v in self.posterior_std.items()}
        if self._stacked is not None:
            self._stacked = {k: v.to(device) for k, v in self._stacked.items()}
        return self

    def sample_parameters(self, sample: int) -> dict[str, Tensor]:
        """Weights of posterior sample ``sample`` (the same every call)."""
        # drawn on the CPU whatever the teacher's device, so the teacher gives the same
        # probabilities on every device (a CUDA generator draws another stream)
        gen = generator(self.seed, sample)
        return {
            name: p.detach()
            + self.posterior_std[name]
            * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
            for name, p in self.network.named_parameters()
        }

    def stacked_weights(self) -> dict[str, Tensor]:
        """The S posterior weight sets, ``(S, *shape)`` per parameter; drawn once (S copies
        of the weights in memory)."""
        if self._stacked is None or len(next(iter(self._stacked.values()))) != self.num_samples:
            # filled one sample at a time: one weight set beyond the S is held while drawing
            stacked = {
                name: p.new_empty((self.num_samples, *p.shape))
                for name, p in self.network.named_parameters()
            }
            for s in range(self.num_samples):
                for name, weights in self.sample_parameters(s).items():
                    stacked[name][s] = weights
            self._stacked = stacked
        return self._stacked

    def weight_sets(self) -> list[dict[str, Tensor]]:
        """The S posterior weight sets, one dict per sample (views of `stacked_weights`)."""
        stacked = self.stacked_weights()
        return [{name: w[s] for name, w in stacked.items()} for s in range(self.num_samples)]

    def _predict(self, x: Tensor) -> Tensor:
        self.network.eval()
        per_pass = samples_per_pass()
        if per_pass > 1:
            buffers = dict(self.network.named_buffers())

            def sample_probs(weights: dict[str, Tensor]) -> Tensor:
                logits = functional_call(self.network, (weights, buffers), (x,))
                return torch.softmax(logits, dim=1)

            return vectorized_mean(sample_probs, self.stacked_weights(), self.num_samples, per_pass)
        total = None
        for weights in self.weight_sets():
            logits = functional_call(self.network, weights, (x,))
            probs = torch.softmax(logits, dim=1)
            total = probs if total is None else total + probs
        return total / self.num_samples  # type: ignore[operator]

    def payload(self) -> dict[str, Any]:
        return {
            "network": network_state(self.network),
            "posterior_std": {k: v.cpu() for k, v in self.posterior_std.items()},
            "num_samples": self.num_samples,
            "seed": self.seed,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> IVONTeacher:
        return cls(
            network_from_state(payload["network"]),
            payload["posterior_std"],
            num_samples=payload["num_samples"],
            seed=payload["seed"],
        )

    def describe(self) -> dict[str, Any]:
        stds = torch.cat([v.flatten() for v in self.posterior_std.values()])
        return {
            "kind": self.kind,
            "num_samples": self.num_samples,
            "posterior_std_mean": float(stds.mean()),
        }


def ivon_posterior_std(optimizer: Any, network: nn.Module) -> dict[str, Tensor]:
    """Per-parameter posterior std 1/sqrt(ess·(hess + weight_decay)) from an IVON optimiser."""
    names = {id(p): n for n, p in network.named_parameters()}
    out: dict[str, Tensor] = {}
    for group in optimizer.param_groups:
        std = 1.0 / (group["ess"] * (group["hess"] + group["weight_decay"])).sqrt()
        offset = 0
        for p in group["params"]:
            out[names[id(p)]] = std[offset : offset + p.numel()].view_as(p).detach().clone()
            offset += p.numel()
    return out


def ivon_step(model: nn.Module, optimizer: Any, compute_loss: Callable[[], Tensor]) -> Tensor:
    """One IVON step: average gradients over ``mc_samples`` sampled weights, then update."""
    losses = []
    for _ in range(optimizer.mc_samples):
        with optimizer.sampled_params(train=True):
            optimizer.zero_grad()
            loss = compute_loss()
            loss.backward()
        losses.append(loss.detach())
    optimizer.step()
    return torch.stack(losses).mean()


def train_ivon(
    network: Classifier,
    train: LabelledData,
    *,
    settings: TrainSettings,
    seed: int,
    ess: float | None = None,
    hess_init: float = 0.1,
    beta2: float = 0.99999,
    mc_samples: int = 1,
    clip_radius: float = float("inf"),
    num_samples: int = 10,
    run: RunOptions = DEFAULT_RUN,
) -> tuple[IVONTeacher, FitResult]:
    """Train ``network`` with IVON and return the variational teacher and the learning curve.

    ``settings`` gives epochs, batch size, lr (IVON's, typically 0.1–0.5), momentum (IVON's
    beta1), weight decay and schedule; ``settings.optimizer`` is ignored. ``ess`` defaults to
    the training-set size (the Bayesian choice). ``run``: how the training runs (evaluation,
    augmentation, run folder, resume, progress, speed: `RunOptions`).
    """
    from ivon import IVON

    if mc_samples < 1 or num_samples < 1:
        raise ConfigError(
            f"mc_samples and num_samples must be >= 1, got {mc_samples}, {num_samples}"
        )
    ess = float(len(train)) if ess is None else ess
    if ess <= 0 or hess_init <= 0:
        raise ConfigError(f"ess and hess_init must be positive, got {ess}, {hess_init}")
    optimizer = IVON(
        network.parameters(),
        lr=settings.lr,
        ess=ess,
        hess_init=hess_init,
        beta1=settings.momentum,
        beta2=beta2,
        weight_decay=settings.weight_decay,
        mc_samples=mc_samples,
        clip_radius=clip_radius,
    )
    result = fit(
        network,
        train,
        loss_fn=lambda logits, _teacher, y: torch.nn.functional.cross_entropy(logits, y),
        settings=replace(settings, nesterov=False),
        seed=seed,
        optimizer=optimizer,
        step=ivon_step,
        **run.fit_options(),
        description="ivon teacher",
        fingerprint_extra={"ess": ess, "hess_init": hess_init, "beta2": beta2, "mc": mc_samples},
    )
    teacher = IVONTeacher(
        network, ivon_posterior_std(optimizer, network), num_samples=num_samples, seed=seed
    )
    return teacher, result


@TEACHERS.register(
    "ivon", saves=IVONTeacher, needs_network=False, learns_from_data=True, bayesian=True
)
def build_ivon(
    context: TeacherContext,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float = 0.1,
    beta1: float = 0.9,
    beta2: float = 0.99999,
    weight_decay: float = 1e-4,
    hess_init: float = 0.1,
    ess: float | None = None,
    mc_samples: int = 1,
    num_samples: int = 10,
) -> IVONTeacher:
    """Variational (mean-field Gaussian) network trained from the same init with IVON.

    It trains its own network from the teacher network's initial weights
    (``context.init_network``), not the trained one.
    """
    base = context.train_settings or TrainSettings()
    settings = replace(
        base,
        epochs=epochs or base.epochs,
        batch_size=batch_size or base.batch_size,
        lr=lr,
        momentum=beta1,
        weight_decay=weight_decay,
        nesterov=False,
    )
    teacher, _ = train_ivon(
        context.need_init_network("ivon"),
        context.splits.train,
        settings=settings,
        seed=context.seed,
        ess=ess,
        hess_init=hess_init,
        beta2=beta2,
        mc_samples=mc_samples,
        num_samples=num_samples,
        run=context.run_options(),
    )
    return teacher

"""The training losses of a run, summed on the device, and the checks that stop a diverged run.

`fit` adds each step's loss to a `RunningLoss` without reading it from the device; every
`FINITE_CHECK_STEPS` steps, and at each evaluation point, one number is read to check that
the losses (and, at evaluation points, the weights) are finite. A non-finite one stops the
run with a `DivergenceAlarm` naming the batch and what to change, before it writes a record
or a checkpoint. The means logged at an evaluation point are averaged over every rank of a
distributed run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bayesdistill.train import distributed

TERM_PREFIX = "train_loss/"
"""Metrics key prefix of the named loss terms of an objective."""
FINITE_CHECK_STEPS = 50
"""Most steps between two checks that the loss is finite. A check reads one number from the
device (one host synchronisation); evaluation points check too, so a diverged run stops
within this many steps and never writes a record or a checkpoint after the divergence."""


class RunningLoss:
    """The training losses since the last evaluation point, summed on the device.

    Adding a step's loss reads nothing from the device (no host synchronisation; timm's
    loop keeps its losses on the device the same way): ``partial[i]`` is the float64 sum of
    the losses up to the i-th step since the last check, ``partial[0]`` the sum carried over
    from the steps before it. float32 losses added in float64 in step order give exactly
    the sum that adding each loss read as a Python float would. A non-finite loss leaves
    every later partial sum non-finite, so a check reads only the last one, and the first
    non-finite one names the batch of the first non-finite loss.
    """

    def __init__(self, device: torch.device) -> None:
        self.partial = torch.zeros(FINITE_CHECK_STEPS + 1, dtype=torch.float64, device=device)
        self._slots = self.partial.unbind()  # views, made once
        self.unchecked = 0
        """Steps since the last check."""
        self.first_unchecked = 0
        """Batch number of the first of them."""
        self.count = 0
        """Steps since the last evaluation point."""
        self.terms: dict[str, Tensor] = {}
        """Float64 sums of the named loss terms since the last evaluation point."""

    def add(self, loss: Tensor, step_terms: list[Mapping[str, Tensor]], batch: int) -> None:
        """Add the (scalar) loss of batch ``batch`` and its terms (one dict per loss
        evaluation of the step; their mean is added)."""
        if self.unchecked == 0:
            self.first_unchecked = batch
        slots, i = self._slots, self.unchecked
        torch.add(slots[i], loss.detach(), out=slots[i + 1])
        self.unchecked += 1
        self.count += 1
        if not step_terms:
            return
        for name in step_terms[0]:
            value = step_terms[0][name].detach()
            if len(step_terms) > 1:
                value = value.double()
                for terms in step_terms[1:]:
                    value = value + terms[name].detach()
                value = value / len(step_terms)
            if name in self.terms:
                self.terms[name].add_(value)
            else:
                self.terms[name] = torch.zeros_like(self.partial[0]).add_(value)

    @property
    def check_due(self) -> bool:
        return self.unchecked == FINITE_CHECK_STEPS

    def check(self) -> tuple[int, float] | None:
        """None when every loss since the last check was finite (and a new check window
        starts), else the batch number and value of the first non-finite one."""
        last = self._slots[self.unchecked]
        if math.isfinite(float(last)):  # the one host synchronisation of a check
            self._slots[0].copy_(last)
            self.unchecked = 0
            return None
        finite = torch.isfinite(self.partial[1 : self.unchecked + 1])
        j = int(torch.argmin(finite.to(torch.uint8)))  # the first False
        return self.first_unchecked + j, float(self._slots[j + 1])

    def sums(self, *more: Tensor) -> list[float]:
        """The loss sum and the term sums since the last evaluation point, and ``more``
        (scalars), read from the device at once."""
        slots = [self._slots[self.unchecked], *self.terms.values()]
        return torch.stack([*slots, *(m.double() for m in more)]).tolist()

    def restart(self) -> None:
        """Start a new evaluation window (the losses so far were checked)."""
        self._slots[0].zero_()
        self.unchecked = self.count = 0
        self.terms = {}


@dataclass(frozen=True)
class DivergenceAlarm:
    """The error that stops a diverged run: where it diverged and what to change."""

    description: str
    lr: float

    def loss(self, value: float, where: str) -> FloatingPointError:
        return FloatingPointError(
            f"{self.description}: loss became {value} at {where}; lower the learning rate "
            f"(lr={self.lr}) or check the data"
        )

    def weights(self, where: str) -> FloatingPointError:
        return FloatingPointError(
            f"{self.description}: the weights became non-finite at {where} (its loss was "
            f"finite); lower the learning rate (lr={self.lr}) or check the data"
        )


def check_losses(running: RunningLoss, alarm: DivergenceAlarm, epoch: int) -> None:
    """Raise at the first non-finite loss since the last check, if any."""
    found = running.check()
    if found is not None:
        batch, value = found
        raise alarm.loss(value, f"epoch {epoch}, batch {batch}")


def checked_mean_losses(
    running: RunningLoss,
    model: nn.Module,
    device: torch.device,
    alarm: DivergenceAlarm,
    epoch: int,
    batch: int,
) -> dict[str, float]:
    """``train_loss`` and each term's mean since the last evaluation point (over every
    rank's steps in a distributed run), once the losses and the weights are known to be
    finite (an update can overflow while its loss was finite): one read from the device."""
    total, *terms, weights_finite = running.sums(all_finite(model))
    totals = distributed.all_reduce_sum([total, running.count, *terms], device)
    steps = totals[1]
    if not math.isfinite(totals[0]):
        check_losses(running, alarm, epoch)  # this rank's own first non-finite loss
        first = batch + 1 - running.count
        raise alarm.loss(
            totals[0] / steps, f"epoch {epoch}, batches {first}-{batch} of another rank"
        )
    if not weights_finite:
        raise alarm.weights(f"epoch {epoch}, batch {batch}")
    out = {"train_loss": totals[0] / steps}
    for name, term in zip(running.terms, totals[2:], strict=True):
        out[TERM_PREFIX + name] = term / steps
    return out


def all_finite(model: nn.Module) -> Tensor:
    """Whether every floating-point parameter and buffer of ``model`` is finite (a scalar
    bool on the device; reading it is left to the caller)."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    return torch.stack([torch.isfinite(t).all() for t in tensors]).all()

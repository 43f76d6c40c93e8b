"""Temperature scaling on top of any teacher: p^(1/T) renormalised, T fitted on validation NLL.

For a network teacher this is classic temperature scaling (softmax(z/T)); for a Bayesian
teacher it recalibrates the predictive globally while keeping its input-dependent shape
(e.g. Laplace + temperature scaling).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import ConfigError
from bayesdistill.losses.response import PROB_FLOOR, temper_probs
from bayesdistill.teachers.base import SavableTeacher, Teacher
from bayesdistill.teachers.files import teacher_from_payload
from bayesdistill.teachers.temperature import fit_temperature
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.protocol import PREDICTIONS
from bayesdistill.train.targets import predict_in_batches


class TemperedTeacher(SavableTeacher, wrapper=True):
    """Another teacher's probabilities at temperature T: ``p^(1/T) / Σ_j p_j^(1/T)``."""

    kind = "tempered"

    def __init__(self, base: SavableTeacher, temperature: float) -> None:
        if not temperature > 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        self.base = base
        self.temperature = float(temperature)
        self.num_classes = base.num_classes

    def children(self) -> tuple[SavableTeacher]:
        return (self.base,)

    def unwrap(self) -> Teacher:
        """The base teacher, unwrapped: tempering rescales its probabilities, not its
        network's features."""
        return self.base.unwrap()

    @property
    def device(self) -> torch.device:
        return self.base.device

    def to(self, device: torch.device | str) -> TemperedTeacher:
        self.base = self.base.to(device)
        return self

    def _predict(self, x: Tensor) -> Tensor:
        return temper_probs(self.base.predict_proba(x), self.temperature)

    def training_targets(
        self, data: LabelledData, *, accel: Acceleration = DEFAULT_ACCELERATION
    ) -> Tensor:
        """Its predictions on ``data``, or, where the base teacher's targets are its own
        (a cross-fitted teacher's out-of-fold table), those at temperature T."""
        if self.base.target_source(data) == PREDICTIONS:
            return super().training_targets(data, accel=accel)
        return temper_probs(self.base.training_targets(data, accel=accel), self.temperature)

    def target_source(self, data: LabelledData) -> str:
        return self.base.target_source(data)

    def payload(self) -> dict[str, Any]:
        return {
            "base_kind": self.base.kind,
            "base": self.base.payload(),
            "temperature": self.temperature,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> TemperedTeacher:
        base = teacher_from_payload(
            payload["base_kind"], payload["base"], "tempered teacher's base"
        )
        return cls(base, payload["temperature"])

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "temperature": self.temperature, "base": self.base.describe()}


@torch.no_grad()
def calibrate(
    teacher: SavableTeacher, val: LabelledData, batch_size: int = 1024
) -> TemperedTeacher:
    """Wrap ``teacher`` with the temperature that minimises its NLL on ``val``."""
    probs = predict_in_batches(teacher, val, batch_size)
    temperature = fit_temperature(probs.clamp_min(PROB_FLOOR).log(), val.y.to(probs.device))
    return TemperedTeacher(teacher, temperature)

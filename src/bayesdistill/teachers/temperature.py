"""The temperature-scaled teacher: the trained network's logits divided by one temperature
T fitted on validation NLL (Guo et al., ICML 2017)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import Tensor

from bayesdistill.errors import ConfigError
from bayesdistill.models import Classifier
from bayesdistill.teachers.base import NetworkTeacher, network_from_state, network_state
from bayesdistill.teachers.context import TEACHERS, TeacherContext
from bayesdistill.train.batches import iterate

LOG_TEMPERATURE_BOUNDS = (math.log(0.05), math.log(20.0))


class TemperatureTeacher(NetworkTeacher):
    """softmax(f_θ(x) / T): temperature scaling (Guo et al. 2017), T fitted on validation NLL."""

    kind = "temperature"

    def __init__(self, network: Classifier, temperature: float) -> None:
        super().__init__(network)
        if not temperature > 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def _predict(self, x: Tensor) -> Tensor:
        return torch.softmax(self.network(x) / self.temperature, dim=1)

    def payload(self) -> dict[str, Any]:
        return {"network": network_state(self.network), "temperature": self.temperature}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> TemperatureTeacher:
        return cls(network_from_state(payload["network"]), payload["temperature"])

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "temperature": self.temperature}


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) (bounded scalar search on log T).

    The NLL is convex in 1/T, so the search finds the global minimum within
    T ∈ [0.05, 20].
    """
    logits, labels = logits.detach().double().cpu(), labels.cpu()

    def objective(log_t: float) -> float:
        return float(F.cross_entropy(logits / math.exp(log_t), labels))

    result = minimize_scalar(
        objective, bounds=LOG_TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-6}
    )
    return float(math.exp(result.x))


@TEACHERS.register(
    "temperature",
    saves=TemperatureTeacher,
    needs_network=True,
    learns_from_data=True,
    bayesian=False,
)
def build_temperature(context: TeacherContext) -> TemperatureTeacher:
    """The trained network with one temperature fitted on validation NLL (Guo et al. 2017)."""
    network = context.need_network("temperature")
    device = next(network.parameters()).device
    network.eval()
    with torch.no_grad():
        pairs = [(network(x), y) for x, y in iterate(context.splits.val, device)]
    logits, labels = zip(*pairs, strict=True)
    return TemperatureTeacher(network, fit_temperature(torch.cat(logits), torch.cat(labels)))

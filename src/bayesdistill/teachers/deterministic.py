"""The deterministic teacher: softmax of the trained network (the point estimate)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bayesdistill.teachers.base import NetworkTeacher, network_from_state, network_state
from bayesdistill.teachers.context import TEACHERS, TeacherContext


class DeterministicTeacher(NetworkTeacher):
    """softmax(f_θ(x)) of one trained network (the "deterministic" / DNN teacher)."""

    kind = "deterministic"

    def _predict(self, x: Tensor) -> Tensor:
        return torch.softmax(self.network(x), dim=1)

    def payload(self) -> dict[str, Any]:
        return {"network": network_state(self.network)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DeterministicTeacher:
        return cls(network_from_state(payload["network"]))


@TEACHERS.register(
    "deterministic",
    saves=DeterministicTeacher,
    needs_network=True,
    learns_from_data=True,
    bayesian=False,
)
def build_deterministic(context: TeacherContext) -> DeterministicTeacher:
    """The trained network's softmax (point estimate)."""
    return DeterministicTeacher(context.need_network("deterministic"))

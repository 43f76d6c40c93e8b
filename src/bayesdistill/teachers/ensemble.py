"""Deep ensembles (Lakshminarayanan et al., NeurIPS 2017): the mean of M teachers.

p(y|x) = (1/M) Σ_m p_m(y|x), where each member is any teacher. Members trained from
different random initialisations (and batch orders) give a deep ensemble; members that are
themselves Bayesian (Laplace, VI, MC dropout) give an ensemble of posteriors, e.g. a
"multi-SWAG"-style mixture of Laplace approximations (Wilson & Izmailov, NeurIPS 2020).
The class only averages; how members are trained is the builder's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from bayesdistill.errors import CheckpointError, ConfigError
from bayesdistill.teachers.base import SavableTeacher, Teacher


class EnsembleTeacher(SavableTeacher):
    """Mean of the members' probabilities, ``(1/M) Σ_m p_m(y|x)``, shape ``(B, C)``.

    Members may be any `Teacher`; saving needs every member to be a `SavableTeacher`.
    """

    kind = "ensemble"

    def __init__(self, members: Sequence[Teacher]) -> None:
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        classes = {m.num_classes for m in members}
        if len(classes) != 1:
            raise ConfigError(
                f"ensemble members must predict the same number of classes, got {sorted(classes)}"
            )
        self.members = list(members)
        self.num_classes = members[0].num_classes

    @property
    def device(self) -> torch.device:
        first = self.members[0]
        return first.device if isinstance(first, SavableTeacher) else torch.device("cpu")

    def to(self, device: torch.device | str) -> EnsembleTeacher:
        self.members = [m.to(device) if isinstance(m, SavableTeacher) else m for m in self.members]
        return self

    def _predict(self, x: Tensor) -> Tensor:
        total = torch.zeros(len(x), self.num_classes, device=x.device)
        for member in self.members:
            total += member.predict_proba(x).to(x.device, torch.float32)
        return total / len(self.members)

    def payload(self) -> dict[str, Any]:
        not_savable = [type(m).__name__ for m in self.members if not isinstance(m, SavableTeacher)]
        if not_savable:
            raise TypeError(
                f"only ensembles of bayesdistill teachers can be saved; members of type "
                f"{', '.join(not_savable)} are not SavableTeacher"
            )
        return {
            "members": [
                {"kind": m.kind, "payload": m.payload()}
                for m in self.members  # type: ignore[union-attr]
            ]
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> EnsembleTeacher:
        members = []
        for i, member in enumerate(payload["members"]):
            kind = member["kind"]
            if kind not in SavableTeacher._TYPES:
                raise CheckpointError(f"ensemble member {i} has an unknown kind {kind!r}")
            members.append(SavableTeacher._TYPES[kind].from_payload(member["payload"]))
        return cls(members)

    def describe(self) -> dict[str, Any]:
        members = [
            m.describe() if isinstance(m, SavableTeacher) else {"kind": type(m).__name__}
            for m in self.members
        ]
        return {"kind": self.kind, "num_members": len(self.members), "members": members}

"""Deep ensembles (Lakshminarayanan et al., NeurIPS 2017): the mean of M teachers.

p(y|x) = (1/M) Σ_m p_m(y|x), where each member is any teacher. Members trained from
different random initialisations (and batch orders) give a deep ensemble; members that are
themselves Bayesian (Laplace, VI, MC dropout) give an ensemble of posteriors, e.g. a
"multi-SWAG"-style mixture of Laplace approximations (Wilson & Izmailov, NeurIPS 2020).
The class only averages; how members are trained is the builder's business (`build_ensemble`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from bayesdistill.errors import ConfigError
from bayesdistill.models import Classifier, ModelSpec, build_from_spec
from bayesdistill.seeding import derive_seed, seeded
from bayesdistill.teachers.base import SavableTeacher, Teacher
from bayesdistill.teachers.context import (
    TEACHERS,
    TeacherContext,
    learns_from_data,
    needs_network,
)
from bayesdistill.teachers.files import teacher_from_payload
from bayesdistill.train.settings import TrainSettings

ENSEMBLE_STREAM = 11
"""Seed stream of ensemble members: member m ≥ 1 uses derive_seed(seed, 11, m)."""


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

    def children(self) -> tuple[Teacher, ...]:
        """The members, in order (`bayesdistill.teachers.base.walk` goes below them)."""
        return tuple(self.members)

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
        return cls(
            [
                teacher_from_payload(member["kind"], member["payload"], f"ensemble member {i}")
                for i, member in enumerate(payload["members"])
            ]
        )

    def describe(self) -> dict[str, Any]:
        members = [
            m.describe() if isinstance(m, SavableTeacher) else {"kind": type(m).__name__}
            for m in self.members
        ]
        return {"kind": self.kind, "num_members": len(self.members), "members": members}


def _member_factory(context: TeacherContext, member: int) -> Classifier:
    """A fresh network of the teacher's architecture with member ``member``'s own init."""
    template = (
        context.network if context.network is not None else context.need_init_network("ensemble")
    )
    spec = getattr(template, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise ConfigError(
            "ensemble members are built from the teacher network's ModelSpec; use a network "
            "made by bayesdistill.models.create_model"
        )
    device = next(template.parameters()).device
    with seeded(derive_seed(context.seed, ENSEMBLE_STREAM, member)):
        network = build_from_spec(spec)
    return network.to(device)


def _member_context(context: TeacherContext, member: int) -> TeacherContext:
    """Member 0 is the study's own network; member m ≥ 1 gets its own init, seed and run."""
    run_dir = None if context.run_dir is None else context.run_dir / f"member_{member}"
    if member == 0:
        return context.in_run_dir(run_dir)
    seed = derive_seed(context.seed, ENSEMBLE_STREAM, member)
    settings = context.train_settings or TrainSettings()

    def init_network() -> Classifier:
        return _member_factory(context, member)

    def train_network() -> Classifier:
        return context.fit_network(
            init_network(),
            context.splits.train,
            settings=settings,
            seed=seed,
            run_dir=None if run_dir is None else run_dir / "network",
            description=f"ensemble member {member}",
        )

    return replace(
        context.in_run_dir(run_dir),
        seed=seed,
        network=None,
        init_network=init_network,
        train_network=train_network,
    )


def _members_need_network(options: Mapping[str, Any]) -> bool:
    """Member 0 is built from the study's network when the member kind is."""
    return needs_network(options["member_kind"], options["member_options"])


def _members_learn(options: Mapping[str, Any]) -> bool:
    return learns_from_data(options["member_kind"], options["member_options"])


@TEACHERS.register(
    "ensemble",
    saves=EnsembleTeacher,
    needs_network=_members_need_network,
    learns_from_data=_members_learn,
    bayesian=True,
)
def build_ensemble(
    context: TeacherContext,
    *,
    members: int = 5,
    member_kind: str = "deterministic",
    member_options: dict[str, Any] | None = None,
) -> EnsembleTeacher:
    """Deep ensemble (Lakshminarayanan et al. 2017): mean of M teachers of one kind.

    Member 0 is built from the study's network; members 1..M−1 from networks trained
    from their own initialisation and batch order (seed derived from the run's seed), only
    if the member kind needs a trained network. Each member is a ``member_kind`` teacher
    built with ``member_options`` (e.g. ``{num_samples: 10}`` for sampling kinds).
    """
    if members < 1:
        raise ConfigError(f"members must be >= 1, got {members}")
    options = TEACHERS.validate_options(member_kind, dict(member_options or {}))
    built: list[SavableTeacher] = []
    for m in range(members):
        built.append(TEACHERS.get(member_kind)(_member_context(context, m), **options))
    return EnsembleTeacher(built)

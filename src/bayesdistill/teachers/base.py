"""The one teacher protocol, and how teachers are saved and reloaded.

A teacher is anything with ``num_classes`` and ``predict_proba(x) -> (B, C)``
probabilities (rows summing to one), computed without gradients. Every teacher kind of
bayesdistill is a thin adapter around a network or a known distribution; each can write
itself to a single file (weights plus everything needed to rebuild it) that reloads to a
teacher giving the same probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from bayesdistill.errors import CheckpointError, DataError
from bayesdistill.io import load_torch, save_torch
from bayesdistill.models import Classifier, ModelSpec, build_from_spec

TEACHER_FORMAT = "bayesdistill.teacher"
TEACHER_VERSION = 1


@runtime_checkable
class Teacher(Protocol):
    """Anything that gives class probabilities for a batch of inputs."""

    num_classes: int

    def predict_proba(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, C)`` for inputs ``(B, ...)``; rows sum to one."""
        ...


class SavableTeacher:
    """Base of bayesdistill's teachers: saving, device moves, input checks.

    Subclasses set ``kind``, implement `_predict` (called under ``torch.no_grad()``),
    `payload` (tensors and plain values only) and `from_payload`.
    """

    kind: ClassVar[str]
    num_classes: int

    _TYPES: ClassVar[dict[str, type[SavableTeacher]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            SavableTeacher._TYPES[cls.kind] = cls

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, C)``; rows sum to one."""
        return self._predict(x.to(self.device))

    def _predict(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> SavableTeacher:
        return self

    def payload(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> SavableTeacher:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Plain facts about the teacher for reports (kind and settings)."""
        return {"kind": self.kind}

    def save(self, path: str | Path) -> None:
        """Write the teacher to ``path`` atomically (see `load_teacher`)."""
        save_torch(
            path,
            {
                "format": TEACHER_FORMAT,
                "version": TEACHER_VERSION,
                "kind": self.kind,
                "num_classes": self.num_classes,
                "payload": self.payload(),
            },
        )


def load_teacher(path: str | Path, device: torch.device | str = "cpu") -> SavableTeacher:
    """Reload a teacher written by ``teacher.save(path)``; no code is executed.

    Raises `FileNotFoundError` for a missing file and `CheckpointError` for a truncated,
    corrupt or foreign one.
    """
    state = load_torch(path, what="teacher", expected_format=TEACHER_FORMAT)
    kind = state.get("kind")
    if kind not in SavableTeacher._TYPES:
        raise CheckpointError(
            f"teacher file '{path}' has unknown kind {kind!r}; known kinds: "
            f"{', '.join(sorted(SavableTeacher._TYPES))}"
        )
    try:
        teacher = SavableTeacher._TYPES[kind].from_payload(state["payload"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"teacher file '{path}' (kind '{kind}') is incomplete or inconsistent: {exc}"
        ) from exc
    return teacher.to(device)


def check_teacher_matches(teacher: Teacher, num_classes: int, where: str = "data") -> None:
    """Raise `DataError` when the teacher's class count differs from the data's."""
    if teacher.num_classes != num_classes:
        raise DataError(
            f"the teacher predicts {teacher.num_classes} classes but the {where} has "
            f"{num_classes}; distil with a teacher trained on the same label set"
        )


def network_state(network: Classifier) -> dict[str, Any]:
    """A network's spec and weights, as plain values and tensors."""
    spec = getattr(network, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise TypeError(
            "only networks built by bayesdistill.models.create_model can be saved "
            "(they carry a ModelSpec as `.spec`)"
        )
    weights = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    return {"spec": spec.state(), "weights": weights}


def network_from_state(state: dict[str, Any]) -> Classifier:
    network = build_from_spec(ModelSpec.from_state(state["spec"]))
    network.load_state_dict(state["weights"])
    return network.eval()


class NetworkTeacher(SavableTeacher):
    """Shared plumbing of teachers wrapping one trained network (kept in eval mode)."""

    def __init__(self, network: Classifier) -> None:
        self.network = network.eval()
        self.num_classes = network.num_classes

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def to(self, device: torch.device | str) -> NetworkTeacher:
        self.network.to(device)
        return self

    def logits(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.network.eval()(x.to(self.device))

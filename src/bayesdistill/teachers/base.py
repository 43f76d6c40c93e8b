"""Saving and device plumbing shared by bayesdistill's teachers.

A teacher is anything with ``num_classes`` and ``predict_proba(x) -> (B, C)``
probabilities (rows summing to one), computed without gradients: the `Teacher` protocol,
defined by its consumer `bayesdistill.train.protocol` and re-exported here. Every teacher
kind of bayesdistill is a thin adapter around a network or a known distribution; each can
write itself to a single file (weights plus everything needed to rebuild it) that reloads
(`bayesdistill.teachers.files.load_teacher`) to a teacher giving the same probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.func import vmap

from bayesdistill.data.labelled import LabelledData
from bayesdistill.io import save_torch
from bayesdistill.models import Classifier, ModelSpec, build_from_spec
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.protocol import PREDICTIONS, Teacher, check_teacher_matches
from bayesdistill.train.targets import predict_in_batches

TEACHER_FORMAT = "bayesdistill.teacher"
TEACHER_VERSION = 1


class SavableTeacher:
    """Base of bayesdistill's teachers: saving, device moves, input checks.

    Subclasses set ``kind``, implement `_predict` (called under ``torch.no_grad()``),
    `payload` (tensors and plain values only) and `from_payload`. A teacher kind is an entry
    of `TEACHERS` under its ``kind``, whose ``saves`` tag names the class. A teacher that
    wraps teachers of any kind and is no kind of its own (temperature scaling on top,
    cross-fitting) is declared a wrapper instead, ``class TemperedTeacher(SavableTeacher,
    wrapper=True)``, and registers itself under its ``kind`` (`wrapper_classes`). Either way
    `bayesdistill.teachers.files` finds the class of a saved file without importing it.
    """

    kind: ClassVar[str]
    num_classes: int

    def __init_subclass__(cls, *, wrapper: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if wrapper:
            _register_wrapper(cls)

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, C)`` on ``x``'s device; rows sum to one. The teacher
        computes on its own device (`device`; the CPU for teachers without a network)."""
        return self._predict(x.to(self.device)).to(x.device)

    def _predict(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def training_targets(
        self, data: LabelledData, *, accel: Acceleration = DEFAULT_ACCELERATION
    ) -> Tensor:
        """What a student trained on ``data`` learns from, ``(N, C)`` on the teacher's
        device: its predictions (`predict_in_batches` under ``accel``). A teacher that keeps
        targets of its own for the data it was fitted on (cross-fitted) overrides this and
        `target_source`."""
        return predict_in_batches(self, data, accel=accel)

    def target_source(self, data: LabelledData) -> str:
        """Where `training_targets` on ``data`` come from: its predictions (`PREDICTIONS`)."""
        return PREDICTIONS

    def children(self) -> tuple[Teacher, ...]:
        """The teachers this one is made of, in order: none for a plain teacher; composite
        teachers override it (an ensemble's members, a cross-fitted teacher's fold teachers
        and full-data teacher, a tempered teacher's base). `walk` goes through all levels."""
        return ()

    def unwrap(self) -> Teacher:
        """The teacher this one answers for: itself, or below a wrapper that only transforms
        another teacher's probabilities (temperature scaling on top) that teacher, unwrapped.
        Its network stands for this teacher's (`bayesdistill.train.features.feature_network`)."""
        return self

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
        """Write the teacher to ``path`` atomically (`load_teacher` reads it back)."""
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


def walk(teacher: Teacher) -> Iterator[Teacher]:
    """``teacher``, then every teacher inside it at any depth (depth first, in `children`
    order): an ensemble of tempered teachers gives the ensemble, each tempered member, then
    the teacher below it. A teacher without ``children`` (any object that only implements
    the `Teacher` protocol) has none."""
    yield teacher
    children = getattr(teacher, "children", None)
    for child in children() if callable(children) else ():
        yield from walk(child)


_WRAPPERS: dict[str, type[SavableTeacher]] = {}
"""``kind`` → class of each teacher declared with ``wrapper=True``."""


def _register_wrapper(cls: type[SavableTeacher]) -> None:
    kind = cls.__dict__.get("kind")
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"wrapper teacher {cls.__qualname__} must set its own `kind` (a name)")
    known = _WRAPPERS.get(kind)
    if known is not None and _name(known) != _name(cls):  # the same class imported again
        raise TypeError(
            f"wrapper teacher kind '{kind}' is taken by {_name(known)}; "
            f"give {_name(cls)} a kind of its own"
        )
    _WRAPPERS[kind] = cls


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def wrapper_classes() -> tuple[type[SavableTeacher], ...]:
    """The teachers that wrap teachers of any kind (declared with ``wrapper=True``:
    `TemperedTeacher`, `CrossFittedTeacher`), in the order they were defined."""
    return tuple(_WRAPPERS.values())


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


__all__ = [
    "TEACHER_FORMAT",
    "TEACHER_VERSION",
    "NetworkTeacher",
    "SavableTeacher",
    "Teacher",
    "check_teacher_matches",
    "network_from_state",
    "network_state",
    "vectorized_mean",
    "walk",
    "wrapper_classes",
]


def vectorized_mean(
    sample_probs: Callable[[Any], Tensor], stacked: Any, num_samples: int, samples_per_pass: int
) -> Tensor:
    """Mean over ``num_samples`` weight samples of ``sample_probs(weights)`` ``(B, C)``,
    computed with ``torch.func.vmap`` over the leading (sample) dimension of every tensor in
    ``stacked`` (a tensor, or a dict, list or tuple of tensors), ``samples_per_pass`` samples per vectorised
    pass (the last pass takes the rest).

    Equals the mean of a loop over the samples to float rounding (the S results are summed
    in another order). Each pass holds ``samples_per_pass`` copies of the activations.
    """
    chunk = None if samples_per_pass >= num_samples else samples_per_pass
    probs = vmap(sample_probs, chunk_size=chunk)(stacked)  # (S, B, C)
    return probs.sum(0) / num_samples

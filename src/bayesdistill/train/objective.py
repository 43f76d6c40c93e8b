"""What a training step minimises: one loss, or a weighted sum of named loss terms.

The training loop (`bayesdistill.train.fit`) knows the batch and where it is in training;
an *objective* turns that into the scalar to back-propagate:

    objective(model, inputs: StepInputs) -> (total loss, {term name: term value})

`LogitLoss` wraps a plain loss ``(logits, teacher_probs, labels) -> scalar`` (one forward
pass, no named terms: the fast path) and hands it the runtime inputs its registry entry
asks for (``epoch`` for losses that warm up). `WeightedSum` is the composite of KD²M
(Montesuma 2025, ``CE + λ·D(P_S, P_T)``) and of mdistiller's "a step returns a dict of
named loss terms": ``Σ_i w_i · term_i``, where each term is a response loss of `LOSSES`
(on the student's logits) or a feature distance of `FEATURE_LOSSES` (on the student's and
the teacher's penultimate features); the loop logs every term's batch mean. Terms are
described by `LossTerm` and checked by `check_terms` (the config layer uses the same checks).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.losses import LOSSES, loss_kind, loss_registry, runtime_inputs, unchecked
from bayesdistill.train.targets import TargetSource

LossFn = Callable[[Tensor, Tensor | None, Tensor], Tensor]
"""``loss(student_logits (B, C), teacher_probs (B, C) | None, labels (B,)) -> scalar``."""


class StepInputs(NamedTuple):
    """Everything the loop knows at one training step, handed to the objective."""

    x: Tensor
    """``(B, ...)`` inputs (augmented when augmentation is on)."""
    y: Tensor
    """``(B,)`` labels."""
    index: Tensor
    """``(B,)`` positions of the batch in the training set."""
    teacher_probs: Tensor | None
    """``(B, C)`` teacher probabilities, or None (one-hot training)."""
    epoch: float
    """Fractional epochs since the start of training: ``epoch + b / steps_per_epoch`` at
    batch b (0-based) of epoch ``epoch``. It depends on (epoch, batch) only, so a resumed
    run sees the same values."""


RUNTIME_INPUTS: tuple[str, ...] = ("epoch",)
"""Runtime inputs (registry tag ``runtime``) the loop can supply: fields of `StepInputs`."""

NO_TERMS: Mapping[str, Tensor] = MappingProxyType({})

StepLoss = tuple[Tensor, Mapping[str, Tensor]]
"""The total loss (scalar, to back-propagate) and the named terms to log (detached
scalars; empty for a single loss)."""


class Objective(Protocol):
    def __call__(self, model: nn.Module, inputs: StepInputs) -> StepLoss:
        """The loss of ``model`` on one batch, and its named terms."""
        ...


class LogitLoss:
    """A single loss on the student's logits: ``loss_fn(model(x), teacher_probs, y, **runtime)``.

    ``runtime`` names the `StepInputs` fields passed as keywords (e.g. ``("epoch",)``).
    """

    def __init__(self, loss_fn: LossFn, runtime: Sequence[str] = ()) -> None:
        self.loss_fn = loss_fn
        self.runtime = _check_runtime(tuple(runtime), getattr(loss_fn, "__name__", "loss"))

    def __call__(self, model: nn.Module, inputs: StepInputs) -> StepLoss:
        logits = model(inputs.x)
        if not self.runtime:
            return self.loss_fn(logits, inputs.teacher_probs, inputs.y), NO_TERMS
        extra = {name: getattr(inputs, name) for name in self.runtime}
        return self.loss_fn(logits, inputs.teacher_probs, inputs.y, **extra), NO_TERMS  # type: ignore[call-arg]


@dataclass(frozen=True)
class LossTerm:
    """One named term ``weight · loss`` of a weighted-sum objective.

    Attributes:
        name: a loss of `LOSSES` (on logits) or a distance of `FEATURE_LOSSES` (on
            penultimate features).
        weight: its weight w ≥ 0 (0 computes and logs the term without training on it).
        options: the loss's options (its keyword-only parameters).
        label: names the term in logs (default: ``name``); needed to use one loss twice.
    """

    name: str
    weight: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def key(self) -> str:
        return self.label or self.name


def check_term(term: LossTerm) -> LossTerm:
    """``term`` with its options validated (and coerced) by its registry.

    Raises `ConfigError` for an unknown name (listing both registries' names), an unknown
    or ill-typed option (listing the loss's options), or a negative or non-finite weight.
    """
    registry = loss_registry(term.name)
    if isinstance(term.weight, bool) or not isinstance(term.weight, (int, float)):
        raise ConfigError(f"loss term '{term.key}': weight must be a number, got {term.weight!r}")
    if not (math.isfinite(term.weight) and term.weight >= 0):
        raise ConfigError(
            f"loss term '{term.key}': weight must be finite and ≥ 0 (0 logs the term without "
            f"training on it), got {term.weight}"
        )
    options = registry.validate_options(term.name, dict(term.options))
    return LossTerm(term.name, float(term.weight), options, term.label)


def check_terms(terms: Sequence[LossTerm]) -> list[LossTerm]:
    """Validate every term (`check_term`) and their combination.

    The combination needs distinct term keys (``label`` tells two uses of one loss apart)
    and at least one term on the logits: feature distances alone leave the classifier head
    untrained.
    """
    if not terms:
        raise ConfigError("a weighted-sum loss needs at least one term")
    checked = []
    for i, term in enumerate(terms):
        try:
            checked.append(check_term(term))
        except ConfigError as exc:
            raise type(exc)(f"loss term {i} ('{term.key}'): {exc}") from None
    check_combination([t.key for t in checked], [t.name for t in checked])
    return checked


def own_objective(name: str) -> str | None:
    """The objective loss ``name`` trains through (its registry tag ``objective``, e.g.
    ``"svrg"`` for ``self_distill_vr``), or None for a plain loss on the logits."""
    if loss_kind(name) == "feature":
        return None
    return LOSSES.entry(name).tags.get("objective")


def check_combination(keys: Sequence[str], names: Sequence[str]) -> None:
    """Distinct term keys, at least one response (logit) loss among ``names``, and no loss
    that is an objective of its own (`own_objective`)."""
    for name in names:
        if own_objective(name) is not None:
            raise ConfigError(
                f"'{name}' trains through its own objective ('{own_objective(name)}': it "
                "changes the student's gradient, not only the loss) and cannot be a term of a "
                "weighted sum; use it as the whole loss"
            )
    duplicates = sorted({k for k in keys if list(keys).count(k) > 1})
    if duplicates:
        raise ConfigError(
            f"loss terms must have distinct labels; {duplicates} appear more than once "
            "(add `label: <name>` to a term to tell them apart)"
        )
    if all(loss_kind(name) == "feature" for name in names):
        example = ", ".join(f"{{name: {name}, weight: 1.0e-4}}" for name in names)
        raise ConfigError(
            f"{list(names)} are feature distances only, which do not train the classifier "
            "head; combine them with a loss on the logits in a weighted sum, e.g. "
            f"{{label: ce_feat, terms: [{{name: onehot_ce}}, {example}]}}"
        )


@dataclass(frozen=True)
class _BoundTerm:
    key: str
    weight: float
    on_features: bool
    fn: Callable[..., Tensor]
    runtime: tuple[str, ...]


class WeightedSum:
    """``Σ_i w_i · term_i`` over named terms on the logits and on penultimate features.

    One forward pass per step: ``model(x, with_features=True)`` when a term needs features
    (``model`` must then be a `bayesdistill.models.Classifier`, possibly wrapped by DDP or
    ``torch.compile``, which pass the keyword on), else ``model(x)``.
    Feature terms compare the student's features with ``teacher_features(x, index)``
    (``(B, D)``, constants). Returns the total and every term's (unweighted, detached) value.
    """

    def __init__(
        self, terms: Sequence[LossTerm], teacher_features: TargetSource | None = None
    ) -> None:
        bound = []
        for term in check_terms(terms):
            kind = loss_kind(term.name)
            # unchecked: the loop validated labels and teacher probabilities once
            fn = functools.partial(
                unchecked(loss_registry(term.name).get(term.name)), **term.options
            )
            runtime = () if kind == "feature" else runtime_inputs(term.name)
            _check_runtime(runtime, term.name)
            bound.append(_BoundTerm(term.key, term.weight, kind == "feature", fn, runtime))
        self.terms = tuple(bound)
        self.uses_features = any(t.on_features for t in self.terms)
        if self.uses_features and teacher_features is None:
            names = [t.key for t in self.terms if t.on_features]
            raise ConfigError(
                f"feature loss terms {names} need the teacher's penultimate features; give "
                "teacher_features (a teacher with a network provides them)"
            )
        self.teacher_features = teacher_features

    def __call__(self, model: nn.Module, inputs: StepInputs) -> StepLoss:
        if self.uses_features:
            logits, features = model(inputs.x, with_features=True)
            teacher = self.teacher_features(inputs.x, inputs.index)  # type: ignore[misc]
        else:
            logits = model(inputs.x)
        total: Tensor | None = None
        values: dict[str, Tensor] = {}
        for term in self.terms:
            if term.on_features:
                value = term.fn(features, teacher, inputs.y)
            else:
                extra = {name: getattr(inputs, name) for name in term.runtime}
                value = term.fn(logits, inputs.teacher_probs, inputs.y, **extra)
            values[term.key] = value.detach()
            total = value * term.weight if total is None else total + value * term.weight
        return total, values  # type: ignore[return-value]


def _check_runtime(runtime: tuple[str, ...], name: str) -> tuple[str, ...]:
    unknown = [r for r in runtime if r not in RUNTIME_INPUTS]
    if unknown:
        raise ConfigError(
            f"loss '{name}' needs runtime inputs {unknown} that the training loop does not "
            f"supply (it supplies: {', '.join(RUNTIME_INPUTS)})"
        )
    return runtime

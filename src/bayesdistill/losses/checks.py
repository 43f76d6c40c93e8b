"""Input validation of the public losses, and the unchecked implementations behind them.

Every public loss is a raw implementation wrapped by `checked_loss`: the wrapper checks the
tensors it is given, raising `DataError` (or `ConfigError`) that names the loss, what was
given and what is allowed, and then calls the raw implementation with the same arguments.
What is checked (``B`` examples, ``C`` classes, ``D`` feature dimensions):

- logits: ``(B, C)``, floating point, B ≥ 1 and C ≥ 1, finite;
- labels (when the loss uses them): ``(B,)``, int64, values in ``[0, C)``;
- teacher probabilities (when the loss uses them and they are given): ``(B, C)`` like the
  logits, floating point, finite, non-negative, every row summing to 1 within
  `PROB_SUM_TOLERANCE` (or the dtype's machine epsilon, if larger);
- features: ``(B, D)`` for student and teacher with the same B (and the same D), B ≥ 2,
  floating point, finite; labels (when the loss uses them) ``(B,)`` int64;
- options given as keywords: within the `Range` their annotation declares
  (``alpha: Annotated[float, Range(0, 1)]``), the ranges a config is checked against.

The checks cost a few reductions and one device synchronisation per tensor. A training loop
that has validated its labels and teacher probabilities once (with `check_labels` and
`check_probabilities` on the whole training set) calls ``unchecked(loss)`` on every step:
the same function without the checks, and exactly the same value.

    >>> from bayesdistill.losses import kd, unchecked
    >>> step_loss = unchecked(kd)  # kd.unchecked; a functools.partial of kd works too
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor

from bayesdistill.errors import ConfigError, DataError
from bayesdistill.registry import Range, declared_ranges

PROB_SUM_TOLERANCE = 1e-3
"""Largest allowed ``|Σ_k p_k − 1|`` for a row of teacher probabilities. Half-precision
probabilities get their dtype's machine epsilon instead when it is larger (bfloat16:
0.0078), since rounding every entry moves the sum by up to about that much."""

NON_NEGATIVE = Range(0.0)
"""Declared range of a weight or a length of warm-up: ``Annotated[float, NON_NEGATIVE]``."""
POSITIVE = Range(0.0, low_open=True)
"""Declared range of a temperature: ``Annotated[float, POSITIVE]``."""
UNIT_INTERVAL = Range(0.0, 1.0)
"""Declared range of a mixing weight such as KD's α: ``Annotated[float, UNIT_INTERVAL]``."""

LossKind = Literal["response", "feature"]

LossT = TypeVar("LossT", bound=Callable[..., Tensor])


@dataclass(frozen=True)
class InputChecks:
    """What a checked loss validates before calling its raw implementation.

    Attributes:
        kind: ``"response"`` (``loss(student_logits, teacher_probs, targets)``) or
            ``"feature"`` (``distance(student_features, teacher_features, targets)``).
        uses_teacher: a response loss reads ``teacher_probs`` (checked when not None).
        uses_targets: the loss reads ``targets`` (checked; otherwise ignored, may be None).
    """

    kind: LossKind
    uses_teacher: bool = True
    uses_targets: bool = True


def checked_loss(
    kind: LossKind, *, uses_teacher: bool = True, uses_targets: bool = True
) -> Callable[[LossT], LossT]:
    """Decorator: the public, validating form of a raw loss implementation.

    The returned function has the raw function's name, docstring and signature
    (`functools.wraps`; `inspect.signature` and `typing.get_type_hints` see the raw
    keyword-only options, so registries list the same options). It validates the three
    positional inputs (see the module docstring) and returns ``raw(*args, **kwargs)``.
    ``fn.unchecked`` is the raw function and ``fn.checks`` the `InputChecks`.
    """
    if kind not in ("response", "feature"):
        raise ValueError(f"checked_loss kind must be 'response' or 'feature', got {kind!r}")
    checks = InputChecks(kind, uses_teacher, uses_targets)

    def decorate(raw: LossT) -> LossT:
        signature = inspect.signature(raw)
        first_three = list(signature.parameters)[:3]
        validate = _validate_response if kind == "response" else _validate_feature
        ranges = declared_ranges(raw)
        where = f"loss '{raw.__name__}'"

        @functools.wraps(raw)
        def checked(*args: Any, **kwargs: Any) -> Tensor:
            if len(args) >= 3:
                inputs = args[:3]
            else:  # inputs given by keyword: bind them as the raw function would
                bound = signature.bind(*args, **kwargs)
                inputs = tuple(bound.arguments.get(p) for p in first_three)
            validate(raw.__name__, checks, *inputs)
            for name, declared in ranges.items():  # the options' declared ranges
                if name in kwargs:
                    declared.check(name, kwargs[name], where)
            return raw(*args, **kwargs)

        checked.unchecked = raw  # type: ignore[attr-defined]
        checked.checks = checks  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return decorate


def unchecked(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """The raw implementation of a checked loss (``fn.unchecked``); ``fn`` itself otherwise.

    A `functools.partial` of a checked loss (how options are bound) becomes the same
    partial of its raw implementation. For a training loop that validated its labels and
    teacher probabilities once: same value, no per-step checks.
    """
    if isinstance(fn, functools.partial):
        raw = unchecked(fn.func)
        return fn if raw is fn.func else functools.partial(raw, *fn.args, **fn.keywords)
    return getattr(fn, "unchecked", fn)


def check_logits(logits: Tensor, where: str, what: str = "student logits") -> tuple[int, int]:
    """Raise `DataError` unless ``logits`` is a floating ``(B, C)`` tensor, B, C ≥ 1.

    Returns ``(B, C)``. ``where`` starts the message (e.g. ``"loss 'kd'"``).
    """
    _require_tensor(logits, where, what)
    if logits.ndim != 2:
        raise DataError(
            f"{where}: {what} must have shape (B, C) (B examples, C classes), got shape "
            f"{tuple(logits.shape)}; flatten extra dimensions or index the batch first"
        )
    if not logits.dtype.is_floating_point:
        raise DataError(
            f"{where}: {what} must be floating point, got dtype {logits.dtype}; "
            "convert with .float()"
        )
    batch, num_classes = logits.shape
    if batch == 0 or num_classes == 0:
        raise DataError(
            f"{where}: {what} must hold at least one example and one class, got shape "
            f"{tuple(logits.shape)}"
        )
    finite = torch.isfinite(logits.detach())
    if not bool(finite.all()):  # a NaN logit would make the loss NaN without a word
        row = int((~finite).any(dim=1).nonzero()[0, 0])
        raise DataError(
            f"{where}: {what} must be finite, got {logits[row].detach().tolist()[:8]} in row "
            f"{row} ({int((~finite).sum())} non-finite values in all); the network diverged "
            "or its input holds NaN or inf"
        )
    return batch, num_classes


def check_labels(
    labels: Tensor,
    where: str,
    *,
    batch: int | None = None,
    num_classes: int | None = None,
    device: torch.device | None = None,
) -> None:
    """Raise `DataError` unless ``labels`` are ``(B,)`` int64 class indices in ``[0, C)``.

    ``batch`` (B) and ``num_classes`` (C) are checked when given, and so is ``device``.
    """
    _require_tensor(labels, where, "labels")
    expected = f"({batch},)" if batch is not None else "(B,)"
    if labels.ndim != 1 or (batch is not None and labels.shape[0] != batch):
        raise DataError(
            f"{where}: labels must have shape {expected} (one class index per example), got "
            f"shape {tuple(labels.shape)}"
        )
    if labels.dtype != torch.int64:
        raise DataError(
            f"{where}: labels must be int64 class indices (torch.long), got dtype "
            f"{labels.dtype}; convert with .long() (class indices, not one-hot or probabilities)"
        )
    if device is not None and labels.device != device:
        raise DataError(
            f"{where}: labels are on {labels.device} but the logits on {device}; move them "
            f"with .to({str(device)!r})"
        )
    if num_classes is None or labels.numel() == 0:
        return
    low, high = torch.stack([labels.min(), labels.max()]).tolist()
    if low < 0 or high >= num_classes:
        raise DataError(
            f"{where}: labels must lie in [0, {num_classes}) for {num_classes} classes (C from "
            f"the logits' shape (B, C)), got values from {low} to {high}"
        )


def check_probabilities(
    probs: Tensor,
    where: str,
    *,
    shape: tuple[int, int] | None = None,
    device: torch.device | None = None,
    what: str = "teacher probabilities",
) -> None:
    """Raise `DataError` unless ``probs`` is a valid ``(B, C)`` table of probabilities.

    Floating point, finite, non-negative, every row summing to 1 within
    `PROB_SUM_TOLERANCE` (the dtype's epsilon if larger); of shape ``shape`` and on
    ``device`` when given. One device synchronisation when valid.
    """
    _require_tensor(probs, where, what)
    if shape is not None and tuple(probs.shape) != tuple(shape):
        raise DataError(
            f"{where}: {what} must have the logits' shape {tuple(shape)} (B, C), got shape "
            f"{tuple(probs.shape)}"
        )
    if probs.ndim != 2:
        raise DataError(f"{where}: {what} must have shape (B, C), got {tuple(probs.shape)}")
    if not probs.dtype.is_floating_point:
        raise DataError(
            f"{where}: {what} must be floating point, got dtype {probs.dtype}; give "
            "probabilities (e.g. softmax of logits), not class indices"
        )
    if device is not None and probs.device != device:
        raise DataError(
            f"{where}: {what} are on {probs.device} but the logits on {device}; move them "
            f"with .to({str(device)!r})"
        )
    if probs.numel() == 0:
        return
    tolerance = max(PROB_SUM_TOLERANCE, torch.finfo(probs.dtype).eps)
    sums = probs.sum(dim=1, dtype=torch.float64)
    deviation = (sums - 1.0).abs()
    # min and max propagate NaN and show ±inf: three numbers, one synchronisation
    low, high, worst = torch.stack([*torch.aminmax(probs), deviation.max()]).tolist()
    if not (math.isfinite(low) and math.isfinite(high)):
        row = int((~torch.isfinite(probs)).any(dim=1).nonzero()[0, 0])
        raise DataError(
            f"{where}: {what} must be finite, got NaN or inf (first in row {row}: "
            f"{_row(probs, row)}); check the teacher's predictions"
        )
    if low < 0:
        row = int((probs < 0).any(dim=1).nonzero()[0, 0])
        raise DataError(
            f"{where}: {what} must be non-negative, got a negative value (first in row "
            f"{row}: {_row(probs, row)}); give probabilities, not logits or log-probabilities"
        )
    if not worst <= tolerance:
        row = int(deviation.argmax())
        raise DataError(
            f"{where}: every row of {what} must sum to 1 (within {tolerance:g}), but row "
            f"{row} sums to {float(sums[row]):.6g} ({_row(probs, row)}); "
            "normalise with probs / probs.sum(dim=1, keepdim=True) or give softmax(logits)"
        )


def check_features(student: Tensor, teacher: Tensor, where: str) -> tuple[int, int]:
    """Raise unless student and teacher features are finite floating ``(B, D)``, same B ≥ 2.

    `DataError` for malformed tensors; `ConfigError` when the feature dimensions D differ
    (every distance here compares points in one space, so the student needs a projection:
    a modelling choice). Returns ``(B, D)``.
    """
    _require_tensor(student, where, "student features")
    _require_tensor(teacher, where, "teacher features")
    if student.ndim != 2 or teacher.ndim != 2:
        raise DataError(
            f"{where} takes (B, D) features; got student {tuple(student.shape)} "
            f"and teacher {tuple(teacher.shape)}. Flatten or pool feature maps first."
        )
    if student.shape[0] != teacher.shape[0]:
        raise DataError(
            f"{where}: student and teacher features must come from the same batch, got "
            f"B = {student.shape[0]} (student) and B = {teacher.shape[0]} (teacher)"
        )
    if student.shape[1] != teacher.shape[1]:
        raise ConfigError(
            f"{where}: student features have D = {student.shape[1]} but teacher "
            f"features D = {teacher.shape[1]}. Comparing them needs a projection (e.g. a "
            "learned linear layer on the student features) which you must choose and add to "
            "the student; the loss does not pick one."
        )
    if student.shape[0] < 2:
        raise DataError(
            f"{where} needs a batch of at least 2 samples, got B = {student.shape[0]}; "
            "distributions of a single point cannot be matched"
        )
    for role, features in (("student", student), ("teacher", teacher)):
        if not features.dtype.is_floating_point:
            raise DataError(
                f"{where}: {role} features must be floating point, got dtype "
                f"{features.dtype}; convert with .float()"
            )
    finite = torch.stack(
        [torch.isfinite(student).all(), torch.isfinite(teacher).all().to(student.device)]
    ).tolist()
    for role, ok in zip(("student", "teacher"), finite, strict=True):
        if not ok:
            raise DataError(
                f"{where}: {role} features contain NaN or inf (has training diverged? try "
                "a lower learning rate or a smaller loss weight)"
            )
    return student.shape[0], student.shape[1]


def _validate_response(
    name: str, checks: InputChecks, logits: Tensor, teacher: Tensor | None, targets: Tensor
) -> None:
    where = f"loss '{name}'"
    batch, num_classes = check_logits(logits, where)
    if checks.uses_targets:
        check_labels(targets, where, batch=batch, num_classes=num_classes, device=logits.device)
    if checks.uses_teacher and teacher is not None:
        check_probabilities(teacher, where, shape=(batch, num_classes), device=logits.device)


def _validate_feature(
    name: str, checks: InputChecks, student: Tensor, teacher: Tensor, targets: Tensor
) -> None:
    where = f"feature loss '{name}'"
    batch, _ = check_features(student, teacher, where)
    if checks.uses_targets:
        check_labels(targets, where, batch=batch)


def _require_tensor(value: object, where: str, what: str) -> None:
    if not isinstance(value, Tensor):
        raise DataError(f"{where}: {what} must be a torch.Tensor, got {type(value).__name__}")


def _row(table: Tensor, row: int, limit: int = 8) -> str:
    values = table[row, :limit].tolist()
    more = ", ..." if table.shape[1] > limit else ""
    return "[" + ", ".join(f"{v:.4g}" for v in values) + more + "]"

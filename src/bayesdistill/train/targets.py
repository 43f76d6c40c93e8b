"""Where a student's soft targets come from during training.

Three ways, chosen by a study's ``teacher_cache`` (`TeacherCache`):

- ``exact`` (no augmentation): the teacher's predictions on the training set are computed
  once (`CachedTargets`) and looked up by example id, so a distillation epoch costs about
  what a one-hot epoch costs whatever the teacher (a Bayesian one with S samples included);
- ``views`` (augmentation): the teacher's predictions on V augmented views of every example
  are computed once and stored with the augmentation parameters; each step draws one
  stored view per example and rebuilds exactly that view (`bayesdistill.train.views`);
- ``none``: the teacher is asked on every (augmented) batch (`OnlineTargets`).
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from bayesdistill.data.labelled import LabelledData
from bayesdistill.errors import ConfigError
from bayesdistill.train.accel import DEFAULT_ACCELERATION, Acceleration
from bayesdistill.train.batches import INFERENCE_BATCH_SIZE, input_batches
from bayesdistill.train.protocol import OUT_OF_FOLD, PREDICTIONS, Teacher


class TeacherCache(str, Enum):
    """How a student's teacher probabilities are provided during training."""

    AUTO = "auto"
    """``exact`` without augmentation, ``none`` with it."""
    NONE = "none"
    """Ask the teacher on every batch (needed for augmentations that cannot be stored)."""
    EXACT = "exact"
    """Predict the (un-augmented) training set once; look predictions up by example id."""
    VIEWS = "views"
    """Predict V augmented views per example once; each step draws one stored view."""


def resolve_cache(mode: TeacherCache | str, augment: object | None) -> TeacherCache:
    """The teacher cache ``mode`` means for a student trained with ``augment`` (or none):
    ``auto`` becomes ``exact`` without augmentation and ``none`` with it. Raises
    `ConfigError` for an unknown mode, ``exact`` with augmentation or ``views`` without."""
    try:
        mode = TeacherCache(mode)
    except ValueError:
        allowed = ", ".join(m.value for m in TeacherCache)
        raise ConfigError(f"teacher_cache must be one of {allowed}, got {mode!r}") from None
    if mode is TeacherCache.AUTO:
        return TeacherCache.EXACT if augment is None else TeacherCache.NONE
    if mode is TeacherCache.EXACT and augment is not None:
        raise ConfigError(
            "teacher_cache 'exact' caches the teacher's predictions on the clean training "
            "set, but the student trains with augmentation; use 'views' (stored augmented "
            "views) or 'none' (ask the teacher on every batch)"
        )
    if mode is TeacherCache.VIEWS and augment is None:
        raise ConfigError(
            "teacher_cache 'views' stores the teacher's predictions on augmented views, but "
            "the student trains without augmentation; use teacher_cache 'exact' (or 'auto'), "
            "or give the student an augmentation"
        )
    return mode


class TargetSource(Protocol):
    def __call__(self, x: Tensor, index: Tensor) -> Tensor:
        """Teacher probabilities ``(B, C)`` for a batch ``x`` at dataset positions ``index``."""
        ...


@runtime_checkable
class ViewSource(Protocol):
    """Teacher targets that bring their own augmentation (stored views)."""

    def draw(self, x: Tensor, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """For clean inputs ``x`` ``(B, ...)`` at dataset positions ``index``: one stored
        augmented view per example (drawn with ``generator``) and the teacher's stored
        probabilities ``(B, C)`` for exactly those views."""
        ...


class CachedTargets:
    """Precomputed teacher probabilities ``(N, C)``, looked up by dataset index.

    Rows come back on the device of the batch positions ``index`` (the training device):
    a table held elsewhere (a teacher without a network predicts on the CPU) moves there
    on the first look-up, once, not a batch of rows per step.
    """

    def __init__(self, probs: Tensor) -> None:
        self.probs = probs

    def __call__(self, x: Tensor, index: Tensor) -> Tensor:
        if self.probs.device != index.device:
            self.probs = self.probs.to(index.device)
        return self.probs[index]


class OnlineTargets:
    """Ask the teacher on every batch (needed when inputs are augmented).

    The probabilities ``(B, C)`` come back on the batch's device, whatever the teacher's
    own (a teacher without a network answers on the CPU). Under autocast they are
    renormalised in float32, as `predict_in_batches` does: a teacher asked in bfloat16 or
    float16 answers with rows that sum to one only to a few parts in a thousand.
    """

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher

    def __call__(self, x: Tensor, index: Tensor) -> Tensor:
        probs = self.teacher.predict_proba(x).to(x.device)
        if _autocast_active(x.device, getattr(self.teacher, "device", None)):
            probs = renormalised(probs)
        return probs


def renormalised(probs: Tensor) -> Tensor:
    """``probs`` ``(B, C)`` in float32, each row divided by its sum (after reduced-precision
    inference)."""
    probs = probs.float()
    return probs / probs.sum(1, keepdim=True)


def _autocast_active(*devices: torch.device | None) -> bool:
    """Whether autocast is on for the type of any of ``devices`` (None: skipped)."""
    types = {d.type for d in devices if d is not None}
    return any(torch.amp.is_autocast_available(t) and torch.is_autocast_enabled(t) for t in types)


@torch.no_grad()
def predict_in_batches(
    teacher: Teacher,
    data: Tensor | LabelledData,
    batch_size: int = INFERENCE_BATCH_SIZE,
    *,
    accel: Acceleration = DEFAULT_ACCELERATION,
) -> Tensor:
    """``teacher.predict_proba`` over ``data`` in chunks, ``(N, C)`` float32.

    ``data`` is a tensor of inputs (the result is on its device) or labelled data (the
    result is on the teacher's device). Runs under ``accel.teacher_inference`` (autocast,
    weight samples per pass); under a reduced precision the float32 rows are renormalised
    to sum to one (bfloat16 probabilities sum to one only to a few parts in a thousand).
    """
    device = getattr(teacher, "device", None)
    if isinstance(data, Tensor):
        out_device = data.device
    else:
        out_device = device if device is not None else torch.device("cpu")
    run_device = device if device is not None else out_device
    chunks = []
    with accel.teacher_inference(run_device):
        for x in input_batches(data, run_device, batch_size):
            chunks.append(teacher.predict_proba(accel.prepare_input(x)).float())
    probs = torch.cat(chunks)
    if accel.autocast_dtype is not None:
        probs = renormalised(probs)
    return probs.to(out_device)


def training_targets(
    teacher: Teacher, data: LabelledData, *, accel: Acceleration = DEFAULT_ACCELERATION
) -> Tensor:
    """What a student trained on ``data`` learns from, ``(N, C)`` on the teacher's device:
    ``teacher.training_targets`` (a cross-fitted teacher's out-of-fold table on its own
    training set), or its predictions (`predict_in_batches` under ``accel``) for a teacher
    that defines only ``predict_proba``."""
    own = getattr(teacher, "training_targets", None)
    if own is None:
        return predict_in_batches(teacher, data, accel=accel)
    return own(data, accel=accel)


def target_source(teacher: Teacher, data: LabelledData) -> str:
    """Where `training_targets` on ``data`` come from: ``teacher.target_source`` (`OUT_OF_FOLD`
    for a cross-fitted teacher on its own training set), or `PREDICTIONS` for a teacher that
    defines only ``predict_proba``."""
    own = getattr(teacher, "target_source", None)
    return PREDICTIONS if own is None else own(data)


def check_augmentable(teacher: Teacher, data: LabelledData, option: str) -> None:
    """Refuse (`ConfigError`) to augment the inputs of a student trained on ``data`` when the
    teacher's targets there are not its predictions (`target_source`): a cross-fitted
    teacher's out-of-fold table holds one row per clean training example, and on an
    augmented input the teacher answers with the mean of its K fold teachers, which saw the
    example. ``option`` names the augmentation option in the message."""
    source = target_source(teacher, data)
    if source == PREDICTIONS:
        return
    kind = getattr(teacher, "kind", type(teacher).__name__)
    what = "out-of-fold table" if source == OUT_OF_FOLD else f"'{source}' targets"
    raise ConfigError(
        f"teacher '{kind}' gives its {what} as training targets on this data, which exists "
        f"for the clean training examples only, but {option} augments the student's inputs "
        "(on an augmented input a cross-fitted teacher answers with the mean of its K fold "
        f"teachers, which saw the example); drop {option}, or distil from a teacher that is "
        "not cross-fitted"
    )

"""Distillation losses, registered by name.

Every loss is a pure function ``(student_logits, teacher_probs, targets, **hparams) ->
scalar``; its keyword-only parameters are its hyper-parameters. The registry tag
``needs_teacher`` says whether ``teacher_probs`` may be None.
"""

from bayesdistill.losses.response import (
    PROB_FLOOR,
    kd,
    kl_to_student,
    onehot_ce,
    soft_ce,
    soft_cross_entropy,
    temper_probs,
    tempered_log_probs,
)
from bayesdistill.registry import Registry

LOSSES: Registry = Registry("loss")
LOSSES.register("onehot_ce", needs_teacher=False)(onehot_ce)
LOSSES.register("soft_ce", needs_teacher=True)(soft_ce)
LOSSES.register("kd", needs_teacher=True)(kd)


def needs_teacher(name: str) -> bool:
    """Whether the registered loss ``name`` uses teacher probabilities."""
    return bool(LOSSES.entry(name).tags.get("needs_teacher", True))


__all__ = [
    "LOSSES",
    "PROB_FLOOR",
    "kd",
    "kl_to_student",
    "needs_teacher",
    "onehot_ce",
    "soft_ce",
    "soft_cross_entropy",
    "temper_probs",
    "tempered_log_probs",
]

"""Distillation losses, registered by name.

Every loss is a pure function ``(student_logits, teacher_probs, targets, **hparams) ->
scalar``; its keyword-only parameters are its hyper-parameters. Registry tags:

- ``needs_teacher``: whether ``teacher_probs`` may be None;
- ``runtime``: keyword-only inputs the training loop supplies, not options. ``"epoch"``
  is the fractional number of epochs since the start of training; a loss that warms up
  defaults it to ``math.inf`` (warm-up done), so it can also be called without it;
- ``binary``: the loss is defined for 2-class tasks only (logits of shape ``(B, 2)``).
"""

from bayesdistill.losses.dist import dist, dist_terms, pearson_rows
from bayesdistill.losses.dkd import dkd, dkd_terms
from bayesdistill.losses.ranking import distilled_ranking, weighted_negatives
from bayesdistill.losses.response import (
    PROB_FLOOR,
    kd,
    kl_to_student,
    linear_warmup,
    onehot_ce,
    soft_ce,
    soft_cross_entropy,
    temper_probs,
    tempered_log_probs,
)
from bayesdistill.losses.self_distill import self_distill
from bayesdistill.losses.wttm import wttm
from bayesdistill.registry import Registry

LOSSES: Registry = Registry("loss")
LOSSES.register("onehot_ce", needs_teacher=False)(onehot_ce)
LOSSES.register("soft_ce", needs_teacher=True)(soft_ce)
LOSSES.register("kd", needs_teacher=True)(kd)
LOSSES.register("dkd", needs_teacher=True, runtime=("epoch",))(dkd)
LOSSES.register("dist", needs_teacher=True)(dist)
LOSSES.register("wttm", needs_teacher=True)(wttm)
LOSSES.register("self_distill", needs_teacher=True, runtime=("epoch",))(self_distill)
LOSSES.register("weighted_negatives", needs_teacher=True)(weighted_negatives)
LOSSES.register("distilled_ranking", needs_teacher=True, binary=True)(distilled_ranking)


def needs_teacher(name: str) -> bool:
    """Whether the registered loss ``name`` uses teacher probabilities."""
    return bool(LOSSES.entry(name).tags.get("needs_teacher", True))


def runtime_inputs(name: str) -> tuple[str, ...]:
    """Keyword inputs the training loop must supply to loss ``name`` (e.g. ``("epoch",)``)."""
    return tuple(LOSSES.entry(name).tags.get("runtime", ()))


__all__ = [
    "LOSSES",
    "PROB_FLOOR",
    "dist",
    "dist_terms",
    "distilled_ranking",
    "dkd",
    "dkd_terms",
    "kd",
    "kl_to_student",
    "linear_warmup",
    "needs_teacher",
    "onehot_ce",
    "pearson_rows",
    "runtime_inputs",
    "self_distill",
    "soft_ce",
    "soft_cross_entropy",
    "temper_probs",
    "tempered_log_probs",
    "weighted_negatives",
    "wttm",
]

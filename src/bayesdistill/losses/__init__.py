"""Distillation losses, registered by name.

Every loss is a pure function ``(student_logits, teacher_probs, targets, **hparams) ->
scalar``; its keyword-only parameters are its hyper-parameters. Registry tags:

- ``needs_teacher``: whether ``teacher_probs`` may be None;
- ``runtime``: keyword-only inputs the training loop supplies, not options. ``"epoch"``
  is the fractional number of epochs since the start of training; a loss that warms up
  defaults it to ``math.inf`` (warm-up done), so it can also be called without it;
- ``binary``: the loss is defined for 2-class tasks only (logits of shape ``(B, 2)``);
- ``objective``: the loss is trained through an objective of its own, named here and
  built by the training layer around the loss function (``"svrg"``: `self_distill_vr`
  adds the teacher's full gradient, `bayesdistill.train.variance_reduction`); such a loss
  is a whole objective, not a term of a weighted sum.

Feature losses (KD²M's distribution distances on penultimate features) live in a second
registry, `FEATURE_LOSSES`: ``distance(student_features (B, D), teacher_features (B, D),
targets (B,), **hparams) -> scalar``. A training objective may combine terms of both
(`loss_kind` and `loss_registry` look a name up in either).

Every public loss validates its inputs (shapes, label dtype and range, teacher
probabilities finite, non-negative and normalised, finite features; see
`bayesdistill.losses.checks`) and raises `DataError` or `ConfigError` naming the problem.
Registries hold these checked functions. A training loop that validated its labels and
teacher probabilities once calls ``unchecked(loss)`` on every step: the raw implementation,
same value, no per-step checks.
"""

from typing import Literal

from bayesdistill.errors import ConfigError, UnknownNameError, did_you_mean
from bayesdistill.losses.checks import (
    PROB_SUM_TOLERANCE,
    InputChecks,
    check_features,
    check_labels,
    check_logits,
    check_probabilities,
    checked_loss,
    unchecked,
)
from bayesdistill.losses.dist import dist, dist_terms, pearson_rows
from bayesdistill.losses.dkd import dkd, dkd_terms
from bayesdistill.losses.feature import (
    FEATURE_LOSSES,
    gaussian_kl,
    gaussian_w2,
    gaussian_w2_class_conditional,
    mmd,
    squared_distances,
    w2_class_conditional,
    w2_empirical,
    w2_joint,
)
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
LOSSES.register(
    "self_distill_vr",
    needs_teacher=True,
    runtime=("epoch",),
    objective="svrg",
    summary="Variance-reduced self-distillation: self_distill + λ·∇f(θ_T), SVRG (Safaryan et al.).",
)(self_distill)
LOSSES.register("weighted_negatives", needs_teacher=True)(weighted_negatives)
LOSSES.register("distilled_ranking", needs_teacher=True, binary=True)(distilled_ranking)


LossKind = Literal["response", "feature"]
"""``"response"``: a loss of `LOSSES` (logits and teacher probabilities); ``"feature"``: a
distance of `FEATURE_LOSSES` (student and teacher penultimate features)."""


def loss_kind(name: str) -> LossKind:
    """Which registry holds ``name``; an unknown name lists both registries' names."""
    if name in LOSSES:
        return "response"
    if name in FEATURE_LOSSES:
        return "feature"
    raise UnknownNameError(
        f"unknown loss '{name}'; valid loss names: {', '.join(LOSSES.names())}; "
        f"valid feature loss names: {', '.join(FEATURE_LOSSES.names())}."
        + did_you_mean(str(name), [*LOSSES.names(), *FEATURE_LOSSES.names()])
    )


def loss_registry(name: str) -> Registry:
    """`LOSSES` or `FEATURE_LOSSES`, whichever holds ``name`` (see `loss_kind`)."""
    return LOSSES if loss_kind(name) == "response" else FEATURE_LOSSES


def needs_teacher(name: str) -> bool:
    """Whether the registered loss ``name`` uses teacher probabilities."""
    return bool(LOSSES.entry(name).tags.get("needs_teacher", True))


def check_num_classes(name: str, num_classes: int) -> None:
    """Raise `ConfigError` when loss ``name`` cannot run on ``num_classes`` classes.

    Losses tagged ``binary`` (e.g. ``distilled_ranking``) need exactly 2 classes; every
    other loss, and every feature loss, accepts any number.
    """
    if num_classes == 2 or loss_kind(name) == "feature":
        return
    if LOSSES.entry(name).tags.get("binary"):
        raise ConfigError(
            f"loss '{name}' is for binary tasks (2 classes), but the data has {num_classes} "
            "classes; use a loss such as 'kd' for more classes"
        )


def runtime_inputs(name: str) -> tuple[str, ...]:
    """Keyword inputs the training loop must supply to loss ``name`` (e.g. ``("epoch",)``)."""
    return tuple(LOSSES.entry(name).tags.get("runtime", ()))


__all__ = [
    "FEATURE_LOSSES",
    "LOSSES",
    "PROB_FLOOR",
    "PROB_SUM_TOLERANCE",
    "InputChecks",
    "LossKind",
    "check_features",
    "check_labels",
    "check_logits",
    "check_num_classes",
    "check_probabilities",
    "checked_loss",
    "dist",
    "dist_terms",
    "distilled_ranking",
    "dkd",
    "dkd_terms",
    "gaussian_kl",
    "gaussian_w2",
    "gaussian_w2_class_conditional",
    "kd",
    "kl_to_student",
    "linear_warmup",
    "loss_kind",
    "loss_registry",
    "mmd",
    "needs_teacher",
    "onehot_ce",
    "pearson_rows",
    "runtime_inputs",
    "self_distill",
    "soft_ce",
    "soft_cross_entropy",
    "squared_distances",
    "temper_probs",
    "tempered_log_probs",
    "unchecked",
    "w2_class_conditional",
    "w2_empirical",
    "w2_joint",
    "weighted_negatives",
    "wttm",
]

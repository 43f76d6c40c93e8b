"""Decoupled knowledge distillation (DKD; Zhao, Cui, Song, Qiu & Liang, CVPR 2022).

KD's KL term splits into a *target-class* part (how much mass sits on the label) and a
*non-target* part (how the rest is shared among the other classes); DKD weights the two
separately. With ``q = p_T^(1/T) / Σ_j p_T,j^(1/T)`` (teacher at temperature T),
``s = softmax(z/T)`` (student), the label y and

    b = [q_y, 1 − q_y]                         (binary target / non-target split)
    q̃ = q_{k≠y} / (1 − q_y)                    (distribution over the C − 1 other classes)

    TCKD = T² · KL(b_T ‖ b_S)          NCKD = T² · KL(q̃_T ‖ q̃_S)
    L = CE(z, y) + min(epoch / warmup_epochs, 1) · (α · TCKD + β · NCKD).

Teacher inputs are probabilities (a Bayesian predictive has no logits). For a softmax
teacher ``p_T = softmax(z_T)``, ``q = softmax(z_T / T)`` exactly, so this is the published
logit formula. Everything is computed from log-probabilities, so neither ``1 − q_y`` nor
the renormalised non-target distributions lose precision when the label's probability is
close to one.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from bayesdistill.errors import ConfigError
from bayesdistill.losses.checks import NON_NEGATIVE, POSITIVE, checked_loss
from bayesdistill.losses.response import linear_warmup, require_teacher_probs, tempered_log_probs


@checked_loss("response")
def dkd(
    student_logits: Tensor,
    teacher_probs: Tensor | None,
    targets: Tensor,
    *,
    alpha: Annotated[float, NON_NEGATIVE] = 1.0,
    beta: Annotated[float, NON_NEGATIVE] = 8.0,
    temperature: Annotated[float, POSITIVE] = 4.0,
    warmup_epochs: Annotated[float, NON_NEGATIVE] = 20.0,
    epoch: float = math.inf,
) -> Tensor:
    """DKD: CE + min(epoch/warmup_epochs, 1)·(α·TCKD + β·NCKD) (Zhao et al., CVPR 2022).

    Args:
        student_logits: ``(B, C)`` student logits z, C ≥ 2.
        teacher_probs: ``(B, C)`` teacher probabilities (rows sum to 1; exact zeros allowed).
        targets: ``(B,)`` class labels y.
        alpha: weight α ≥ 0 of the target-class term TCKD.
        beta: weight β ≥ 0 of the non-target term NCKD.
        temperature: T > 0, applied to the teacher as ``p^(1/T)`` renormalised and to the
            student as ``softmax(z/T)``; both terms carry the factor T².
        warmup_epochs: the distillation terms are switched on linearly over this many
            epochs (0: no warm-up).
        epoch: fractional epochs since the start of training, supplied by the training loop
            (a runtime input, not an option). The default ``math.inf`` means "warmed up":
            called without it, the loss is the full loss.

    Returns:
        The batch mean, a scalar.

    The defaults are mdistiller's CIFAR-100 recipe: CE weight 1, α = 1, β = 8, T = 4, 20
    warm-up epochs (β = 6 for WRN-40-2 → WRN-16-2). mdistiller counts epochs from 1 and
    updates the weight once per epoch (1/20, 2/20, ...); here the weight rises with the
    fractional epoch from 0 at the start.
    """
    teacher = require_teacher_probs(teacher_probs, "dkd")
    ce = F.cross_entropy(student_logits, targets)
    weight = linear_warmup(epoch, warmup_epochs)
    if weight == 0.0:
        return ce
    tckd, nckd = dkd_terms(student_logits, teacher, targets, temperature=temperature)
    return ce + weight * (alpha * tckd + beta * nckd)


def dkd_terms(
    student_logits: Tensor, teacher_probs: Tensor, targets: Tensor, *, temperature: float
) -> tuple[Tensor, Tensor]:
    """``(TCKD, NCKD)``, each a batch mean already multiplied by T² (see the module docstring).

    Shapes: ``student_logits`` and ``teacher_probs`` ``(B, C)`` with C ≥ 2, ``targets``
    ``(B,)``.
    """
    batch, num_classes = student_logits.shape
    if num_classes < 2:
        raise ConfigError(
            f"dkd needs at least 2 classes, got logits of shape {(batch, num_classes)}"
        )
    is_target = F.one_hot(targets, num_classes).bool()
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = tempered_log_probs(teacher_probs, temperature)
    tckd = _kl(_split_log_probs(log_student, is_target), _split_log_probs(log_teacher, is_target))
    # boolean indexing keeps row order, so each row's C − 1 non-target entries stay together
    rest_student = log_student[~is_target].view(batch, num_classes - 1)
    rest_teacher = log_teacher[~is_target].view(batch, num_classes - 1)
    nckd = _kl(rest_student.log_softmax(dim=1), rest_teacher.log_softmax(dim=1))
    return tckd * temperature**2, nckd * temperature**2


def _split_log_probs(log_probs: Tensor, is_target: Tensor) -> Tensor:
    """``(B, 2)`` log of b = [p_y, 1 − p_y], with ``log(1 − p_y) = logsumexp_{k≠y} log p_k``."""
    batch, num_classes = log_probs.shape
    on_target = log_probs[is_target]
    off_target = torch.logsumexp(log_probs[~is_target].view(batch, num_classes - 1), dim=1)
    return torch.stack([on_target, off_target], dim=1)


def _kl(log_student: Tensor, log_teacher: Tensor) -> Tensor:
    """Batch mean of KL(teacher ‖ student) from log-probabilities of both."""
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)

"""Response-based distillation losses: pure functions of logits and teacher probabilities.

Signature of every loss: ``loss(student_logits (B, C), teacher_probs (B, C) | None,
targets (B,), **hparams) -> scalar`` (mean over the batch). Teacher inputs are
*probabilities*, because a Bayesian teacher's predictive is a mixture with no logits;
a temperature T is therefore applied to them as ``p^(1/T) / Σ_j p_j^(1/T)``, which equals
``softmax(z/T)`` whenever ``p = softmax(z)`` (Morad et al. 2026, public code).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from bayesdistill.errors import ConfigError, DataError
from bayesdistill.losses.checks import POSITIVE, UNIT_INTERVAL, checked_loss

PROB_FLOOR = 1e-12
"""Teacher probabilities are clamped to at least this before logs (exact zeros allowed)."""


def temper_probs(probs: Tensor, temperature: float) -> Tensor:
    """Soften (T > 1) or sharpen (T < 1) probabilities: ``p^(1/T)`` renormalised.

    Computed in log space for stability: ``softmax(log(max(p, 1e-12)) / T)``; T = 1 returns
    ``probs`` unchanged.
    """
    if temperature == 1.0:
        return probs
    return tempered_log_probs(probs, temperature).exp()


def tempered_log_probs(probs: Tensor, temperature: float) -> Tensor:
    """``log(p^(1/T) / Σ_j p_j^(1/T))``, with p clamped at 1e-12 (exact zeros allowed)."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be positive, got {temperature}")
    log_p = probs.clamp_min(PROB_FLOOR).log()
    return log_p if temperature == 1.0 else torch.log_softmax(log_p / temperature, dim=1)


def linear_warmup(epoch: float, warmup_epochs: float) -> float:
    """Weight ``min(1, epoch / warmup_epochs)`` of a term that is switched on linearly.

    ``epoch`` counts (fractional) epochs since the start of training; ``warmup_epochs = 0``
    means no warm-up (weight 1), and so does ``epoch = math.inf``, the default of every
    loss that warms up, so that such a loss called without an epoch is the full loss.
    """
    if not epoch >= 0:  # also refuses NaN
        raise DataError(f"epoch must be non-negative (epochs since the start), got {epoch}")
    if warmup_epochs == 0:
        return 1.0
    return min(1.0, epoch / warmup_epochs)


def soft_cross_entropy(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Batch mean of −Σ_k q_k log softmax(z)_k for soft targets q ``(B, C)``."""
    return F.cross_entropy(logits, target_probs)


def kl_to_student(target_probs: Tensor, logits: Tensor) -> Tensor:
    """Batch mean of KL(q ‖ softmax(z)) = Σ_k q_k (log q_k − log softmax(z)_k).

    Terms with q_k = 0 contribute 0 (the limit of q log q).
    """
    log_q = target_probs.clamp_min(PROB_FLOOR).log()
    return F.kl_div(F.log_softmax(logits, dim=1), log_q, reduction="batchmean", log_target=True)


@checked_loss("response", uses_teacher=False)
def onehot_ce(student_logits: Tensor, teacher_probs: Tensor | None, targets: Tensor) -> Tensor:
    """Cross-entropy with the one-hot labels (no teacher): −log softmax(z)_y."""
    return F.cross_entropy(student_logits, targets)


@checked_loss("response", uses_targets=False)
def soft_ce(student_logits: Tensor, teacher_probs: Tensor | None, targets: Tensor) -> Tensor:
    """Soft-label cross-entropy with the teacher's probabilities: −Σ_k p_k log softmax(z)_k.

    With exact Bayes class probabilities p = p*(·|x) this is the BCP risk of Morad et al.
    (2026, eq. BCP-risk): its minimiser is softmax(z) = p* and every per-sample gradient
    (softmax(z) − p) vanishes there (interpolation).
    """
    return soft_cross_entropy(student_logits, require_teacher_probs(teacher_probs, "soft_ce"))


@checked_loss("response")
def kd(
    student_logits: Tensor,
    teacher_probs: Tensor | None,
    targets: Tensor,
    *,
    alpha: Annotated[float, UNIT_INTERVAL] = 0.5,
    temperature: Annotated[float, POSITIVE] = 4.0,
) -> Tensor:
    """Hinton KD: (1 − α)·CE(z, y) + α·T²·KL(p_T^(T) ‖ softmax(z/T)).

    ``p_T^(T) = p_T^(1/T) / Σ p_T^(1/T)`` is the teacher's probability vector at temperature
    T (= softmax(z_T/T) for a teacher with logits z_T). The T² factor keeps the gradient
    scale of the soft term independent of T (Hinton, Vinyals & Dean 2015). α = 0 is plain
    cross-entropy; α = 1, T = 1 has the gradients of `soft_ce`.
    """
    teacher = require_teacher_probs(teacher_probs, "kd") if alpha > 0.0 else None
    if teacher is None:
        return F.cross_entropy(student_logits, targets)
    # KL(q_T ‖ softmax(z/T)) with q_T in log space; one fused kernel (kl_div) keeps the
    # per-batch cost of distillation close to that of cross-entropy.
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        tempered_log_probs(teacher, temperature),
        reduction="batchmean",
        log_target=True,
    )
    if alpha == 1.0:
        return soft * temperature**2
    return torch.add(
        F.cross_entropy(student_logits, targets) * (1.0 - alpha), soft, alpha=alpha * temperature**2
    )


def require_teacher_probs(teacher_probs: Tensor | None, name: str) -> Tensor:
    if teacher_probs is None:
        raise ConfigError(
            f"loss '{name}' needs teacher probabilities; use 'onehot_ce' without a teacher"
        )
    return teacher_probs

"""Weighted transformed teacher matching (WTTM; Zheng & Yang, ICLR 2024).

Temperature scaling of the teacher is a power transform of its probabilities,
``p^γ / Σ_j p_j^γ`` with γ = 1/T. Transformed teacher matching (TTM) drops the temperature on
the student's side and matches ``softmax(z)`` to the transformed teacher; WTTM further weights
each example by the transform's normaliser U, which is large when the teacher is uncertain:

    p̂_i = p_i^γ / U_i,   U_i = Σ_j p_{i,j}^γ
    L = CE(z, y) + β · mean_i [U_i · KL(p̂_i ‖ softmax(z_i))]

(as in the official ``distiller_zoo/wttm.py``). Teacher inputs are probabilities, so this is
exact for any teacher, Bayesian or not.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from bayesdistill.losses.checks import NON_NEGATIVE, POSITIVE, checked_loss
from bayesdistill.losses.response import require_teacher_probs


@checked_loss("response")
def wttm(
    student_logits: Tensor,
    teacher_probs: Tensor | None,
    targets: Tensor,
    *,
    gamma: Annotated[float, POSITIVE] = 0.1,
    beta: Annotated[float, NON_NEGATIVE] = 4.0,
) -> Tensor:
    """WTTM: CE + β·mean_i[U_i·KL(p_i^γ/U_i ‖ softmax(z_i))], U_i = Σ_j p_ij^γ (ICLR 2024).

    Args:
        student_logits: ``(B, C)`` student logits z.
        teacher_probs: ``(B, C)`` teacher probabilities (rows sum to 1; exact zeros allowed).
        targets: ``(B,)`` class labels y.
        gamma: exponent γ > 0 of the power transform (γ = 1/T; the official ``--ttm_l``).
        beta: weight β ≥ 0 of the weighted matching term; cross-entropy has weight 1.

    Returns:
        The batch mean, a scalar.

    The defaults (γ, β) = (0.1, 4) are the published CIFAR-100 setting for WRN-40-2 →
    WRN-16-2; the paper tunes the pair per teacher–student pair. With γ = 1, U = 1 and the
    loss is CE + β·KL(p ‖ softmax(z)).

    The power is taken in log space with ``log 0 = −∞``, so an exact zero in the teacher stays
    an exact zero of p̂ and adds nothing to U. (Clamping at a floor first, as `temper_probs`
    does, would not do here: at γ = 0.1 a floor of 1e-12 becomes 0.06 per class.)
    """
    teacher = require_teacher_probs(teacher_probs, "wttm")
    log_powered = gamma * teacher.clamp_min(0.0).log()
    log_norm = torch.logsumexp(log_powered, dim=1, keepdim=True)
    transformed = (log_powered - log_norm).exp()
    log_student = F.log_softmax(student_logits, dim=1)
    # KL(p̂ ‖ s) = Σ p̂ log p̂ − Σ p̂ log s; xlogy gives 0·log 0 = 0
    kl = (torch.xlogy(transformed, transformed) - transformed * log_student).sum(dim=1)
    weighted = (log_norm.squeeze(1).exp() * kl).mean()
    return F.cross_entropy(student_logits, targets) + beta * weighted

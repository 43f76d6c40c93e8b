"""DIST: distillation from a stronger teacher (Huang, You, Wang, Qian & Xu, NeurIPS 2022).

Instead of matching probabilities exactly (KL), DIST asks the student to preserve the
teacher's *relations*, measured by Pearson correlation. With ``Y_S = softmax(z/τ)`` and
``Y_T = p_T^(1/τ)`` renormalised (= ``softmax(z_T/τ)`` for a softmax teacher), both ``(B, C)``:

    inter = 1 − mean_i ρ(Y_S[i, :], Y_T[i, :])     (each example's ranking of the classes)
    intra = 1 − mean_c ρ(Y_S[:, c], Y_T[:, c])     (each class's ranking of the batch)
    L = CE(z, y) + w · τ² · (β · inter + γ · intra)

ρ is the Pearson correlation, computed as in the official code: the cosine of the centred
vectors with ``1e-8`` added to the product of their norms, so a constant vector (e.g. a
column when the batch has one example) has correlation 0 rather than NaN.
"""

from __future__ import annotations

from typing import Annotated

import torch.nn.functional as F
from torch import Tensor

from bayesdistill.losses.checks import NON_NEGATIVE, POSITIVE, checked_loss
from bayesdistill.losses.response import require_teacher_probs, temper_probs

PEARSON_EPS = 1e-8
"""Added to the product of norms in the Pearson correlation (the official code's value)."""


@checked_loss("response")
def dist(
    student_logits: Tensor,
    teacher_probs: Tensor | None,
    targets: Tensor,
    *,
    beta: Annotated[float, NON_NEGATIVE] = 1.0,
    gamma: Annotated[float, NON_NEGATIVE] = 1.0,
    temperature: Annotated[float, POSITIVE] = 4.0,
    kd_weight: Annotated[float, NON_NEGATIVE] = 2.0,
) -> Tensor:
    """DIST: CE + w·τ²·(β·inter + γ·intra), Pearson relations (Huang et al., NeurIPS 2022).

    Args:
        student_logits: ``(B, C)`` student logits z.
        teacher_probs: ``(B, C)`` teacher probabilities (rows sum to 1; exact zeros allowed).
        targets: ``(B,)`` class labels y.
        beta: weight β ≥ 0 of the inter-class (per-example) relation term.
        gamma: weight γ ≥ 0 of the intra-class (per-class, across the batch) relation term.
        temperature: τ > 0, applied to the student's logits and to the teacher's
            probabilities (``p^(1/τ)`` renormalised); the KD term carries the factor τ².
        kd_weight: w ≥ 0, the weight of the whole KD term; cross-entropy has weight 1.

    Returns:
        The batch mean, a scalar.

    The defaults are the official CIFAR-100 recipe: CE weight 1, KD weight w = 2, β = γ = 1,
    τ = 4 (the same loss as β = γ = 2 with w = 1). The intra-class term needs a batch of
    more than one example to carry information.
    """
    teacher = require_teacher_probs(teacher_probs, "dist")
    inter, intra = dist_terms(student_logits, teacher, temperature=temperature)
    kd_term = temperature**2 * (beta * inter + gamma * intra)
    return F.cross_entropy(student_logits, targets) + kd_weight * kd_term


def dist_terms(
    student_logits: Tensor, teacher_probs: Tensor, *, temperature: float
) -> tuple[Tensor, Tensor]:
    """``(inter, intra)`` = 1 − mean Pearson correlation over rows, and over columns.

    Shapes: ``student_logits`` and ``teacher_probs`` ``(B, C)``; no τ² factor applied.
    """
    student = F.softmax(student_logits / temperature, dim=1)
    teacher = temper_probs(teacher_probs, temperature)
    inter = 1.0 - pearson_rows(student, teacher).mean()
    intra = 1.0 - pearson_rows(student.T, teacher.T).mean()
    return inter, intra


def pearson_rows(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``, ``(N, D) -> (N,)``.

    ``⟨a − ā, b − b̄⟩ / (‖a − ā‖·‖b − b̄‖ + 1e-8)``: 0 where a row is constant.
    """
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + PEARSON_EPS)

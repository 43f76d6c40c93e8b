"""Self-distillation with a mixed label (Safaryan, Peste & Alistarh, NeurIPS 2023).

The objective of "partial variance reduction" and the mixed objective of Morad et al. (2026):

    L = (1 − λ) · CE(z, y) + λ · CE(z, q),   q = p_T^(1/T) / Σ_j p_T,j^(1/T)

Cross-entropy is linear in its target, so this is cross-entropy against the *mixed label*
``(1 − λ)·e_y + λ·q`` and is computed that way, in one call. For linear softmax models at
T = 1 its gradient is the one-hot gradient minus λ times the gradient at the teacher's
parameters: SVRG without the full-gradient correction (Safaryan et al., §3), a control
variate whose best λ grows with the teacher's quality.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from bayesdistill.losses.checks import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, checked_loss
from bayesdistill.losses.response import linear_warmup, require_teacher_probs, temper_probs


@checked_loss("response")
def self_distill(
    student_logits: Tensor,
    teacher_probs: Tensor | None,
    targets: Tensor,
    *,
    lam: Annotated[float, UNIT_INTERVAL] = 0.7,
    ramp_epochs: Annotated[float, NON_NEGATIVE] = 0.0,
    temperature: Annotated[float, POSITIVE] = 1.0,
    epoch: float = math.inf,
) -> Tensor:
    """Mixed-label cross-entropy: (1 − λ)·CE(z, y) + λ·CE(z, p_T) (Safaryan et al. 2023).

    Args:
        student_logits: ``(B, C)`` student logits z.
        teacher_probs: ``(B, C)`` teacher probabilities (rows sum to 1; exact zeros allowed).
        targets: ``(B,)`` class labels y.
        lam: λ ∈ [0, 1], the weight of the teacher (``lambda`` is a Python keyword).
            λ = 0 is plain cross-entropy, λ = 1 the soft-label (BCP) risk.
        ramp_epochs: when positive, λ rises linearly, λ(epoch) = λ·min(1, epoch /
            ramp_epochs); 0 uses λ from the start.
        temperature: T > 0 applied to the teacher's target only (``p^(1/T)`` renormalised);
            the student is not tempered and there is no T² factor, so the target stays a
            probability vector and the loss stays a cross-entropy. T = 1 leaves it unchanged.
        epoch: fractional epochs since the start of training, supplied by the training loop
            (a runtime input, not an option). The default ``math.inf`` means "ramp done".

    Returns:
        The batch mean, a scalar.

    The default λ = 0.7 (T = 1, no ramp) is Safaryan et al.'s setting for MNIST; this loss has
    no published CIFAR-100 recipe.
    """
    if lam == 0.0:
        return F.cross_entropy(student_logits, targets)
    teacher = require_teacher_probs(teacher_probs, "self_distill")
    weight = lam * linear_warmup(epoch, ramp_epochs)
    dtype = student_logits.dtype
    onehot = F.one_hot(targets, student_logits.shape[1]).to(dtype)
    mixed = torch.lerp(onehot, temper_probs(teacher, temperature).to(dtype), weight)
    return F.cross_entropy(student_logits, mixed)

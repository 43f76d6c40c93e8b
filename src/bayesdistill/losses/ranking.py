"""Distillation for ranking and retrieval (Menon, Rawat, Reddi, Kim & Kumar, ICML 2021).

Menon et al. read a teacher as an estimate of the Bayes class probabilities p*(y|x) and
plug it into risks that are not plain classification:

- *distilled bipartite ranking*: replace each example's unknown label by the teacher's
  probability of the positive class, so every pair (i, j) in a batch counts with weight
  p^t_i·(1 − p^t_j) (the chance that i is positive and j negative);
- *weighted negatives* for softmax over many labels (retrieval): in the normaliser of the
  softmax cross-entropy, a negative label y' counts with weight 1 − p^t(y'|x), so labels the
  teacher thinks plausible are pushed down less.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bayesdistill.errors import ConfigError
from bayesdistill.losses.checks import checked_loss
from bayesdistill.losses.response import require_teacher_probs


@checked_loss("response")
def weighted_negatives(
    student_logits: Tensor, teacher_probs: Tensor | None, targets: Tensor
) -> Tensor:
    """Softmax CE with teacher-weighted negatives: −f_y + log Σ_y' α_y' e^{f_y'} (Menon et al.).

    ``α_y = 1`` and ``α_y' = 1 − p^t(y'|x)`` for y' ≠ y (Menon et al. 2021), with f the
    student's logits ``(B, C)``, p^t the teacher's probabilities ``(B, C)`` and y the labels
    ``(B,)``; returns the batch mean. A teacher that is one-hot on y gives α = 1 and plain
    cross-entropy; a label to which the teacher gives probability 1 drops out of the
    normaliser. The loss has no hyper-parameters.
    """
    teacher = require_teacher_probs(teacher_probs, "weighted_negatives")
    weights = (1.0 - teacher.to(student_logits.dtype)).clamp_min(0.0)
    weights = weights.scatter(1, targets[:, None], 1.0)
    # log Σ α e^f = logsumexp(f + log α); log 0 = −∞ drops a class without NaN gradients
    log_normaliser = torch.logsumexp(student_logits + weights.log(), dim=1)
    on_target = student_logits.gather(1, targets[:, None]).squeeze(1)
    return (log_normaliser - on_target).mean()


@checked_loss("response")
def distilled_ranking(
    student_logits: Tensor,
    teacher_probs: Tensor | None,
    targets: Tensor,
    *,
    use_labels: bool = False,
) -> Tensor:
    """Pairwise logistic ranking loss with teacher pair weights, for a binary task (Menon et al.).

    With scores ``s = z_1 − z_0`` from the student's 2-class logits ``(B, 2)`` and the
    teacher's probability of class 1, ``p_i = p^t(1|x_i)`` from ``teacher_probs`` ``(B, 2)``:

        w_ij = p_i · (1 − p_j),   L = Σ_{i≠j} w_ij · log(1 + e^{−(s_i − s_j)}) / Σ_{i≠j} w_ij,

    the logistic surrogate of the distilled bipartite ranking risk PD̃ (Menon et al. 2021);
    minimising it raises the AUC (`bayesdistill.metrics.ranking.roc_auc`). With
    ``use_labels=True`` the labels ``targets`` ``(B,)`` in {0, 1} replace p (the teacher may
    then be None), so only positive–negative pairs count: the standard undistilled pairwise
    loss. A batch without any weighted pair gives 0. The loss has no published CIFAR-100
    recipe: it is for binary tasks.
    """
    teacher = None if use_labels else require_teacher_probs(teacher_probs, "distilled_ranking")
    if student_logits.ndim != 2 or student_logits.shape[1] != 2:
        raise ConfigError(
            "distilled_ranking is for binary tasks: it needs 2-class logits (B, 2), got "
            f"shape {tuple(student_logits.shape)}; use a loss such as 'kd' for more classes"
        )
    if teacher is None:
        positive = targets.to(student_logits.dtype)
    else:
        positive = teacher[:, 1].to(student_logits.dtype)
    scores = student_logits[:, 1] - student_logits[:, 0]
    margins = scores[:, None] - scores[None, :]  # s_i − s_j
    weights = positive[:, None] * (1.0 - positive[None, :])
    weights = weights * (1.0 - torch.eye(len(scores), dtype=weights.dtype, device=weights.device))
    total = weights.sum()
    # with no weighted pair the numerator is an exact 0: divide by 1 instead of 0
    return (weights * F.softplus(-margins)).sum() / torch.where(total > 0, total, 1.0)

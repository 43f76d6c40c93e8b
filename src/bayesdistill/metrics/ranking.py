"""Ranking metrics for binary tasks: the area under the ROC curve.

Used with `bayesdistill.losses.ranking.distilled_ranking` (Menon et al., ICML 2021), whose
risk counts mis-ordered (positive, negative) pairs: one minus an AUC.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayesdistill.errors import DataError


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Exact AUC: the fraction of (positive, negative) pairs ranked correctly, ties counting ½.

    ``AUC = (1 / (n₊ n₋)) Σ_{i: y_i=1} Σ_{j: y_j=0} ([s_i > s_j] + ½ [s_i = s_j])``,
    computed in O(N log N) from mid-ranks (the Mann–Whitney U statistic divided by n₊ n₋),
    in float64. ``scores`` ``(N,)`` are any real numbers, larger meaning "more positive"
    (e.g. ``probs[:, 1]`` or ``z_1 − z_0``); ``labels`` ``(N,)`` are 0/1 or booleans and
    must contain both classes.
    """
    scores = torch.as_tensor(scores).detach().to(torch.float64)
    labels = torch.as_tensor(labels).detach()
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise DataError(
            "roc_auc needs scores and labels of the same shape (N,), got "
            f"{tuple(scores.shape)} and {tuple(labels.shape)}"
        )
    if torch.isnan(scores).any():
        raise DataError("roc_auc got NaN scores; scores must be real numbers")
    if not ((labels == 0) | (labels == 1)).all():
        raise DataError(f"roc_auc labels must be 0/1, got values {labels.unique().tolist()}")
    positive = labels.bool()
    n_pos = int(positive.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(
            f"roc_auc needs both classes, got {n_pos} positive and {n_neg} negative labels"
        )
    sorted_scores, order = torch.sort(scores)
    _, group, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    # tied scores share the mean of the 1-based ranks they span: last − (count − 1)/2
    last_rank = counts.cumsum(0).to(torch.float64)
    mid_rank = last_rank - (counts.to(torch.float64) - 1.0) / 2.0
    ranks = torch.empty_like(scores).scatter_(0, order, mid_rank[group])
    u_statistic = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))

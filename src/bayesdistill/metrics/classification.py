"""Metrics of predicted class probabilities against labels (REFERENCE.md §6).

All functions take probabilities ``probs`` of shape ``(N, C)`` (rows summing to one) and
labels ``labels`` of shape ``(N,)``, and return Python floats.
"""

from __future__ import annotations

import torch
from torch import Tensor

NLL_EPS = 1e-12
"""Probabilities are clamped to at least this value before taking logs in `nll`."""

ECE_BINS = 15

TOP5 = 5
TOP5_MIN_CLASSES = 10
"""`classification_metrics` reports top-5 accuracy only with at least this many classes."""


def accuracy(probs: Tensor, labels: Tensor) -> float:
    """Fraction of examples whose arg-max class equals the label."""
    return float((probs.argmax(1) == labels).double().mean())


def top_k_accuracy(probs: Tensor, labels: Tensor, k: int) -> float:
    """Fraction of examples whose label is among the ``k`` most probable classes.

    An example counts as correct when fewer than ``k`` other classes have a probability at
    least as high as the label's, #{j ≠ y : p_j ≥ p_y} < k. Ties therefore count against
    the label (uniform predictions score 0 for k < C), which keeps the metric deterministic
    where ``torch.topk`` would pick among tied classes arbitrarily.
    """
    num_classes = probs.shape[1]
    if not 1 <= k <= num_classes:
        raise ValueError(f"k must lie in [1, {num_classes}] (the number of classes), got {k}")
    p_true = probs.gather(1, labels[:, None])
    rivals = (probs >= p_true).sum(1) - 1  # the label's own column always counts
    return float((rivals < k).double().mean())


def nll(probs: Tensor, labels: Tensor, eps: float = NLL_EPS) -> float:
    """Mean negative log-likelihood −log max(p_y, eps) (natural log)."""
    p_true = probs.gather(1, labels[:, None]).squeeze(1).double()
    return float(-p_true.clamp_min(eps).log().mean())


def brier(probs: Tensor, labels: Tensor) -> float:
    """Brier score: mean over examples of Σ_k (p_k − e_{y,k})² (range [0, 2])."""
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return float((probs.double() - onehot).square().sum(1).mean())


def calibration_bins(
    probs: Tensor, labels: Tensor, num_bins: int = ECE_BINS
) -> tuple[Tensor, Tensor, Tensor]:
    """Top-label reliability bins: equal-width, right-closed (lo, hi] on [0, 1].

    Returns ``(count, mean_confidence, accuracy)``, each ``(num_bins,)``; empty bins
    have count 0 and mean confidence/accuracy 0.
    """
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).double()
    # bin b holds confidences in (upper_{b-1}, upper_b]; the edges are computed in the
    # probabilities' own dtype so that, e.g., a float32 0.4 falls in (1/3, 0.4].
    device = confidence.device
    uppers = torch.linspace(0.0, 1.0, num_bins + 1, dtype=confidence.dtype, device=device)[1:]
    index = torch.bucketize(confidence, uppers, right=False).clamp_max(num_bins - 1)
    confidence = confidence.double()
    count = torch.zeros(num_bins, dtype=torch.float64, device=device).index_add_(
        0, index, torch.ones_like(correct)
    )
    conf_sum = torch.zeros(num_bins, dtype=torch.float64, device=device).index_add_(
        0, index, confidence
    )
    acc_sum = torch.zeros(num_bins, dtype=torch.float64, device=device).index_add_(
        0, index, correct
    )
    safe = count.clamp_min(1)
    return count, conf_sum / safe, acc_sum / safe


def ece(probs: Tensor, labels: Tensor, num_bins: int = ECE_BINS) -> float:
    """Expected calibration error (Guo et al. 2017): top-label, 15 equal-width (lo, hi]
    bins, L1: Σ_b (n_b / N) · |acc_b − conf_b|."""
    count, conf, acc = calibration_bins(probs, labels, num_bins)
    return float((count / count.sum() * (acc - conf).abs()).sum())


def l2_to_bcp(probs: Tensor, bcp: Tensor) -> float:
    """Mean Euclidean distance ‖p(x) − p*(x)‖₂ to the exact Bayes class probabilities."""
    return float((probs.double() - bcp.double()).norm(dim=1).mean())


def mean_entropy(probs: Tensor, eps: float = NLL_EPS) -> float:
    """Mean Shannon entropy −Σ_k p_k log p_k (nats) of the rows: how soft the targets are."""
    p = probs.double()
    return float(-(p * p.clamp_min(eps).log()).sum(1).mean())


def mean_total_variation(probs: Tensor, reference: Tensor) -> float:
    """Mean total-variation distance ½‖p − q‖₁ between two sets of predictions."""
    return float(0.5 * (probs.double() - reference.double()).abs().sum(1).mean())


def classification_metrics(
    probs: Tensor, labels: Tensor, bcp: Tensor | None = None
) -> dict[str, float]:
    """accuracy, nll, ece, brier; top5_accuracy when there are at least `TOP5_MIN_CLASSES`
    classes; l2_bcp when exact BCPs are given."""
    out = {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "ece": ece(probs, labels),
        "brier": brier(probs, labels),
    }
    if probs.shape[1] >= TOP5_MIN_CLASSES:
        out["top5_accuracy"] = top_k_accuracy(probs, labels, TOP5)
    if bcp is not None:
        out["l2_bcp"] = l2_to_bcp(probs, bcp)
    return out

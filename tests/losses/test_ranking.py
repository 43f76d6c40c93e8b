"""Menon et al.'s weighted negatives and distilled ranking loss, and the exact AUC metric.

(`roc_auc` lives in bayesdistill.metrics.ranking; its tests sit here beside the loss whose
risk it measures.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bayesdistill.errors import ConfigError, DataError
from bayesdistill.losses import LOSSES, distilled_ranking, weighted_negatives
from bayesdistill.metrics.ranking import roc_auc

Z = torch.tensor(
    [[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 3.0, -2.0], [1.0, 1.5, -0.5, 0.3]], dtype=torch.float64
)
P = torch.tensor(
    [[0.6, 0.1, 0.2, 0.1], [0.2, 0.1, 0.6, 0.1], [0.05, 0.7, 0.05, 0.2]], dtype=torch.float64
)
Y = torch.tensor([0, 2, 3])

Z2 = torch.tensor(
    [[0.5, 1.0], [2.0, -1.0], [0.0, 0.3], [1.0, 1.0], [-0.5, 2.0]], dtype=torch.float64
)
P2 = torch.tensor([[0.3, 0.7], [0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
Y2 = torch.tensor([1, 0, 0, 1, 1])


# --- weighted negatives ---------------------------------------------------------------


def test_weighted_negatives_by_hand():
    z, p, y = Z.numpy(), P.numpy(), Y.numpy()
    losses = []
    for i in range(len(y)):
        alpha = np.array([1.0 if k == y[i] else 1.0 - p[i, k] for k in range(z.shape[1])])
        losses.append(-z[i, y[i]] + np.log((alpha * np.exp(z[i])).sum()))
    assert weighted_negatives(Z, P, Y).item() == pytest.approx(np.mean(losses), rel=1e-12)


def test_weighted_negatives_is_ce_for_a_teacher_one_hot_on_the_label():
    one_hot = F.one_hot(Y, 4).double()
    assert weighted_negatives(Z, one_hot, Y).item() == pytest.approx(F.cross_entropy(Z, Y).item())


def test_a_negative_with_teacher_probability_one_leaves_the_normaliser():
    wrong = F.one_hot(torch.tensor([1, 0, 2]), 4).double()
    z = Z.clone().requires_grad_(True)
    value = weighted_negatives(z, wrong, Y)
    keep = 1.0 - wrong
    keep[torch.arange(3), Y] = 1.0
    expected = (-Z[torch.arange(3), Y] + (Z.exp() * keep).sum(1).log()).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    value.backward()
    assert z.grad[wrong.bool()].abs().max().item() == 0.0


def test_weighted_negatives_has_no_options():
    assert LOSSES.entry("weighted_negatives").options == ()


# --- distilled ranking ------------------------------------------------------------------


def _pairwise_by_hand(z: np.ndarray, positive: np.ndarray) -> float:
    s = z[:, 1] - z[:, 0]
    total, weight_sum = 0.0, 0.0
    for i in range(len(s)):
        for j in range(len(s)):
            if i == j:
                continue
            w = positive[i] * (1 - positive[j])
            total += w * math.log1p(math.exp(-(s[i] - s[j])))
            weight_sum += w
    return total / weight_sum


def test_distilled_ranking_by_double_loop():
    expected = _pairwise_by_hand(Z2.numpy(), P2[:, 1].numpy())
    assert distilled_ranking(Z2, P2, Y2).item() == pytest.approx(expected, rel=1e-12)


def test_labels_give_the_standard_pairwise_loss():
    s = (Z2[:, 1] - Z2[:, 0]).tolist()
    pos = [i for i, y in enumerate(Y2.tolist()) if y == 1]
    neg = [j for j, y in enumerate(Y2.tolist()) if y == 0]
    pairs = [math.log1p(math.exp(-(s[i] - s[j]))) for i in pos for j in neg]
    expected = sum(pairs) / len(pairs)
    assert distilled_ranking(Z2, P2, Y2, use_labels=True).item() == pytest.approx(expected)
    assert distilled_ranking(Z2, None, Y2, use_labels=True).item() == pytest.approx(expected)


def test_ranking_loss_falls_as_the_order_improves():
    teacher = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]], dtype=torch.float64)
    good = torch.tensor([[0.0, -1.0], [0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    bad = good.flip(0)
    assert distilled_ranking(good, teacher, Y2[:3]) < distilled_ranking(bad, teacher, Y2[:3])


def test_no_weighted_pair_gives_zero_with_finite_gradients():
    z = Z2[:3].clone().requires_grad_(True)
    value = distilled_ranking(z, None, torch.ones(3, dtype=torch.long), use_labels=True)
    value.backward()
    assert value.item() == 0.0
    assert torch.isfinite(z.grad).all()
    single = distilled_ranking(Z2[:1], P2[:1], Y2[:1])
    assert single.item() == 0.0


def test_distilled_ranking_rejects_more_than_two_classes():
    with pytest.raises(ConfigError, match=r"binary tasks.*\(B, 2\), got shape \(3, 4\)"):
        distilled_ranking(Z, P, Y)
    with pytest.raises(
        DataError, match=r"teacher probabilities must have the logits' shape \(5, 2\)"
    ):
        distilled_ranking(Z2, P, Y2)


def test_distilled_ranking_is_tagged_binary():
    assert LOSSES.entry("distilled_ranking").tags["binary"] is True


# --- AUC --------------------------------------------------------------------------------


def _auc_by_double_loop(scores: list[float], labels: list[int]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_by_hand_with_ties():
    # positives 0.8, 0.4, 0.4; negatives 0.4, 0.1: pairs (0.8 > 0.4, 0.8 > 0.1, 0.4 = 0.4,
    # 0.4 > 0.1, 0.4 = 0.4, 0.4 > 0.1) = 4 wins + 2 ties = 5 of 6
    scores = torch.tensor([0.8, 0.4, 0.4, 0.4, 0.1])
    labels = torch.tensor([1, 1, 0, 1, 0])
    assert roc_auc(scores, labels) == pytest.approx(5 / 6, abs=1e-15)


def test_auc_extremes():
    labels = torch.tensor([0, 0, 1, 1])
    assert roc_auc(torch.tensor([0.0, 1.0, 2.0, 3.0]), labels) == 1.0
    assert roc_auc(torch.tensor([3.0, 2.0, 1.0, 0.0]), labels) == 0.0
    assert roc_auc(torch.zeros(4), labels) == 0.5


def test_auc_matches_a_double_loop_on_random_scores_with_ties():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 7, (60,), generator=gen).double() / 3.0
    labels = torch.randint(0, 2, (60,), generator=gen)
    expected = _auc_by_double_loop(scores.tolist(), labels.tolist())
    assert roc_auc(scores, labels) == pytest.approx(expected, abs=1e-12)
    assert roc_auc(scores, labels.bool()) == pytest.approx(expected, abs=1e-12)


def test_auc_matches_scipy_mann_whitney():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=200), 1)
    labels = rng.integers(0, 2, size=200)
    u = stats.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    expected = u / ((labels == 1).sum() * (labels == 0).sum())
    assert roc_auc(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [1, 1], "needs both classes, got 2 positive and 0 negative"),
        ([0.1, 0.2], [0, 2], r"labels must be 0/1, got values \[0, 2\]"),
        ([0.1, float("nan")], [0, 1], "NaN scores"),
        ([0.1, 0.2, 0.3], [0, 1], r"same shape \(N,\), got \(3,\) and \(2,\)"),
    ],
)
def test_auc_rejects_bad_input(scores, labels, message):
    with pytest.raises(DataError, match=message):
        roc_auc(torch.tensor(scores), torch.tensor(labels))

"""Metrics against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from bayesdistill.metrics import (
    accuracy,
    brier,
    calibration_bins,
    classification_metrics,
    ece,
    l2_to_bcp,
    nll,
    top_k_accuracy,
)


def test_accuracy_nll_brier_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    labels = torch.tensor([0, 2, 2])
    assert accuracy(probs, labels) == pytest.approx(2 / 3)
    assert nll(probs, labels) == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.6)) / 3)
    b = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.6**2 + 0.7**2) + (0.2**2 + 0.2**2 + 0.4**2)) / 3
    assert brier(probs, labels) == pytest.approx(b)


def test_nll_clamps_zero_probabilities():
    probs = torch.tensor([[1.0, 0.0]])
    assert nll(probs, torch.tensor([1])) == pytest.approx(-math.log(1e-12))


def test_ece_by_hand_with_right_closed_bins():
    # confidences 0.4 (bin (5/15, 6/15]), 0.8 twice (bin (11/15, 12/15]), 1.0 (last bin)
    probs = torch.tensor([[0.4, 0.3, 0.3], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [1.0, 0.0, 0.0]])
    labels = torch.tensor([1, 0, 0, 0])  # wrong, right, wrong, right
    count, _, _ = calibration_bins(probs, labels)
    assert count.tolist()[5] == 1 and count.tolist()[11] == 2 and count.tolist()[14] == 1
    expected = (1 * abs(0 - 0.4) + 2 * abs(0.5 - 0.8) + 1 * abs(1 - 1.0)) / 4
    assert ece(probs, labels) == pytest.approx(expected)


def test_ece_bin_edges_are_right_closed():
    # confidence exactly 2/3 = 10/15 belongs to bin (9/15, 10/15], index 9
    probs = torch.tensor([[2 / 3, 1 / 3]], dtype=torch.float64)
    count, _, _ = calibration_bins(probs, torch.tensor([0]))
    assert int(torch.nonzero(count).item()) == 9


def test_ece_zero_for_perfectly_calibrated_bins():
    # four examples at confidence 0.75, three correct
    probs = torch.tensor([[0.75, 0.25]] * 4)
    labels = torch.tensor([0, 0, 0, 1])
    assert ece(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_l2_to_bcp():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    assert l2_to_bcp(p, q) == pytest.approx(math.sqrt(2) / 2)


def test_top_k_accuracy_by_hand():
    probs = torch.tensor(
        [[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.6, 0.2, 0.1]]
    )
    labels = torch.tensor([1, 3, 0, 1])
    # rivals at least as probable as the label: 2, 3, 3 (a uniform row ties with all), 0
    expected = {1: 1 / 4, 2: 1 / 4, 3: 2 / 4, 4: 4 / 4}
    for k, value in expected.items():
        assert top_k_accuracy(probs, labels, k) == pytest.approx(value)


def test_top_k_accuracy_against_torch_topk_without_ties():
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(200, 12, generator=generator, dtype=torch.float64), 1)
    labels = torch.randint(0, 12, (200,), generator=generator)
    for k in (1, 3, 5, 12):
        reference = (probs.topk(k, 1).indices == labels[:, None]).any(1).double().mean()
        assert top_k_accuracy(probs, labels, k) == pytest.approx(float(reference))
    assert top_k_accuracy(probs, labels, 1) == pytest.approx(accuracy(probs, labels))


def test_top_k_accuracy_refuses_k_outside_the_classes():
    probs = torch.full((2, 3), 1 / 3)
    for k in (0, 4):
        with pytest.raises(ValueError, match=r"k must lie in \[1, 3\].*got " + str(k)):
            top_k_accuracy(probs, torch.tensor([0, 1]), k)


def test_classification_metrics_report_top5_from_ten_classes():
    probs = torch.softmax(torch.randn(50, 10, generator=torch.Generator().manual_seed(1)), 1)
    labels = torch.arange(50) % 10
    metrics = classification_metrics(probs, labels)
    assert metrics["top5_accuracy"] == pytest.approx(top_k_accuracy(probs, labels, 5))
    assert "top5_accuracy" not in classification_metrics(probs[:, :9].softmax(1), labels % 9)

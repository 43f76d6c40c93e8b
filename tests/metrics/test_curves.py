"""Learning-curve fluctuation on curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayesdistill.metrics import BestPoint, best_point, fluctuation, moving_average


def test_linear_and_constant_curves_have_zero_fluctuation():
    assert fluctuation(np.linspace(0, 1, 40)) == pytest.approx(0.0, abs=1e-12)
    assert fluctuation([0.5] * 40) == pytest.approx(0.0, abs=1e-12)


def test_white_noise_fluctuation_matches_theory():
    sigma, window = 2.0, 5
    noise = np.random.default_rng(0).normal(0, sigma, 200_000)
    expected = sigma * math.sqrt(1 - 1 / window)
    assert fluctuation(noise, window=window, tail=1.0) == pytest.approx(expected, rel=0.01)


def test_fluctuation_uses_only_the_tail():
    curve = np.concatenate([np.random.default_rng(1).normal(0, 5, 50), np.zeros(50)])
    assert fluctuation(curve, tail=0.5) == pytest.approx(0.0, abs=1e-12)
    assert fluctuation(curve, tail=1.0) > 1.0


def test_moving_average_shrinks_window_at_ends():
    out = moving_average([1.0, 2.0, 3.0, 10.0], window=3)
    assert out.tolist() == [1.0, 2.0, 5.0, 10.0]


def test_short_curves_give_nan():
    assert math.isnan(fluctuation([1.0, 2.0]))


CURVE = [
    {"epoch": 1, "val_accuracy": 0.60, "test_accuracy": 0.55},
    {"epoch": 2, "val_accuracy": 0.70, "test_accuracy": 0.58},
    {"epoch": 3, "val_accuracy": 0.70, "test_accuracy": 0.62},  # ties epoch 2 on validation
    {"epoch": 4, "val_accuracy": 0.65, "test_accuracy": 0.64},
    {"epoch": 5, "val_accuracy": 0.68, "test_accuracy": 0.61},
]


def test_best_point_by_validation_takes_the_earliest_tie():
    best = best_point(CURVE, select="val_accuracy", report="test_accuracy")
    assert best == BestPoint(epoch=2.0, selected=0.70, reported=0.58)


def test_best_point_by_test_is_the_maximum():
    best = best_point(CURVE, select="test_accuracy", report="test_accuracy")
    assert best == BestPoint(epoch=4.0, selected=0.64, reported=0.64)


def test_best_point_skips_records_without_the_keys():
    records = [
        {"epoch": 1, "test_accuracy": 0.9},  # no validation split at this point
        {"epoch": 2, "val_accuracy": float("nan"), "test_accuracy": 0.8},
        {"epoch": 3, "val_accuracy": 0.5, "test_accuracy": 0.4},
    ]
    assert best_point(records) == BestPoint(epoch=3.0, selected=0.5, reported=0.4)
    assert best_point(records[:2]) is None
    assert best_point([]) is None

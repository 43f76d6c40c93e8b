"""Learning-curve fluctuation on curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayesdistill.metrics import fluctuation, moving_average


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

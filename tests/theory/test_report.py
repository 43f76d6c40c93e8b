"""Claims over seeds are decided by paired 95 % t intervals (theory/report.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bayesdistill.theory.report import (
    EQUAL_SEEDS,
    NO_INTERVAL,
    NOT_FINITE,
    above_zero,
    below_zero,
    mean_ci,
    paired_less,
    paired_ordering,
)

D = np.array([0.30, 0.50, 0.10, 0.40])
"""Fixed per-seed differences: mean 0.325, sample sd 0.1708, t_{0.975, 3} = 3.1824."""


def hand_interval(d: np.ndarray) -> tuple[float, float]:
    n = len(d)
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
    return d.mean() - half, d.mean() + half


def test_mean_ci_prints_the_hand_computed_t_interval():
    lo, hi = hand_interval(D)
    # by hand: 0.325 ± 3.18245 · 0.170783 / 2 = 0.325 ± 0.27175
    assert (lo, hi) == pytest.approx((0.05325, 0.59675), abs=1e-4)
    assert mean_ci(D) == f"0.325 [{lo:.3g}, {hi:.3g}]"
    assert above_zero(D) and not below_zero(D)
    assert below_zero(-D) and not above_zero(-D)
    # shifted so that the interval straddles 0: neither side
    assert not above_zero(D - 0.2) and not below_zero(D - 0.2)


def test_paired_less_uses_per_seed_differences_and_their_interval():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = a + D  # per seed b − a = D, although the seeds' levels differ widely
    check = paired_less(("a", a), ("b", b))
    lo, hi = hand_interval(a - b)
    assert check.held
    assert check.measured == f"a − b: {-0.325:.3g} [{lo:.3g}, {hi:.3g}]"
    assert not paired_less(("b", b), ("a", a)).held  # the wrong direction


def test_paired_less_on_logs_compares_ratios():
    a = np.array([0.01, 1.0, 100.0])
    b = a * np.exp([0.5, 0.6, 0.55])  # b/a ≈ 1.7 in every seed, levels 10⁴ apart
    check = paired_less(("a", a), ("b", b), log=True)
    lo, hi = hand_interval(np.log(a) - np.log(b))
    assert check.held and hi < 0
    assert check.measured == f"ln(a/b): {-0.55:.3g} [{lo:.3g}, {hi:.3g}]"
    # the raw differences are dominated by the largest seed: no resolved ordering
    assert not paired_less(("a", a), ("b", b)).held
    with pytest.raises(ValueError, match="positive"):
        paired_less(("a", [0.0, 1.0]), ("b", [1.0, 2.0]), log=True)
    with pytest.raises(ValueError, match="one value per seed"):
        paired_less(("a", [1.0, 2.0]), ("b", [1.0, 2.0, 3.0]))


def test_an_ordering_of_means_without_separated_intervals_is_not_held():
    values = {
        "exact": np.array([0.100, 0.130, 0.090]),
        "dirichlet_a5": np.array([0.120, 0.105, 0.110]),  # mean 0.1117 > 0.1067, but noisy
        "onehot": np.array([0.200, 0.210, 0.205]),
    }
    means = [v.mean() for v in values.values()]
    assert means == sorted(means)  # ordered in the means
    check = paired_ordering(values)
    assert not check.held
    first, second = check.measured.split("; ")
    d = values["exact"] - values["dirichlet_a5"]
    lo, hi = hand_interval(d)
    assert lo < 0 < hi
    assert first == f"exact − dirichlet_a5: {d.mean():.3g} [{lo:.3g}, {hi:.3g}]"
    assert second.startswith("dirichlet_a5 − onehot: ")
    assert paired_less(("dirichlet_a5", values["dirichlet_a5"]), ("onehot", values["onehot"])).held


def test_a_clearly_separated_ordering_is_held_and_a_reversed_one_is_not():
    base = np.array([0.10, 0.12, 0.11, 0.13])
    jitter = np.array([0.001, -0.002, 0.0015, 0.0])
    values = {"a": base, "b": base + 0.02 + jitter, "c": base + 0.05 - jitter, "d": base + 0.09}
    check = paired_ordering(values)
    assert check.held
    assert check.measured.count("[") == 3  # one interval per adjacent pair
    assert not paired_ordering(dict(reversed(list(values.items())))).held
    # one adjacent pair out of order is enough to fail
    swapped = {"a": values["a"], "c": values["c"], "b": values["b"], "d": values["d"]}
    assert not paired_ordering(swapped).held


def test_one_seed_has_no_interval_and_holds_nothing():
    check = paired_ordering({"a": [0.1], "b": [0.2], "c": [0.3]})
    assert not check.held
    assert check.measured.count(NO_INTERVAL) == 2
    assert mean_ci([0.5]) == f"0.5 ({NO_INTERVAL})"
    assert not above_zero([0.5]) and not below_zero([-0.5])
    with pytest.raises(ValueError, match="at least two"):
        paired_ordering({"a": [0.1, 0.2]})


def test_a_non_finite_seed_is_reported_and_holds_nothing():
    check = paired_less(("a", [0.1, float("nan"), 0.1]), ("b", [0.2, 0.3, 0.4]))
    assert not check.held and NOT_FINITE in check.measured
    assert not below_zero([-1.0, float("inf"), -2.0])


def test_equal_seeds_give_a_flagged_zero_width_interval():
    assert mean_ci([0.8, 0.8]) == f"0.8 [0.8, 0.8] ({EQUAL_SEEDS})"
    assert above_zero([0.8, 0.8])  # the t interval's verdict, flagged in the text

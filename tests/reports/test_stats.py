"""Paired-difference statistics against scipy and hand computations on fixed numbers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from bayesdistill.reports.stats import (
    IntervalMethod,
    bootstrap_interval,
    compare_paired,
    excludes_zero,
    seeds_needed,
    sign_test_p,
    t_interval,
    wilcoxon_p,
)

D = [1.2, 0.4, 2.0, -0.3, 1.1]
# by hand: mean 4.4/5; squared deviations .1024 + .2304 + 1.2544 + 1.3924 + .0484 = 3.028
MEAN, SD = 0.88, math.sqrt(3.028 / 4)
T_975_4 = 2.7764451051977987  # t_{0.975, 4}


def _exact_wilcoxon_two_sided(d):
    """Naive reference: enumerate all 2^n sign patterns of the ranks (distinct |d|, no zeros)."""
    ranks = stats.rankdata(np.abs(d))
    observed = ranks[np.asarray(d) < 0].sum()
    expected = ranks.sum() / 2
    patterns = [
        sum(r for r, s in zip(ranks, signs, strict=True) if s)
        for signs in itertools.product((0, 1), repeat=len(d))
    ]
    extreme = sum(abs(t - expected) >= abs(observed - expected) - 1e-12 for t in patterns)
    return extreme / len(patterns)


def test_t_interval_by_hand_and_against_scipy():
    lo, hi = t_interval(D)
    half = T_975_4 * SD / math.sqrt(5)
    assert (lo, hi) == pytest.approx((MEAN - half, MEAN + half), rel=1e-12)
    assert (lo, hi) == pytest.approx((-0.20031903608, 1.96031903608), abs=1e-9)
    reference = stats.ttest_1samp(D, 0.0).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((reference.low, reference.high), rel=1e-12)
    assert t_interval(D, confidence=0.9) == pytest.approx(
        tuple(stats.ttest_1samp(D, 0.0).confidence_interval(0.9)), rel=1e-12
    )


def test_wilcoxon_and_sign_test_by_hand():
    # ranks of |d|: 0.3→1 (the only negative), 0.4→2, 1.1→3, 1.2→4, 2.0→5, so W⁻ = 1;
    # P(W⁻ ≤ 1) = #{∅, {1}} / 2⁵ = 2/32, two-sided 4/32
    assert wilcoxon_p(D) == pytest.approx(4 / 32, rel=1e-12)
    assert wilcoxon_p(D) == pytest.approx(_exact_wilcoxon_two_sided(D), rel=1e-12)
    # 4 of 5 positive: P(X ≥ 4) = 6/32, two-sided 12/32
    assert sign_test_p(D) == pytest.approx(12 / 32, rel=1e-12)


@pytest.mark.parametrize(
    "d", [[0.3, -1.7, 2.2, 0.9, 1.4, -0.2, 3.1], [-0.5, -1.5, -2.5, 0.25, -3.0, -0.75]]
)
def test_wilcoxon_matches_sign_flip_enumeration(d):
    assert wilcoxon_p(d) == pytest.approx(_exact_wilcoxon_two_sided(d), rel=1e-12)
    positives = sum(x > 0 for x in d)
    assert sign_test_p(d) == pytest.approx(stats.binomtest(positives, len(d)).pvalue, rel=1e-12)


def test_zero_differences_are_dropped_by_both_tests():
    with_zero = [1.2, 0.4, 0.0, 2.0, -0.3, 1.1]
    assert wilcoxon_p(with_zero) == pytest.approx(4 / 32, rel=1e-12)
    assert sign_test_p(with_zero) == pytest.approx(12 / 32, rel=1e-12)
    c = compare_paired(with_zero)
    assert (c.n, c.wins, c.losses, c.ties) == (6, 4, 1, 1)
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0 and sign_test_p([0.0, 0.0]) == 1.0
    assert wilcoxon_p([]) is None and sign_test_p([]) is None


@pytest.mark.parametrize("n, smallest", [(5, 0.0625), (6, 0.03125)])
def test_smallest_p_with_few_seeds(n, smallest):
    # REFERENCE.md §9: all n differences of one sign give the smallest two-sided p, 2/2ⁿ
    d = np.arange(1.0, n + 1)
    assert wilcoxon_p(d) == pytest.approx(smallest, rel=1e-12)
    assert sign_test_p(d) == pytest.approx(smallest, rel=1e-12)


def test_seeds_needed_closed_form():
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert z**2 == pytest.approx(7.849, abs=1e-3)
    # (2.8016 · 0.87006 / 0.88)² = 7.67 → 8
    assert seeds_needed(MEAN, SD) == 8
    assert seeds_needed(-MEAN, SD) == 8
    assert seeds_needed(0.1, 1.0) == math.ceil(z**2 * 100) == 785
    assert seeds_needed(0.5, 1.0, power=0.9) == math.ceil(
        ((stats.norm.ppf(0.975) + stats.norm.ppf(0.9)) * 2) ** 2
    )
    assert seeds_needed(0.0, 1.0) == math.inf
    assert math.isnan(seeds_needed(1.0, math.nan))
    assert seeds_needed(5.0, 0.1) == 2  # an interval needs two seeds


def test_compare_paired_collects_everything():
    c = compare_paired(D)
    assert c.n == 5 and c.wins == 4 and c.losses == 1
    assert c.mean == pytest.approx(MEAN) and c.sd == pytest.approx(SD)
    assert c.interval == pytest.approx(t_interval(D))
    assert not c.excludes_zero
    assert c.p_wilcoxon == pytest.approx(0.125) and c.p_sign == pytest.approx(0.375)
    assert c.seeds_needed == 8
    resolved = compare_paired([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert resolved.excludes_zero and resolved.interval[0] == pytest.approx(
        3.5 - stats.t.ppf(0.975, 5) * math.sqrt(3.5) / math.sqrt(6)
    )
    assert compare_paired([-2.0, -3.0, -2.5]).excludes_zero  # below 0 also excludes it


def test_one_seed_has_no_interval():
    c = compare_paired([0.5])
    assert c.interval is None and math.isnan(c.sd) and not c.excludes_zero
    assert math.isnan(c.seeds_needed)
    assert t_interval([0.5]) is None
    assert bootstrap_interval([0.5], np.random.default_rng(0)) is None


def test_excludes_zero_edges():
    assert excludes_zero((0.1, 2.0)) and excludes_zero((-2.0, -0.1))
    assert not excludes_zero((0.0, 2.0)) and not excludes_zero((-1.0, 1.0))
    assert not excludes_zero(None)


def test_bootstrap_interval_against_scipy():
    d = np.random.default_rng(3).normal(1.0, 2.0, 20)
    ours = bootstrap_interval(d, np.random.default_rng(0), resamples=40_000)
    ref = stats.bootstrap(
        (d,), np.mean, n_resamples=40_000, method="percentile", rng=np.random.default_rng(1)
    ).confidence_interval
    width = ref.high - ref.low
    assert ours == pytest.approx((ref.low, ref.high), abs=0.03 * width)
    # the same generator state gives the same interval; a constant sample a point
    again = bootstrap_interval(d, np.random.default_rng(0), resamples=40_000)
    assert again == ours
    assert bootstrap_interval([0.7] * 4, np.random.default_rng(0)) == pytest.approx((0.7, 0.7))


def test_compare_paired_bootstrap_and_refusals():
    c = compare_paired(D, "bootstrap", generator=np.random.default_rng(0), resamples=2000)
    assert c.method is IntervalMethod.BOOTSTRAP
    assert c.interval == bootstrap_interval(D, np.random.default_rng(0), resamples=2000)
    with pytest.raises(ValueError, match="needs a generator"):
        compare_paired(D, "bootstrap")
    with pytest.raises(ValueError, match=r"one of \['t', 'bootstrap'\], got 'normal'"):
        compare_paired(D, "normal")
    with pytest.raises(ValueError, match="finite"):
        compare_paired([1.0, math.nan])
    with pytest.raises(ValueError, match="at least one"):
        compare_paired([])

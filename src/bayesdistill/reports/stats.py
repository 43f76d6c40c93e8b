"""Statistics of paired differences over seeds (REFERENCE.md §9).

Seeds pair the runs of a study (same teacher network, student initialisation, training
subset and batch order), so two teacher kinds are compared through their per-seed
differences d_1, …, d_n (e.g. student accuracy with teacher A minus with teacher B). With

    mean  d̄ = (1/n) Σ_s d_s,        sd  s = sqrt( Σ_s (d_s − d̄)² / (n − 1) ),

this module gives

- the 95 % paired-t interval  d̄ ± t_{0.975, n−1} · s / √n  (None when n < 2);
- optionally a percentile bootstrap interval of d̄ (B resamples of the n differences with
  replacement, an explicit ``numpy.random.Generator``);
- two paired tests of "d is symmetric about 0", two-sided: Wilcoxon's signed-rank test
  (`scipy.stats.wilcoxon`) and the exact sign test (`scipy.stats.binomtest` on the number of
  positive differences). **Zeros** (d_s = 0, a tie between the two teacher kinds) are dropped
  before either test (Wilcoxon's own convention, ``zero_method="wilcox"``), so n in the
  tests is the number of non-zero differences; when every difference is zero the p-value
  is 1. With n non-zero differences neither test can go below 2 / 2ⁿ: 0.0625 at n = 5,
  0.031 at n = 6, so five seeds never give p < 0.05;
- the number of seeds that would resolve the observed effect at its observed spread,
  n ≈ ((z_{0.975} + z_{0.8}) · s / d̄)² ≈ 7.85 (s / d̄)², i.e. 80 % power for a two-sided
  5 % test (normal approximation; with a handful of seeds the t quantiles make the real
  need somewhat larger).

All functions are pure; the table code in `bayesdistill.reports.tables` formats them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
"""Coverage of the intervals (two-sided)."""

POWER = 0.8
"""Power at which `seeds_needed` plans a study."""

BOOTSTRAP_RESAMPLES = 10_000
"""Default number of bootstrap resamples B."""

MIN_SEEDS_FOR_INTERVAL = 2
"""An interval needs a spread, hence at least two differences."""


class IntervalMethod(str, Enum):
    """How the confidence interval of the mean difference is computed."""

    T = "t"
    """Paired t: d̄ ± t_{(1+c)/2, n−1} · s / √n. Assumes roughly normal differences."""

    BOOTSTRAP = "bootstrap"
    """Percentile bootstrap: the (1−c)/2 and (1+c)/2 quantiles of the means of B resamples
    of the differences drawn with replacement. Needs a generator; too narrow for n ≈ 5."""


Interval = tuple[float, float]


def interval_method(value: IntervalMethod | str) -> IntervalMethod:
    """``value`` as an `IntervalMethod`; a ValueError naming the allowed ones otherwise."""
    try:
        return IntervalMethod(value)
    except ValueError:
        allowed = [m.value for m in IntervalMethod]
        raise ValueError(f"interval must be one of {allowed}, got {value!r}") from None


@dataclass(frozen=True)
class PairedComparison:
    """Summary of per-seed paired differences d_1..d_n (see the module docstring).

    Attributes:
        n: number of differences (seeds with both runs).
        mean: d̄.
        sd: sample standard deviation s (ddof = 1); NaN when n < 2.
        interval: ``(lo, hi)`` at `CONFIDENCE`, or None when n < 2.
        method: how ``interval`` was computed.
        wins: number of d_s > 0.
        losses: number of d_s < 0 (n − wins − losses differences are exactly 0).
        p_wilcoxon: two-sided Wilcoxon signed-rank p-value (zeros dropped); None when n = 0.
        p_sign: two-sided exact sign-test p-value (zeros dropped); None when n = 0.
        seeds_needed: seeds for 80 % power at effect d̄ and spread s (`seeds_needed`).
    """

    n: int
    mean: float
    sd: float
    interval: Interval | None
    method: IntervalMethod
    wins: int
    losses: int
    p_wilcoxon: float | None
    p_sign: float | None
    seeds_needed: float

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies entirely above or entirely below 0."""
        return excludes_zero(self.interval)

    @property
    def ties(self) -> int:
        return self.n - self.wins - self.losses


def _as_differences(differences: Sequence[float] | np.ndarray) -> np.ndarray:
    d = np.asarray(differences, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(d)):
        raise ValueError(
            f"paired differences must be finite numbers, got {d.tolist()}; "
            "drop the seeds where a run is missing or diverged before comparing"
        )
    return d


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def t_interval(
    differences: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE
) -> Interval | None:
    """Paired-t interval d̄ ± t_{(1+c)/2, n−1} · s / √n; None when n < 2."""
    _check_confidence(confidence)
    d = _as_differences(differences)
    n = len(d)
    if n < MIN_SEEDS_FOR_INTERVAL:
        return None
    mean = float(d.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    return mean - half, mean + half


def bootstrap_interval(
    differences: Sequence[float] | np.ndarray,
    generator: np.random.Generator,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Interval | None:
    """Percentile bootstrap interval of the mean difference; None when n < 2.

    Draws ``resamples`` index vectors of length n uniformly with replacement from
    ``generator`` and returns the (1−c)/2 and (1+c)/2 quantiles (numpy's default linear
    interpolation) of the resampled means.
    """
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples}")
    d = _as_differences(differences)
    n = len(d)
    if n < MIN_SEEDS_FOR_INTERVAL:
        return None
    means = d[generator.integers(0, n, size=(resamples, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def wilcoxon_p(differences: Sequence[float] | np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of the differences (zeros dropped).

    Uses scipy's ``method="auto"``: the exact null distribution when the |d_s| are distinct
    (n ≤ 50); with tied |d_s| scipy picks its own method (recent versions enumerate every
    sign pattern for small n). Returns 1.0 when every difference is 0, None when there is
    none.
    """
    d = _as_differences(differences)
    if len(d) == 0:
        return None
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return 1.0
    return float(stats.wilcoxon(nonzero, alternative="two-sided").pvalue)


def sign_test_p(differences: Sequence[float] | np.ndarray) -> float | None:
    """Two-sided exact sign test: binomial(m, ½) on the number of positive differences among
    the m non-zero ones. Returns 1.0 when every difference is 0, None when there is none."""
    d = _as_differences(differences)
    if len(d) == 0:
        return None
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return 1.0
    return float(stats.binomtest(int((nonzero > 0).sum()), len(nonzero), 0.5).pvalue)


def seeds_needed(
    effect: float, sd: float, power: float = POWER, confidence: float = CONFIDENCE
) -> float:
    """Seeds to detect ``effect`` at spread ``sd`` with a two-sided test at level 1 − c:

        n = ⌈((z_{(1+c)/2} + z_{power}) · sd / |effect|)²⌉,  at least 2,

    ≈ ⌈7.85 (sd/effect)²⌉ at the defaults. Returns ``math.inf`` when ``effect`` is 0 (no
    number of seeds resolves a zero effect) and NaN when ``sd`` is NaN (fewer than 2 seeds).
    """
    _check_confidence(confidence)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    if math.isnan(sd) or math.isnan(effect):
        return math.nan
    if effect == 0:
        return math.inf
    z = float(stats.norm.ppf((1 + confidence) / 2) + stats.norm.ppf(power))
    return float(max(MIN_SEEDS_FOR_INTERVAL, math.ceil((z * sd / abs(effect)) ** 2)))


def excludes_zero(interval: Interval | None) -> bool:
    """True when ``interval`` lies entirely above or entirely below 0 (False for None)."""
    if interval is None:
        return False
    lo, hi = interval
    return lo > 0 or hi < 0


def compare_paired(
    differences: Sequence[float] | np.ndarray,
    method: IntervalMethod | str = IntervalMethod.T,
    *,
    generator: np.random.Generator | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> PairedComparison:
    """Every statistic of the module for one set of paired differences.

    ``method="bootstrap"`` needs ``generator`` (the bootstrap is the only random step).
    """
    method = interval_method(method)
    d = _as_differences(differences)
    n = len(d)
    if n == 0:
        raise ValueError("compare_paired needs at least one paired difference, got none")
    if method is IntervalMethod.BOOTSTRAP:
        if generator is None:
            raise ValueError(
                "interval='bootstrap' needs a generator, e.g. numpy.random.default_rng(0)"
            )
        interval = bootstrap_interval(d, generator, resamples, confidence)
    else:
        interval = t_interval(d, confidence)
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n >= MIN_SEEDS_FOR_INTERVAL else math.nan
    return PairedComparison(
        n=n,
        mean=mean,
        sd=sd,
        interval=interval,
        method=method,
        wins=int((d > 0).sum()),
        losses=int((d < 0).sum()),
        p_wilcoxon=wilcoxon_p(d),
        p_sign=sign_test_p(d),
        seeds_needed=seeds_needed(mean, sd, confidence=confidence),
    )

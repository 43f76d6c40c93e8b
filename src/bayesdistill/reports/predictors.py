"""Did the teacher ranking predict the students? Teacher-side measurements checked against
the students a study trained (issue 20; REFERENCE.md §11).

For one student loss and the teacher kinds it distils from, each teacher-side measurement
(`bayesdistill.reports.advice.Predictor`: held-out NLL, the guideline; held-out Brier,
accuracy and ECE; training-set NLL; on synthetic data the exact KL to p*) is checked two ways:

- **rank agreement**: Spearman's ρ over teacher kinds between the measurement's mean over
  seeds and the students' mean test accuracy (`scipy.stats.spearmanr`, ties ranked by their
  average). The measurement is oriented so that ρ = +1 means "the teacher it calls better
  always has the more accurate student" (NLL, Brier, ECE and KL are negated). Its 95 %
  interval is a percentile bootstrap over seeds: B resamples of the seeds with replacement,
  the same resampled seeds for every kind (seeds pair the runs), ρ recomputed from the
  resampled means; resamples where either side is constant over kinds (ρ undefined) are
  left out and counted.
- **the pick**: the kind the measurement ranks best, and its student's accuracy minus the
  best student's (the kind with the highest mean test accuracy), paired over seeds with
  the 95 % t interval of `bayesdistill.reports.stats`: ``best`` when it is the best student,
  ``within`` when the interval includes 0 (cannot be told apart from the best), ``worse``
  when it lies below 0.

Only seeds where every kind has both the teacher measurement and the student count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import stats

from bayesdistill.reports.advice import (
    GUIDELINE,
    Predictor,
    Values,
    read_exact_kl,
    teacher_kinds,
    teacher_values,
)
from bayesdistill.reports.collect import StudyResults
from bayesdistill.reports.stats import (
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    Interval,
    PairedComparison,
    compare_paired,
)

PERCENT = 100.0
MIN_KINDS = 3
"""A rank correlation over fewer kinds says little (two kinds give ρ = ±1); below this the
section says so instead of printing ρ."""

STUDENT_PREDICTORS = (
    Predictor.VAL_NLL,
    Predictor.VAL_BRIER,
    Predictor.VAL_ACCURACY,
    Predictor.VAL_ECE,
    Predictor.TRAIN_NLL,
)


class Verdict(str, Enum):
    """How the student of the kind a measurement picks compares with the best student."""

    BEST = "best"
    """It is the best student (highest mean test accuracy)."""
    WITHIN = "within"
    """Not the best, but its paired interval against the best includes 0."""
    WORSE = "worse"
    """Its paired interval against the best lies below 0."""
    UNKNOWN = "unknown"
    """Not the best, and one seed gives no interval."""

    @property
    def good(self) -> bool:
        """Best or indistinguishable from the best: what the issue's goal counts."""
        return self in (Verdict.BEST, Verdict.WITHIN)


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's ρ over kinds with a bootstrap interval over seeds.

    Attributes:
        rho: ρ of the means over seeds (NaN when either side is constant over kinds).
        interval: percentile bootstrap interval at `CONFIDENCE`, None with one seed or when
            no resample defines ρ.
        resamples: resamples drawn; undefined: how many of them left ρ undefined.
    """

    rho: float
    interval: Interval | None
    resamples: int
    undefined: int


@dataclass(frozen=True)
class PredictorCheck:
    """One teacher-side measurement checked against the students of one loss."""

    predictor: Predictor
    kinds: list[str]
    seeds: list[int]
    correlation: RankCorrelation
    pick: str
    best: str
    pick_vs_best: PairedComparison | None
    """student(pick) − student(best) in percentage points of test accuracy, per seed."""

    @property
    def verdict(self) -> Verdict:
        if self.pick == self.best:
            return Verdict.BEST
        c = self.pick_vs_best
        if c is None or c.interval is None:
            return Verdict.UNKNOWN
        return Verdict.WORSE if c.excludes_zero else Verdict.WITHIN


def oriented(values: np.ndarray, predictor: Predictor) -> np.ndarray:
    """``values`` signed so that larger means "the measurement calls this teacher better"."""
    return -values if predictor.lower_is_better else values


def spearman_rho(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """`scipy.stats.spearmanr` of x and y; NaN (without scipy's warning) when either is
    constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def rank_correlation(
    teacher: np.ndarray,
    student: np.ndarray,
    generator: np.random.Generator,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> RankCorrelation:
    """Spearman's ρ over kinds between ``teacher`` and ``student`` (both ``(seeds, kinds)``,
    already oriented) with a percentile bootstrap interval over seeds (module docstring).

    The resamples are vectorised: the seeds of each resample index both arrays, the means
    over the resampled seeds are ranked along kinds (`scipy.stats.rankdata`, average ties)
    and ρ is the Pearson correlation of the ranks, which is what `scipy.stats.spearmanr`
    computes.
    """
    teacher = np.asarray(teacher, dtype=np.float64)
    student = np.asarray(student, dtype=np.float64)
    if teacher.shape != student.shape or teacher.ndim != 2:
        raise ValueError(
            "teacher and student values must both be (seeds, kinds) arrays of one shape, got "
            f"{teacher.shape} and {student.shape}"
        )
    if resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples}")
    n = teacher.shape[0]
    rho = spearman_rho(teacher.mean(0), student.mean(0))
    if n < 2:
        return RankCorrelation(rho, None, 0, 0)
    index = generator.integers(0, n, size=(resamples, n))
    boot = _rowwise_spearman(teacher[index].mean(1), student[index].mean(1))
    defined = boot[np.isfinite(boot)]
    interval = None
    if len(defined):
        lo, hi = np.quantile(defined, [(1 - confidence) / 2, (1 + confidence) / 2])
        interval = (float(lo), float(hi))
    return RankCorrelation(rho, interval, resamples, int(resamples - len(defined)))


def _rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair of ``(B, K)`` arrays; NaN where a row is constant."""
    ra = stats.rankdata(a, axis=1)
    rb = stats.rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (ra * rb).sum(1) / denominator, np.nan)


def check_predictor(
    predictor: Predictor,
    teacher: Values,
    student: Values,
    generator: np.random.Generator,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> PredictorCheck | None:
    """Check one measurement (kind → seed → value) against the students' test accuracy
    (kind → seed → accuracy in [0, 1]) over the kinds and seeds both cover; None when fewer
    than two kinds share a seed."""
    kinds = [k for k in teacher if k in student]
    seeds = sorted(
        set.intersection(*(set(teacher[k]) & set(student[k]) for k in kinds)) if kinds else set()
    )
    seeds = [
        s
        for s in seeds
        if all(math.isfinite(teacher[k][s]) and math.isfinite(student[k][s]) for k in kinds)
    ]
    if len(kinds) < 2 or not seeds:
        return None
    t = np.array([[teacher[k][s] for k in kinds] for s in seeds])
    y = np.array([[student[k][s] for k in kinds] for s in seeds])
    correlation = rank_correlation(oriented(t, predictor), y, generator, resamples)
    score = oriented(t.mean(0), predictor)
    pick = kinds[int(np.argmax(score))]  # first of tied kinds, in the study's order
    best = kinds[int(np.argmax(y.mean(0)))]
    diffs = PERCENT * (y[:, kinds.index(pick)] - y[:, kinds.index(best)])
    return PredictorCheck(
        predictor,
        kinds,
        seeds,
        correlation,
        pick,
        best,
        None if pick == best else compare_paired(diffs),
    )


def student_accuracy(results: StudyResults, kinds: Sequence[str], loss: str) -> Values:
    """kind → seed → final test accuracy of the student of ``loss``."""
    out: dict[str, dict[int, float]] = {}
    for kind in kinds:
        values = {s: results.value("student", kind, s, "accuracy", loss) for s in results.seeds}
        out[kind] = {s: v for s, v in values.items() if v is not None}
    return out


def predictor_checks(
    results: StudyResults,
    loss: str,
    only: Sequence[str] | None = None,
    *,
    bootstrap_seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> list[PredictorCheck]:
    """Every teacher-side measurement the folder has, checked against the students of
    ``loss`` (the exact KL where advice.json records it). Each check draws from its own
    generator seeded with ``bootstrap_seed``, so one check does not depend on the others."""
    kinds = teacher_kinds(results, only)
    student = student_accuracy(results, kinds, loss)
    predictors = list(STUDENT_PREDICTORS)
    if read_exact_kl(results.folder):
        predictors.append(Predictor.EXACT_KL)
    out = []
    for predictor in predictors:
        teacher = teacher_values(results, kinds, predictor)
        teacher = {k: v for k, v in teacher.items() if v and student.get(k)}
        check = check_predictor(
            predictor,
            teacher,
            {k: student[k] for k in teacher},
            np.random.default_rng(bootstrap_seed),
            resamples,
        )
        if check is not None:
            out.append(check)
    return out


def predictor_section(
    results: StudyResults,
    losses: Mapping[str, Sequence[str] | None],
    *,
    bootstrap_seed: int = 0,
) -> list[str]:
    """The results.md section "Did the teacher ranking predict the students?": one table
    per loss (``losses``: loss → the kinds it distils from, None for all); empty when no
    loss has two teacher kinds with students."""
    tables: list[str] = []
    for loss, only in losses.items():
        checks = predictor_checks(results, loss, only, bootstrap_seed=bootstrap_seed)
        if checks:
            tables += [f"### Student loss `{loss}`", "", *_check_table(checks), ""]
    if not tables:
        return []
    level = f"{100 * CONFIDENCE:g} %"
    return [
        "## Did the teacher ranking predict the students?",
        "",
        "Each teacher-side measurement ranks the teacher kinds without training a student; "
        "the guideline is the lowest held-out (validation) NLL, which ranks teachers by their "
        "expected KL to the Bayes class probabilities. ρ: Spearman's rank correlation over "
        "teacher kinds between the measurement (signed so that +1 means the teacher it calls "
        "better always has the more accurate student) and the students' mean test accuracy, "
        f"with a {level} percentile bootstrap interval over seeds ({BOOTSTRAP_RESAMPLES} "
        "resamples of the seeds, the same for every kind). Picks: the kind the measurement "
        "ranks best; picked − best: its student's test accuracy minus the best student's, "
        f"paired over seeds [{level} t interval]; the verdict is `best`, `within` (the "
        "interval includes 0) or `worse`.",
        "",
        *tables,
    ]


def _check_table(checks: Sequence[PredictorCheck]) -> list[str]:
    level = f"{100 * CONFIDENCE:g} %"
    kinds = checks[0].kinds
    lines = [
        f"| teacher measurement | ρ over {len(kinds)} kinds [{level}] | picks | best student | "
        f"picked − best, pp [{level}] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c in checks:
        lines.append(
            f"| {c.predictor.title} | {_rho_text(c)} | `{c.pick}` | `{c.best}` | "
            f"{_difference_text(c.pick_vs_best)} | {c.verdict.value} |"
        )
    return lines


def _rho_text(check: PredictorCheck) -> str:
    c = check.correlation
    if len(check.kinds) < MIN_KINDS:
        return f"— ({len(check.kinds)} kinds)"
    if math.isnan(c.rho):
        return "undefined (constant)"
    text = f"{c.rho:+.2f}"
    if c.interval is not None:
        text += f" [{c.interval[0]:+.2f}, {c.interval[1]:+.2f}]"
    if c.undefined:
        text += f" ({c.undefined} of {c.resamples} resamples undefined)"
    return text


def _difference_text(c: PairedComparison | None) -> str:
    if c is None:
        return "—"
    text = f"{c.mean:+.2f}"
    if c.interval is not None:
        text += f" [{c.interval[0]:+.2f}, {c.interval[1]:+.2f}]"
    return text + ("*" if c.excludes_zero else "")


def guideline_check(checks: Sequence[PredictorCheck]) -> PredictorCheck | None:
    """The guideline's (held-out NLL's) check among ``checks``."""
    return next((c for c in checks if c.predictor is GUIDELINE), None)

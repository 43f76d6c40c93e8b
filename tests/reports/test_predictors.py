"""Did the teacher ranking predict the students? Rank correlations and picks checked against
scipy and against a study folder written by hand (tests/reports/fake_study.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bayesdistill.reports import collect, write_tables
from bayesdistill.reports.advice import Predictor, order_swaps, rank_kinds
from bayesdistill.reports.predictors import (
    Verdict,
    check_predictor,
    predictor_checks,
    rank_correlation,
    spearman_rho,
)
from bayesdistill.reports.stats import t_interval
from tests.reports.fake_study import SEEDS, build_study, student_accuracies

KINDS = ["deterministic", "laplace", "ivon"]
# per seed: ivon has the lowest held-out NLL (its student is the best), laplace the highest
# held-out accuracy (its student is within the interval of the best), deterministic the
# lowest ECE (its student is resolved worse than the best)
VAL_NLL = {"deterministic": 0.40, "laplace": 0.35, "ivon": 0.30}
VAL_ACC = {"deterministic": 0.80, "laplace": 0.82, "ivon": 0.79}
VAL_ECE = {"deterministic": 0.01, "laplace": 0.05, "ivon": 0.03}
TRAIN_NLL = {"deterministic": 0.02, "laplace": 0.20, "ivon": 0.05}
JITTER = [0.0, 0.01, -0.01, 0.02, -0.02]


def _fake_study(tmp_path: Path) -> Path:
    folder = build_study(tmp_path / "study")
    for i, seed in enumerate(SEEDS):
        for kind in KINDS:
            path = folder / f"seed_{seed}" / "teachers" / kind / "summary.json"
            summary = json.loads(path.read_text())
            summary["val"] = {
                "val_nll": VAL_NLL[kind] + JITTER[i] * (1 + KINDS.index(kind)),
                "val_accuracy": VAL_ACC[kind],
                "val_ece": VAL_ECE[kind],
                "val_brier": VAL_NLL[kind] / 2,
            }
            summary["train"] = {"train_nll": TRAIN_NLL[kind]}
            path.write_text(json.dumps(summary))
    return folder


def test_rank_correlation_matches_scipy_resample_by_resample():
    rng = np.random.default_rng(3)
    teacher = rng.normal(size=(5, 6))
    student = teacher + rng.normal(scale=1.0, size=(5, 6))
    result = rank_correlation(teacher, student, np.random.default_rng(11), resamples=400)
    assert result.rho == pytest.approx(
        stats.spearmanr(teacher.mean(0), student.mean(0)).statistic, abs=1e-12
    )
    # the same draws, one scipy call each
    index = np.random.default_rng(11).integers(0, 5, size=(400, 5))
    expected = [stats.spearmanr(teacher[i].mean(0), student[i].mean(0)).statistic for i in index]
    lo, hi = np.quantile(expected, [0.025, 0.975])
    assert result.interval == pytest.approx((lo, hi), abs=1e-12)
    assert result.undefined == 0


def test_rank_correlation_with_ties_and_a_constant_side():
    # ties among kinds are ranked by their average, as scipy does
    teacher = np.array([[1.0, 1.0, 2.0, 3.0], [1.0, 1.0, 2.5, 3.0]])
    student = np.array([[0.1, 0.3, 0.2, 0.4], [0.2, 0.3, 0.1, 0.5]])
    result = rank_correlation(teacher, student, np.random.default_rng(0), resamples=50)
    assert result.rho == pytest.approx(stats.spearmanr(teacher.mean(0), student.mean(0)).statistic)
    constant = rank_correlation(
        np.ones((3, 4)), student[[0, 1, 0]], np.random.default_rng(0), resamples=20
    )
    assert math.isnan(constant.rho)
    assert constant.interval is None and constant.undefined == 20
    assert math.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))


def test_rank_correlation_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(seeds, kinds\) arrays of one shape, got"):
        rank_correlation(np.ones((3, 4)), np.ones((3, 5)), np.random.default_rng(0))


def test_check_predictor_orients_lower_is_better_and_judges_the_pick():
    seeds = [0, 1, 2, 3]
    student = {
        "a": dict(zip(seeds, [0.70, 0.71, 0.69, 0.70], strict=True)),
        "b": dict(zip(seeds, [0.60, 0.61, 0.59, 0.62], strict=True)),
        "c": dict(zip(seeds, [0.50, 0.52, 0.51, 0.49], strict=True)),
    }
    nll = {"a": dict.fromkeys(seeds, 0.2), "b": dict.fromkeys(seeds, 0.3), "c": {}}
    nll["c"] = dict.fromkeys(seeds, 0.4)
    check = check_predictor(Predictor.VAL_NLL, nll, student, np.random.default_rng(0), 100)
    assert check is not None
    assert check.correlation.rho == pytest.approx(1.0)
    assert check.pick == check.best == "a" and check.verdict is Verdict.BEST
    # accuracy is higher-is-better: the same numbers as accuracies pick the worst student
    check = check_predictor(Predictor.VAL_ACCURACY, nll, student, np.random.default_rng(0), 100)
    assert check.correlation.rho == pytest.approx(-1.0)
    assert check.pick == "c" and check.verdict is Verdict.WORSE
    diffs = [100 * (student["c"][s] - student["a"][s]) for s in seeds]
    assert check.pick_vs_best.interval == pytest.approx(t_interval(diffs))


def test_predictor_checks_of_a_study_folder(tmp_path):
    results = collect(_fake_study(tmp_path))
    checks = {c.predictor: c for c in predictor_checks(results, "kd", resamples=500)}
    assert set(checks) == {
        Predictor.VAL_NLL,
        Predictor.VAL_BRIER,
        Predictor.VAL_ACCURACY,
        Predictor.VAL_ECE,
        Predictor.TRAIN_NLL,
    }
    accuracy = student_accuracies()
    means = {k: np.mean(accuracy[k]) for k in KINDS}
    nll = {k: np.mean([VAL_NLL[k] + j * (1 + KINDS.index(k)) for j in JITTER]) for k in KINDS}
    guideline = checks[Predictor.VAL_NLL]
    assert guideline.kinds == KINDS and guideline.seeds == SEEDS
    assert guideline.correlation.rho == pytest.approx(
        stats.spearmanr([-nll[k] for k in KINDS], [means[k] for k in KINDS]).statistic
    )
    assert guideline.pick == guideline.best == "ivon"
    assert guideline.verdict is Verdict.BEST
    assert checks[Predictor.VAL_ACCURACY].pick == "laplace"
    assert checks[Predictor.VAL_ACCURACY].verdict is Verdict.WITHIN
    assert checks[Predictor.VAL_ECE].pick == "deterministic"
    assert checks[Predictor.VAL_ECE].verdict is Verdict.WORSE
    assert checks[Predictor.TRAIN_NLL].pick == "deterministic"


def test_results_md_gains_the_section(tmp_path):
    results = collect(_fake_study(tmp_path))
    _, md = write_tables(results)
    section = md.split("## Did the teacher ranking predict the students?", 1)[1]
    assert "### Student loss `kd`" in section
    guideline_row = next(line for line in section.splitlines() if line.startswith("| held-out NLL"))
    assert "`ivon` | `ivon` | — | best |" in guideline_row
    ece_row = next(line for line in section.splitlines() if line.startswith("| held-out ECE"))
    assert ece_row.endswith("| worse |")


def test_a_study_without_validation_metrics_has_no_section(tmp_path):
    results = collect(build_study(tmp_path / "old"))
    _, md = write_tables(results)
    assert "Did the teacher ranking predict" not in md


def test_rank_kinds_and_ties_with_the_best():
    values = {
        "a": {0: 0.30, 1: 0.31, 2: 0.29},
        "b": {0: 0.30, 1: 0.33, 2: 0.28},  # mean 0.303: not told apart from a
        "c": {0: 0.50, 1: 0.52, 2: 0.51},  # resolved worse
        "d": {0: math.nan},  # no finite value: left out
    }
    ranking = rank_kinds(values, Predictor.VAL_NLL)
    assert ranking.order == ["a", "b", "c"]
    assert ranking.indistinguishable() == ["b"]
    assert rank_kinds(values, Predictor.VAL_ACCURACY).order == ["c", "b", "a"]
    with pytest.raises(ValueError, match="no teacher kind has a finite 'val_nll'"):
        rank_kinds({"d": {0: math.nan}}, Predictor.VAL_NLL)


def test_order_swaps():
    assert order_swaps(["a", "b", "c"], ["a", "b", "c"]) == []
    assert order_swaps(["a", "b", "c"], ["b", "a", "c"]) == [("a", "b")]
    assert order_swaps(["a", "b", "c"], ["c", "b", "a"]) == [("a", "b"), ("a", "c"), ("b", "c")]

"""Experiment 7 (targets on the student's training points): its distances and its run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bayesdistill.theory import load_theory_config, run_theory
from bayesdistill.theory.train_point_targets import SOURCES, distances

TINY = [
    "options.num_samples=400",
    "options.folds=2",
    "options.teacher_epochs=3",
    "options.student_epochs=2",
    "options.kinds=[deterministic, temperature]",
    "seeds=[0, 1]",
]


def test_distances_match_hand_computed_values():
    p_star = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    one_hot = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    d = distances(one_hot, p_star)
    assert d["l2"] == pytest.approx((np.sqrt(0.5) + np.sqrt(0.02)) / 2)
    # KL(p*‖one-hot) with the zero clamped at 1e-12: finite, dominated by log(1e12)
    expected_kl = (0.5 * np.log(0.5) + 0.5 * (np.log(0.5) - np.log(1e-12))) + (
        0.9 * np.log(0.9) + 0.1 * (np.log(0.1) - np.log(1e-12))
    )
    assert d["kl"] == pytest.approx(expected_kl / 2)
    assert distances(p_star, p_star) == {"l2": 0.0, "kl": 0.0}


def test_runs_at_a_tiny_size_and_writes_its_claims(tmp_path):
    config = load_theory_config("train_point_targets", TINY)
    result = run_theory(config, tmp_path, progress=False)
    kinds = ["deterministic", "temperature"]
    # per kind: (a) the in-sample gap, (b) cross-fitting closes it, (d) students; plus (c)
    assert len(result.claims) == 3 * len(kinds) + 1
    assert all(isinstance(c.held, bool) for c in result.claims)
    assert any("Spearman" in c.prediction for c in result.claims)
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert len(claims["claims"]) == len(result.claims)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    configs = {(r["seed"], r["config"]) for r in records}
    assert configs == {
        (s, c) for s in (0, 1) for c in [f"{k}/{src}" for k in kinds for src in SOURCES]
    } | {(s, c) for s in (0, 1) for c in ("onehot", "exact")}
    by = {(r["seed"], r["config"]): r for r in records}
    for s in (0, 1):
        assert by[(s, "exact")]["target_train_l2"] == 0.0
        # cross-fitted and in-sample targets come from different teachers
        assert (
            by[(s, "deterministic/cross_fitted")]["target_train_l2"]
            != by[(s, "deterministic/in_sample")]["target_train_l2"]
        )
        assert by[(s, "deterministic/cross_fitted")]["fold_test_l2"] is not None
    report = (tmp_path / "report.md").read_text()
    assert "| claim | prediction | measured | held |" in report and "cross-fitted" in report
    assert (tmp_path / "figures" / "targets_vs_students.png").stat().st_size > 1000

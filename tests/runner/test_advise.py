"""``advise``: the held-out ranking recovers the exact KL to p* on synthetic data, and a study
on the same folder afterwards trains only the students."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayesdistill.config import load_config
from bayesdistill.layout import RunLayout
from bayesdistill.reports.advice import ADVICE_JSON, ADVICE_MD, Predictor
from bayesdistill.runner.advise import run_advise
from bayesdistill.runner.study import run_study

NOISE_LEVELS = [20.0, 2.0, 0.5]
"""Dirichlet concentrations a, from the least noisy to the most (Var p̃_k = p_k(1−p_k)/(a+1))."""

SYNTHETIC = {
    "data": {
        "name": "synthetic",
        "num_classes": 5,
        "dim": 30,
        "mean_values": [4.0, 5.0, 6.0],
        "variance": 2.5,
        "num_samples": 2000,
        "val_fraction": 0.5,
        "test_fraction": 0.1,
    },
    "teachers": [
        "none",
        "exact_bcp",
        *(
            {"name": "noisy_bcp", "label": f"dirichlet_a{a:g}", "noise": "dirichlet", "level": a}
            for a in NOISE_LEVELS
        ),
    ],
    "student": {
        "model": {"name": "linear"},
        "subset": {"per_class": 10},
        "losses": [{"name": "soft_ce", "label": "bcp_risk"}],
        "train": {"epochs": 2, "batch_size": 16},
    },
    "seeds": [0, 1, 2],
    "device": "cpu",
}

TINY = {
    "data": {"name": "synthetic", "num_samples": 300, "num_classes": 3, "dim": 4},
    "teacher": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 2, "batch_size": 32}},
    "teachers": ["none", "deterministic", "temperature", "exact_bcp"],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 2, "batch_size": 32},
        "losses": [{"name": "kd", "temperature": 2.0}, {"name": "soft_ce"}],
    },
    "seeds": [0, 1],
    "device": "cpu",
}


def test_held_out_nll_ranks_teachers_as_the_exact_kl_to_p_star(tmp_path):
    advice, text = run_advise(load_config(SYNTHETIC), tmp_path / "run", progress=False)
    noisy = [f"dirichlet_a{a:g}" for a in NOISE_LEVELS]
    assert advice.exact is not None
    assert advice.exact.order == ["exact_bcp", *noisy]  # exact first, then by noise
    assert advice.ranking.order == advice.exact.order
    assert advice.recommended == "exact_bcp"
    assert advice.ranking.indistinguishable() == []  # each noisier kind resolved worse
    kl = advice.means[Predictor.EXACT_KL.value]
    assert kl["exact_bcp"] == pytest.approx(0.0, abs=1e-6)
    assert kl[noisy[0]] < kl[noisy[1]] < kl[noisy[2]]
    assert "held-out NLL recovers it exactly" in text
    saved = json.loads((tmp_path / "run" / ADVICE_JSON).read_text())
    assert saved["recommended"] == "exact_bcp"
    assert saved["exact_kl_order"] == saved["order"]
    assert set(saved["per_seed"]["exact_bcp"]) == {"0", "1", "2"}
    assert (tmp_path / "run" / ADVICE_MD).read_text() == text


def _teacher_files(folder: Path) -> dict[str, int]:
    """mtime (ns) of every file of the teacher networks and teacher kinds."""
    out = {}
    for seed in TINY["seeds"]:
        pieces = RunLayout(folder).seed(seed)
        for root in (pieces.network.folder, pieces.teachers):
            for path in root.rglob("*"):
                if path.is_file():
                    out[str(path.relative_to(folder))] = path.stat().st_mtime_ns
    return out


def test_advise_then_study_trains_no_teacher_twice(tmp_path):
    config = load_config(TINY)
    out = tmp_path / "run"
    advice, _ = run_advise(config, out, progress=False)
    assert advice.recommended in {"deterministic", "temperature", "exact_bcp"}
    assert not any(out.glob("seed_*/students"))  # advise trains no student
    before = _teacher_files(out)
    assert any(name.endswith("teacher_network/network.pt") for name in before)
    assert sum(name.endswith("teacher.pt") for name in before) == 2 * 3
    run_study(config, out, resume=True, progress=False)
    assert _teacher_files(out) == before  # nothing written again, nothing added
    for seed in TINY["seeds"]:
        pieces = RunLayout(out).seed(seed)
        for loss in ("kd", "soft_ce"):
            for kind in ("deterministic", "temperature", "exact_bcp"):
                assert pieces.student(loss, kind).summary.is_file()
    results = (out / "results.md").read_text()
    assert "## Did the teacher ranking predict the students?" in results
    assert "### Student loss `soft_ce`" in results

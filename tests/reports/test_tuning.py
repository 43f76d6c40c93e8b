"""Fair tuning per teacher kind: the grid point is chosen on validation data only."""

from __future__ import annotations

import csv
import json
import math

import pytest

from bayesdistill.config import load_config
from bayesdistill.errors import ConfigError
from bayesdistill.io import read_json, write_json
from bayesdistill.reports import write_reports
from bayesdistill.reports.tuning import choose
from bayesdistill.runner import run_study

TUNED = {
    "data": {"name": "synthetic", "num_samples": 300, "num_classes": 3, "dim": 5},
    "teacher": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 2, "batch_size": 32}},
    "teachers": ["none", "deterministic", "temperature"],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 2, "batch_size": 16},
        "subset": {"per_class": 15},
        "losses": [{"name": "kd", "alpha": 0.9, "tune": {"temperature": [1.0, 8.0]}}],
    },
    "seeds": [0, 1],
    "device": "cpu",
}


def test_choose_takes_the_best_mean_over_seeds_ties_to_the_first():
    validation = {"a": {0: 0.70, 1: 0.80}, "b": {0: 0.90, 1: 0.50}, "c": {0: 0.75, 1: 0.75}}
    best, means = choose(validation, "val_accuracy")
    assert best == "a" and means == pytest.approx({"a": 0.75, "b": 0.70, "c": 0.75})
    assert choose({"a": {0: 0.4}, "b": {0: 0.3}}, "val_nll")[0] == "b"
    assert choose({"a": {0: math.nan}, "b": {0: 0.1}}, "val_accuracy")[0] == "b"
    with pytest.raises(ValueError, match="select_by must be one of"):
        choose(validation, "test_accuracy")


@pytest.fixture(scope="module")
def tuned_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned") / "run"
    run_study(load_config(TUNED), out, progress=False)
    return out


def _csv(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _candidate_summary(out, seed, candidate, kind):
    return out / f"seed_{seed}" / "students" / candidate / kind / "summary.json"


def _expected_choice(out, kind):
    means = {}
    for candidate in ("kd@temperature=1", "kd@temperature=8"):
        values = [
            read_json(_candidate_summary(out, s, candidate, kind))["final"]["val_accuracy"]
            for s in (0, 1)
        ]
        means[candidate] = sum(values) / 2
    return max(means, key=lambda c: (means[c], -list(means).index(c)))


def test_each_teacher_kind_gets_its_best_grid_point_by_validation(tuned_study):
    rows = [
        r for r in _csv(tuned_study / "results.csv") if r["role"] == "student" and r["loss"] == "kd"
    ]
    assert sorted({r["teacher_kind"] for r in rows}) == ["deterministic", "temperature"]
    for kind in ("deterministic", "temperature"):
        best = _expected_choice(tuned_study, kind)
        chosen = [r for r in rows if r["teacher_kind"] == kind]
        assert {r["chosen"] for r in chosen} == {best.split("@")[1]}
        for row in chosen:  # the reported test metrics are the chosen students'
            final = read_json(_candidate_summary(tuned_study, int(row["seed"]), best, kind))[
                "final"
            ]
            assert float(row["accuracy"]) == pytest.approx(final["test_accuracy"], abs=1e-6)
    tuning = _csv(tuned_study / "tuning.csv")
    assert len(tuning) == 2 * 2 * 2  # grid points × teacher kinds × seeds
    text = (tuned_study / "results.md").read_text()
    assert "tuned per teacher kind over temperature ∈ {1.0, 8.0}" in text
    assert "Chosen on the validation set (never the test set)" in text


def test_the_choice_never_reads_the_test_split(tuned_study, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(tuned_study, out)
    kind = "deterministic"
    best = _expected_choice(out, kind)
    other = next(c for c in ("kd@temperature=1", "kd@temperature=8") if c != best)
    for seed in (0, 1):  # the other grid point becomes perfect on the test set: no change
        path = _candidate_summary(out, seed, other, kind)
        summary = read_json(path)
        summary["final"].update(test_accuracy=1.0, test_nll=0.0)
        write_json(path, summary)
    write_reports(out)
    chosen = {
        r["chosen"]
        for r in _csv(out / "results.csv")
        if r["teacher_kind"] == kind and r["loss"] == "kd"
    }
    assert chosen == {best.split("@")[1]}
    for seed in (0, 1):  # and on the validation set: now it is chosen
        path = _candidate_summary(out, seed, other, kind)
        summary = read_json(path)
        summary["final"].update(val_accuracy=1.0)
        write_json(path, summary)
    write_reports(out)
    chosen = {
        r["chosen"]
        for r in _csv(out / "results.csv")
        if r["teacher_kind"] == kind and r["loss"] == "kd"
    }
    assert chosen == {other.split("@")[1]}


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        (
            {"name": "kd", "tune": {"temprature": [1, 2]}},
            "has no option 'temprature'.*Did you mean 'temperature'",
        ),
        (
            {"name": "kd", "temperature": 2.0, "tune": {"temperature": [1, 2]}},
            "both set .* and tuned",
        ),
        ({"name": "kd", "tune": {"temperature": []}}, "non-empty list"),
        ({"name": "kd", "tune": {"alpha": [0.5, "high"]}}, "alpha"),
        (
            {"label": "c", "terms": ["kd", "onehot_ce"], "tune": {"alpha": [0.5]}},
            "composite loss cannot be tuned",
        ),
    ],
)
def test_bad_grids_are_refused(loss, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"student": {"losses": [loss]}})


def test_candidates_are_the_grid_in_order():
    loss = load_config(
        {
            "student": {
                "losses": [{"name": "kd", "tune": {"alpha": [0.5, 0.9], "temperature": [1, 4]}}]
            }
        }
    ).student.losses[0]
    assert [c.key for c in loss.candidates()] == [
        "kd@alpha=0.5,temperature=1",
        "kd@alpha=0.5,temperature=4",
        "kd@alpha=0.9,temperature=1",
        "kd@alpha=0.9,temperature=4",
    ]
    assert loss.candidates()[3].options == {"alpha": 0.9, "temperature": 4.0}
    assert json.dumps(loss.candidates()[0].tuned_values) == '{"alpha": 0.5, "temperature": 1.0}'

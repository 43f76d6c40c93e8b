"""Run folders: one layout (`RunLayout`), a record of what made the run (run.json) checked on
resume, nothing left behind by a run that cannot start."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
import yaml

from bayesdistill.config import dump_config, load_config
from bayesdistill.data import DataSplits, gaussian_mixture, make_splits
from bayesdistill.errors import ConfigError, DataError
from bayesdistill.runner import RunKind, RunLayout, run_distill, run_teachers
from bayesdistill.runner.identity import data_fingerprint
from bayesdistill.runner.output import recorded_kind
from bayesdistill.runner.study import config_values

TINY = {
    "data": {"name": "synthetic", "num_samples": 240, "num_classes": 3, "dim": 4},
    "teacher": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1, "batch_size": 32}},
    "teachers": ["none", "deterministic", {"name": "laplace", "grid_points": 2}],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 1, "batch_size": 32},
        "losses": ["kd", {"name": "soft_ce"}],
    },
    "seeds": [0],
    "device": "cpu",
}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teachers") / "run"
    run_teachers(load_config(TINY), out, progress=False)
    return out


@pytest.fixture(scope="module")
def distill_dir(teacher_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "run"
    teacher = RunLayout(teacher_dir).pieces.teacher("laplace").teacher
    run_distill(load_config(TINY), out, teacher=teacher, progress=False)
    return out


def test_the_layout_names_every_file_the_runs_write(teacher_dir, distill_dir):
    layout = RunLayout(teacher_dir)
    for path in (layout.config, layout.identity, layout.environment):
        assert path.is_file(), path
    network = layout.pieces.network
    for path in (network.network, network.summary, network.metrics):
        assert path.is_file(), path
    for label in ("deterministic", "laplace"):
        files = layout.pieces.teacher(label)
        for path in (files.teacher, files.summary, files.train_probs, files.test_probs):
            assert path.is_file(), path
    distilled = RunLayout(distill_dir)
    assert distilled.distill_targets.is_file()
    for loss in ("kd", "soft_ce"):
        student = distilled.distilled_student(loss)
        for path in (student.network, student.summary, student.metrics):
            assert path.is_file(), path
    assert recorded_kind(layout) is RunKind.TEACHER
    assert recorded_kind(distilled) is RunKind.DISTILL


def test_run_json_records_what_made_the_run(teacher_dir, distill_dir):
    record = json.loads(RunLayout(teacher_dir).identity.read_text())
    assert record["command"] == "teacher" and record["seed"] == 0 and record["finished"]
    assert set(record["data"]) >= {"dataset", "n_train", "n_val", "n_test", "labels_sha256"}
    assert record["data"]["dataset"] == "synthetic" and record["data"]["input_shape"] == [4]
    record = json.loads(RunLayout(distill_dir).identity.read_text())
    teacher = RunLayout(teacher_dir).pieces.teacher("laplace").teacher
    assert record["teacher"]["path"] == str(teacher.resolve())
    assert len(record["teacher"]["sha256"]) == 64


def _copy(folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    return copy


def _unfinished(folder) -> None:
    layout = RunLayout(folder)
    record = json.loads(layout.identity.read_text())
    record["finished"] = False
    layout.identity.write_text(json.dumps(record))


def test_resume_refuses_another_seed_config_or_data(teacher_dir, tmp_path):
    copy = _copy(teacher_dir, tmp_path)
    _unfinished(copy)
    config = load_config(TINY)
    with pytest.raises(ConfigError, match=r"another seed \(seed: 0 in the folder, 1 here\)"):
        run_teachers(config, copy, seed=1, resume=True, progress=False)
    other = load_config(TINY, ["teacher.train.lr=0.2"])
    with pytest.raises(ConfigError, match=r"teacher.train.lr: 0.05 in the folder, 0.2 here"):
        run_teachers(other, copy, resume=True, progress=False)
    # the same config text but other data behind it: a file of other contents
    record = json.loads(RunLayout(copy).identity.read_text())
    record["data"]["labels_sha256"] = "0" * 64
    RunLayout(copy).identity.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"another data \(data: labels_sha256: '0000"):
        run_teachers(config, copy, resume=True, progress=False)


def test_resume_refuses_another_kind_of_run(teacher_dir, tmp_path):
    copy = _copy(teacher_dir, tmp_path)
    with pytest.raises(
        ConfigError, match="cannot resume .* with `distill`: it holds a teacher run"
    ):
        run_distill(load_config(TINY), copy, teacher=None, resume=True, progress=False)
    with pytest.raises(ConfigError, match="already holds a teacher run; pass --resume"):
        run_teachers(load_config(TINY), copy, progress=False)


def test_resuming_a_finished_run_rewrites_nothing(teacher_dir, distill_dir, tmp_path, caplog):
    before = {p: p.stat().st_mtime_ns for p in distill_dir.rglob("*") if p.is_file()}
    teacher = RunLayout(teacher_dir).pieces.teacher("laplace").teacher
    with caplog.at_level(logging.INFO, logger="bayesdistill"):
        summaries = run_distill(
            load_config(TINY), distill_dir, teacher=teacher, resume=True, progress=False
        )
    assert "holds finished students of this teacher; nothing to do" in caplog.text
    assert [s["loss_label"] for s in summaries] == ["kd", "soft_ce"]
    assert {p: p.stat().st_mtime_ns for p in distill_dir.rglob("*") if p.is_file()} == before


def test_a_finished_run_missing_an_output_is_resumed(teacher_dir, tmp_path):
    copy = _copy(teacher_dir, tmp_path)
    files = RunLayout(copy).pieces.teacher("laplace")
    files.summary.unlink()
    files.teacher.unlink()
    run_teachers(load_config(TINY), copy, resume=True, progress=False)
    assert files.summary.is_file() and files.teacher.is_file()


def test_a_folder_from_before_run_json_resumes_with_its_config(teacher_dir, tmp_path):
    copy = _copy(teacher_dir, tmp_path)
    RunLayout(copy).identity.unlink()
    RunLayout(copy).environment.unlink()
    assert recorded_kind(RunLayout(copy)) is RunKind.TEACHER  # guessed from its files
    other = load_config(TINY, ["teacher.train.epochs=2"])
    with pytest.raises(ConfigError, match=r"with a different config \(teacher.train.epochs: 1"):
        run_teachers(other, copy, resume=True, progress=False)
    run_teachers(load_config(TINY), copy, resume=True, progress=False)
    assert json.loads(RunLayout(copy).identity.read_text())["finished"] is True


def test_a_run_that_cannot_start_leaves_nothing(teacher_dir, tmp_path):
    out = tmp_path / "nested" / "run"
    wide = load_config({**TINY, "data": {**TINY["data"], "dim": 6}})
    teacher = RunLayout(teacher_dir).pieces.teacher("deterministic").teacher
    with pytest.raises(DataError, match=r"takes inputs of shape \[4\].*have shape \[6\]"):
        run_distill(wide, out, teacher=teacher, progress=False)
    more = load_config({**TINY, "data": {**TINY["data"], "num_classes": 4}})
    with pytest.raises(DataError, match="predicts 3 classes but the training data has 4"):
        run_distill(more, out, teacher=teacher, progress=False)
    with pytest.raises(ConfigError, match="CUDA is not available|does not exist"):
        if torch.cuda.is_available():
            run_teachers(load_config(TINY, ["device=cuda:99"]), out, progress=False)
        else:
            run_teachers(load_config(TINY, ["device=cuda"]), out, progress=False)
    assert not (tmp_path / "nested").exists()


def test_data_fingerprint_tells_data_apart_but_not_last_bits():
    raw = gaussian_mixture(num_classes=3, dim=4, num_samples=120, seed=1)
    splits = make_splits(raw, val_fraction=0.2, test_fraction=0.2, seed=0)
    base = data_fingerprint(splits)
    nudged = splits.train.x.clone()
    nudged += 1e-9
    same = DataSplits(
        splits.name, _with_x(splits.train, nudged), splits.val, splits.test, splits.standardizer
    )
    assert data_fingerprint(same) == base
    moved = splits.train.x.clone()
    moved[0, 0] += 1.0
    other = DataSplits(
        splits.name, _with_x(splits.train, moved), splits.val, splits.test, splits.standardizer
    )
    assert data_fingerprint(other)["inputs_sha256"] != base["inputs_sha256"]
    resplit = make_splits(raw, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert data_fingerprint(resplit)["labels_sha256"] != base["labels_sha256"]


def _with_x(data, x):
    from dataclasses import replace

    return replace(data, x=x)


def test_saved_config_of_a_run_reloads_to_the_same_config(teacher_dir):
    saved = RunLayout(teacher_dir).config.read_text()
    assert dump_config(load_config(yaml.safe_load(saved))) == saved


def test_a_folder_with_only_a_config_from_before_run_json(tmp_path):
    """A run of an older version killed before its first piece: any command may resume it."""
    out = tmp_path / "run"
    out.mkdir()
    RunLayout(out).config.write_text(dump_config(load_config(TINY)))
    assert recorded_kind(RunLayout(out)) is None
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        run_teachers(load_config(TINY), out, progress=False)
    run_teachers(load_config(TINY), out, resume=True, progress=False)
    assert recorded_kind(RunLayout(out)) is RunKind.TEACHER


def test_an_option_added_later_keeps_older_folders_resumable(teacher_dir, tmp_path):
    """runtime.samples_per_pass came after runs were recorded: at its default (what runs did
    before) it is not part of a run's identity; another value is refused by name."""
    assert "samples_per_pass" not in config_values(load_config(TINY))["runtime"]
    vectorised = load_config(TINY, ["runtime.samples_per_pass=4"])
    assert config_values(vectorised)["runtime"]["samples_per_pass"] == 4
    copy = _copy(teacher_dir, tmp_path)
    _unfinished(copy)
    layout = RunLayout(copy)
    saved = yaml.safe_load(layout.config.read_text())
    del saved["runtime"]["samples_per_pass"]  # a folder from before the option
    layout.config.write_text(yaml.safe_dump(saved, sort_keys=False))
    with pytest.raises(ConfigError, match=r"runtime.samples_per_pass: 1 in the folder, 4 here"):
        run_teachers(vectorised, copy, resume=True, progress=False)
    run_teachers(load_config(TINY), copy, resume=True, progress=False)
    assert json.loads(layout.identity.read_text())["finished"] is True


def test_a_run_with_a_later_option_set_refuses_its_default_by_name(tmp_path):
    out = tmp_path / "run"
    run_teachers(load_config(TINY, ["runtime.samples_per_pass=4"]), out, progress=False)
    _unfinished(out)
    with pytest.raises(ConfigError, match=r"runtime.samples_per_pass: 4 in the folder, 1 here"):
        run_teachers(load_config(TINY), out, resume=True, progress=False)
    run_teachers(
        load_config(TINY, ["runtime.samples_per_pass=4"]), out, resume=True, progress=False
    )

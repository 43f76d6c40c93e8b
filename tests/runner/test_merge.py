"""Merging decides what makes two studies the same as a run's identity does
(`run_config`): logging never counts, an option added later counts with its old value when
a folder recorded before it leaves it out, and the order of the folders does not matter."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from bayesdistill.config import load_config
from bayesdistill.errors import ConfigError
from bayesdistill.runner import run_study
from bayesdistill.runner.executors import LocalExecutor
from bayesdistill.runner.graph import Placement
from bayesdistill.runner.merge import merge_studies

TINY = {
    "data": {"name": "synthetic", "num_samples": 200, "num_classes": 3, "dim": 4},
    "teacher": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1, "batch_size": 32}},
    "teachers": ["none", "deterministic"],
    "student": {
        "model": {"name": "linear"},
        "train": {"epochs": 1, "batch_size": 32},
        "losses": ["soft_ce"],
    },
    "device": "cpu",
}


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[int, Path]:
    """One finished study per seed (0 and 1), to copy and edit."""
    root = tmp_path_factory.mktemp("studies")
    threads = torch.get_num_threads()
    try:
        for seed in (0, 1):
            run_study(
                load_config({**TINY, "seeds": [seed]}),
                root / str(seed),
                progress=False,
                executor=LocalExecutor(Placement(threads=1)),
            )
    finally:
        torch.set_num_threads(threads)
    return {seed: root / str(seed) for seed in (0, 1)}


def _copy(studies: dict[int, Path], seed: int, to: Path, edit=None) -> Path:
    """A copy of seed ``seed``'s study whose config.yaml ``edit`` changed in place."""
    folder = shutil.copytree(studies[seed], to / f"seed_{seed}_copy")
    if edit is not None:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        edit(config)
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "results.csv", encoding="utf-8") as handle:
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]
    return sorted(rows, key=lambda r: sorted(r.items()))


def _without_samples_per_pass(config: dict) -> None:
    """What a folder recorded before ``runtime.samples_per_pass`` existed holds."""
    del config["runtime"]["samples_per_pass"]


def test_studies_that_differ_only_in_logging_merge(studies, tmp_path):
    def tensorboard(config: dict) -> None:
        config["log"] = {"tensorboard": True}

    plain = merge_studies([studies[0], studies[1]], tmp_path / "plain")
    logged = _copy(studies, 1, tmp_path, tensorboard)
    for order, out in (([studies[0], logged], "m01"), ([logged, studies[0]], "m10")):
        assert _rows(merge_studies(order, tmp_path / out)) == _rows(plain)


def test_an_old_folder_merges_with_a_new_one_in_either_order(studies, tmp_path):
    old = _copy(studies, 0, tmp_path, _without_samples_per_pass)
    assert "samples_per_pass" in yaml.safe_load((studies[1] / "config.yaml").read_text())["runtime"]
    old_first = merge_studies([old, studies[1]], tmp_path / "old_first")
    new_first = merge_studies([studies[1], old], tmp_path / "new_first")
    assert _rows(old_first) == _rows(new_first)
    assert len(_rows(old_first)) == len(_rows(studies[0])) + len(_rows(studies[1]))


def test_a_later_option_away_from_its_old_value_is_refused_in_either_order(studies, tmp_path):
    def vectorised(config: dict) -> None:
        config["runtime"]["samples_per_pass"] = 4

    old = _copy(studies, 0, tmp_path, _without_samples_per_pass)
    new = _copy(studies, 1, tmp_path, vectorised)
    for order, out in (([old, new], "m01"), ([new, old], "m10")):
        with pytest.raises(ConfigError, match=r"runtime\.samples_per_pass: (1 in .*4|4 in .*1) in"):
            merge_studies(order, tmp_path / out)
        assert not (tmp_path / out).exists()

"""``teacher.checkpoint``: a study uses a trained network from a file instead of training one."""

from __future__ import annotations

import json

import pytest
import torch

from bayesdistill.config import load_config
from bayesdistill.errors import BayesDistillError
from bayesdistill.io import read_json
from bayesdistill.models import create_model
from bayesdistill.runner import run_study
from bayesdistill.runner.common import load_network
from bayesdistill.runner.identity import file_sha256

INPUT_SHAPE, NUM_CLASSES = (5,), 3
TINY = {
    "data": {"name": "synthetic", "num_samples": 300, "num_classes": NUM_CLASSES, "dim": 5},
    "teacher": {"model": {"name": "mlp", "hidden": [16]}, "train": {"epochs": 1}},
    "teachers": ["none", "deterministic", {"name": "laplace", "grid_points": 3}],
    "student": {"model": {"name": "linear"}, "train": {"epochs": 1, "batch_size": 32}},
    "seeds": [0, 1],
    "device": "cpu",
}


def _trained_elsewhere(path, **options):
    torch.manual_seed(7)
    network = create_model("mlp", INPUT_SHAPE, NUM_CLASSES, **options)
    state = {f"module.{k}": v for k, v in network.state_dict().items()}  # saved from DataParallel
    torch.save({"model": state, "epoch": 240}, path)
    return network


def test_every_seed_uses_the_file_and_records_it(tmp_path):
    source = _trained_elsewhere(tmp_path / "teacher.pth", hidden=[16])
    config = load_config(
        {**TINY, "teacher": {**TINY["teacher"], "checkpoint": str(tmp_path / "teacher.pth")}}
    )
    out = run_study(config, tmp_path / "run", progress=False)
    for seed in (0, 1):
        folder = out / f"seed_{seed}" / "teacher_network"
        summary = read_json(folder / "summary.json")
        assert summary["checkpoint"] == str((tmp_path / "teacher.pth").resolve())
        assert summary["sha256"] == file_sha256(tmp_path / "teacher.pth")
        assert 0.0 <= summary["final"]["test_accuracy"] <= 1.0
        assert not (folder / "metrics.jsonl").exists()  # nothing was trained
        network = load_network(folder / "network.pt")
        for key, value in source.state_dict().items():
            assert torch.equal(network.state_dict()[key], value), key


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
    _trained_elsewhere(tmp_path / "wide.pth", hidden=[32])
    config = load_config(
        {**TINY, "teacher": {**TINY["teacher"], "checkpoint": str(tmp_path / "wide.pth")}}
    )
    # a CheckpointError, or the study's report of the units it failed, quoting it
    with pytest.raises(BayesDistillError, match=r"'body\.1\.weight' is \(32, 5\) in the file"):
        run_study(config, tmp_path / "run", progress=False)


def test_resuming_with_another_file_under_the_same_name_is_refused(tmp_path):
    """run.json records the checkpoint's SHA-256: the path alone would let a resumed study
    mix students of two different teachers."""
    path = tmp_path / "teacher.pth"
    _trained_elsewhere(path, hidden=[16])
    config = load_config({**TINY, "teacher": {**TINY["teacher"], "checkpoint": str(path)}})
    out = run_study(config, tmp_path / "run", progress=False)
    record = read_json(out / "run.json")
    assert record["teacher"] == {"path": str(path.resolve()), "sha256": file_sha256(path)}
    before = file_sha256(path)
    record["finished"] = False  # as if killed
    (out / "run.json").write_text(json.dumps(record))

    torch.manual_seed(8)  # other weights, same name and architecture
    network = create_model("mlp", INPUT_SHAPE, NUM_CLASSES, hidden=[16])
    torch.save({"model": network.state_dict()}, path)
    after = file_sha256(path)
    with pytest.raises(BayesDistillError, match=rf"teacher.*sha256 {before[:12]}.*{after[:12]}"):
        run_study(config, out, resume=True, progress=False)

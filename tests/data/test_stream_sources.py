"""Streamed datasets from a config: image folders and on-disk arrays, split and standardised
in one pass, and a study on them equal to the same study on the same data in memory."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from bayesdistill.config import load_config
from bayesdistill.data import (
    DATASETS,
    Standardization,
    Standardizer,
    StreamData,
    make_splits,
    save_npz,
)
from bayesdistill.data.memmap import save_arrays
from bayesdistill.errors import DataFileNotFoundError
from bayesdistill.runner import run_study


def _arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 2, 4, 4)).astype(np.float32) + y[:, None, None, None]
    x[:, 1] *= 3.0  # channels on other scales
    return x.astype(np.float32), y


@pytest.mark.parametrize("mode", ["feature", "global", "channel", "none"])
def test_stream_standardisation_equals_the_in_memory_fit(tmp_path, mode):
    x, y = _arrays(90, 0)
    save_arrays(tmp_path / "train", x, y)
    raw = DATASETS.build("arrays_on_disk", root=str(tmp_path))
    splits = make_splits(raw, val_fraction=0.2, test_fraction=0.2, seed=3, standardize=mode)
    assert isinstance(splits.train, StreamData)
    in_memory = torch.from_numpy(x)[splits.train.dataset.indices]
    expected = Standardizer.fit(in_memory, Standardization(mode))
    torch.testing.assert_close(splits.standardizer.loc, expected.loc, rtol=0, atol=1e-5)
    torch.testing.assert_close(splits.standardizer.scale, expected.scale, rtol=1e-5, atol=1e-6)


def test_stream_splits_are_the_in_memory_splits(tmp_path):
    x, y = _arrays(90, 1)
    save_arrays(tmp_path / "train", x, y)
    save_npz(tmp_path / "d.npz", x=x, y=y)
    streamed = make_splits(
        DATASETS.build("arrays_on_disk", root=str(tmp_path)), seed=5, standardize="channel"
    )
    memory = make_splits(
        DATASETS.build("npz", path=str(tmp_path / "d.npz")), seed=5, standardize="channel"
    )
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(streamed, part).y, getattr(memory, part).y)


def test_a_study_on_streamed_data_gives_the_in_memory_results(tmp_path):
    x, y = _arrays(150, 2)
    x_test, y_test = _arrays(60, 3)
    save_arrays(tmp_path / "disk" / "train", x, y)
    save_arrays(tmp_path / "disk" / "test", x_test, y_test)
    save_npz(tmp_path / "d.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    common = {
        "teacher": {
            "model": {"name": "mlp", "hidden": [8]},
            "train": {"epochs": 2, "batch_size": 16},
        },
        "teachers": ["none", "deterministic", "temperature", {"name": "laplace", "grid_points": 3}],
        "student": {"model": {"name": "linear"}, "train": {"epochs": 2, "batch_size": 16}},
        "seeds": [0],
        "device": "cpu",
    }
    on_disk = {
        **common,
        "data": {
            "name": "arrays_on_disk",
            "root": str(tmp_path / "disk"),
            "standardize": "channel",
        },
    }
    in_memory = {
        **common,
        "data": {"name": "npz", "path": str(tmp_path / "d.npz"), "standardize": "channel"},
    }
    run_study(load_config(on_disk), tmp_path / "a", progress=False)
    run_study(load_config(in_memory), tmp_path / "b", progress=False)

    def rows(folder):
        with open(tmp_path / folder / "results.csv", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    a, b = rows("a"), rows("b")
    assert [(r["role"], r["teacher_kind"]) for r in a] == [
        (r["role"], r["teacher_kind"]) for r in b
    ]
    for row_a, row_b in zip(a, b, strict=True):
        assert float(row_a["nll"]) == pytest.approx(float(row_b["nll"]), abs=1e-4), row_a
        assert row_a["accuracy"] == row_b["accuracy"]


def _write_images(root, colours: dict[str, tuple[int, int, int]], count: int) -> None:
    for name, colour in colours.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = np.full((6, 6, 3), colour, dtype=np.uint8)
            pixels[i % 6, :, :] = 255 - np.array(colour, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_folder_reads_classes_from_folder_names(tmp_path):
    colours = {"cat": (200, 10, 10), "dog": (10, 200, 10), "owl": (10, 10, 200)}
    _write_images(tmp_path / "train", colours, 5)
    _write_images(tmp_path / "test", colours, 2)
    raw = DATASETS.build("image_folder", root=str(tmp_path), size=4)
    assert raw.train.num_classes == 3 and raw.train.input_shape == (3, 4, 4)
    assert raw.train.y.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    x, label = raw.train.dataset[5]
    assert label == 1 and x.shape == (3, 4, 4)
    assert float(x[1].max()) > float(x[0].max())  # the dog images are green
    assert len(raw.test) == 6


def test_a_study_runs_on_an_image_folder(tmp_path):
    colours = {"red": (220, 20, 20), "green": (20, 220, 20)}
    _write_images(tmp_path / "img" / "train", colours, 12)
    _write_images(tmp_path / "img" / "test", colours, 4)
    config = {
        "data": {
            "name": "image_folder",
            "root": str(tmp_path / "img"),
            "size": 8,
            "val_fraction": 0.25,
        },
        "teacher": {"model": {"name": "resnet8"}, "train": {"epochs": 2, "batch_size": 6}},
        "teachers": ["none", "deterministic"],
        "student": {
            "model": {"name": "linear"},
            "train": {"epochs": 3, "batch_size": 6, "lr": 0.1},
        },
        "seeds": [0],
        "device": "cpu",
        "runtime": {"num_workers": 1},
    }
    run_study(load_config(config), tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "results.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    student = next(r for r in rows if r["role"] == "student" and r["teacher_kind"] == "none")
    assert float(student["accuracy"]) == 1.0  # two solid colours: trivially separable


def test_a_missing_image_folder_names_the_expected_layout(tmp_path):
    with pytest.raises(DataFileNotFoundError, match=r"no training folder .*<class name>"):
        DATASETS.build("image_folder", root=str(tmp_path / "nothing"))

"""CIFAR-10/100 and SVHN from tiny files written here in the official formats.

torchvision checks each file against the MD5 of the official release before reading it,
also when nothing is downloaded. Hand-written files cannot match, so the tests that read
them replace torchvision's table of checksums (with ``monkeypatch``, for that test only) by
the checksums of the files they wrote; the library keeps the real check for users, and
`test_files_that_fail_the_official_checksum_are_not_read` shows it in force.
"""

from __future__ import annotations

import hashlib
import pickle
import urllib.error
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from torchvision.datasets import CIFAR10, CIFAR100, SVHN

from bayesdistill.data import (
    DATASETS,
    cifar10,
    cifar100,
    gaussian_mixture,
    make_splits,
    per_class_subset,
    svhn,
)
from bayesdistill.data.vision import CIFAR10_MEAN, CIFAR10_STD, SVHN_MEAN, SVHN_STD
from bayesdistill.errors import ConfigError, DataError, DataFileNotFoundError

PIXELS = 3 * 32 * 32
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer"]
CIFAR10_NAMES += ["dog", "frog", "horse", "ship", "truck"]


# ---- writing the official formats ------------------------------------------------------


class Py2Str(bytes):
    """A Python 2 ``str``. The official CIFAR pickles were written by Python 2, so their
    keys are byte strings: ``pickle.load(f, encoding="bytes")`` gives ``b"data"`` (the
    recipe on the CIFAR page) and ``encoding="latin1"`` (torchvision) gives ``"data"``."""


class Py2Pickler(pickle._Pickler):
    """Pickles `Py2Str` with the SHORT_BINSTRING opcode Python 2 used for ``str``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: Py2Str) -> None:
        self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + bytes(obj))
        self.memoize(obj)

    dispatch[Py2Str] = save_py2_str


def dump_py2(path: Path, payload: dict) -> None:
    with path.open("wb") as handle:
        Py2Pickler(handle, protocol=2).dump(payload)


def cifar_batch(rng: np.random.Generator, n: int, label_keys: dict[str, int]) -> dict:
    data = rng.integers(0, 256, (n, PIXELS), dtype=np.uint8)
    batch = {Py2Str(b"batch_label"): Py2Str(b"tiny batch"), Py2Str(b"data"): data}
    for key, num_classes in label_keys.items():
        batch[Py2Str(key.encode())] = rng.integers(0, num_classes, n).tolist()
    batch[Py2Str(b"filenames")] = [Py2Str(f"img_{i}.png".encode()) for i in range(n)]
    return batch


def write_cifar10(root: Path, per_batch: int = 2, n_test: int = 3) -> dict[str, dict]:
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        batches[name] = cifar_batch(rng, n, {"labels": 10})
        dump_py2(base / name, batches[name])
    meta = {
        Py2Str(b"num_cases_per_batch"): per_batch,
        Py2Str(b"label_names"): [Py2Str(name.encode()) for name in CIFAR10_NAMES],
        Py2Str(b"num_vis"): PIXELS,
    }
    dump_py2(base / "batches.meta", meta)
    return batches


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 4) -> dict[str, dict]:
    """``root/cifar-100-python/{train, test, meta}`` with fine and coarse labels."""
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    files = {}
    for name, n in (("train", n_train), ("test", n_test)):
        files[name] = cifar_batch(rng, n, {"fine_labels": 100, "coarse_labels": 20})
        dump_py2(base / name, files[name])
    meta = {
        Py2Str(b"fine_label_names"): [Py2Str(f"fine{i}".encode()) for i in range(100)],
        Py2Str(b"coarse_label_names"): [Py2Str(f"coarse{i}".encode()) for i in range(20)],
    }
    dump_py2(base / "meta", meta)
    return files


def write_svhn(root: Path, sizes: dict[str, int]) -> dict[str, dict[str, np.ndarray]]:
    """``root/<split>_32x32.mat`` with X ``(32, 32, 3, N)`` uint8 and y ``(N, 1)`` in 1..10."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    files = {}
    for split, n in sizes.items():
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
        y[0, 0] = 10  # the digit 0
        files[split] = {"X": x, "y": y}
        scipy.io.savemat(root / f"{split}_32x32.mat", files[split])
    return files


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def trust_cifar_files(monkeypatch, cls, root: Path) -> None:
    """Make torchvision's checksum table hold the MD5s of the files written under root."""
    base = root / cls.base_folder
    for attr in ("train_list", "test_list"):
        table = [[name, md5(base / name)] for name, _ in getattr(cls, attr)]
        monkeypatch.setattr(cls, attr, table)
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(base / cls.meta["filename"])})


def trust_svhn_files(monkeypatch, root: Path) -> None:
    table = {
        split: [url, name, md5(root / name) if (root / name).is_file() else checksum]
        for split, (url, name, checksum) in SVHN.split_list.items()
    }
    monkeypatch.setattr(SVHN, "split_list", table)


def cifar_images(batches: list[dict]) -> np.ndarray:
    """Reference decoding of the CIFAR rows: 1024 red, 1024 green, 1024 blue, row-major."""
    return np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)


# ---- CIFAR-10 / CIFAR-100 ---------------------------------------------------------------


def test_written_pickles_have_the_official_byte_string_keys(tmp_path):
    write_cifar10(tmp_path)
    with (tmp_path / "cifar-10-batches-py" / "data_batch_1").open("rb") as handle:
        entry = pickle.load(handle, encoding="bytes")
    assert set(entry) == {b"batch_label", b"data", b"labels", b"filenames"}
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (2, PIXELS)


def test_cifar10_returns_the_pixels_and_labels_written(tmp_path, monkeypatch):
    batches = write_cifar10(tmp_path)
    # one known pixel: image 1 of data_batch_3 (= training image 5), blue, row 5, column 17
    batches["data_batch_3"][b"data"][1, 2 * 1024 + 5 * 32 + 17] = 200
    batches["data_batch_3"][b"data"][1, 2 * 1024 + 17 * 32 + 5] = 10
    dump_py2(tmp_path / "cifar-10-batches-py" / "data_batch_3", batches["data_batch_3"])
    trust_cifar_files(monkeypatch, CIFAR10, tmp_path)

    raw = cifar10(root=str(tmp_path))

    assert raw.name == "cifar10" and raw.num_classes == 10
    assert raw.x.shape == (10, 3, 32, 32) and raw.x.dtype == torch.float32
    assert raw.x_test.shape == (3, 3, 32, 32)
    assert raw.x[5, 2, 5, 17].item() == pytest.approx(200 / 255, abs=1e-7)
    assert raw.x[5, 2, 17, 5].item() == pytest.approx(10 / 255, abs=1e-7)  # not transposed
    train_batches = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    expected = torch.from_numpy(cifar_images(train_batches).astype(np.float64) / 255)
    torch.testing.assert_close(raw.x.double(), expected, rtol=0, atol=1e-7)
    labels = [label for batch in train_batches for label in batch[b"labels"]]
    assert raw.y.tolist() == labels
    assert raw.y_test.tolist() == batches["test_batch"][b"labels"]
    test_pixels = torch.from_numpy(cifar_images([batches["test_batch"]]).astype(np.float64) / 255)
    torch.testing.assert_close(raw.x_test.double(), test_pixels, rtol=0, atol=1e-7)
    assert float(raw.x.min()) >= 0.0 and float(raw.x.max()) <= 1.0


def test_cifar100_uses_the_fine_labels(tmp_path, monkeypatch):
    files = write_cifar100(tmp_path)
    trust_cifar_files(monkeypatch, CIFAR100, tmp_path)
    raw = cifar100(root=str(tmp_path))
    assert raw.name == "cifar100" and raw.num_classes == 100
    assert raw.y.tolist() == files["train"][b"fine_labels"]
    assert raw.y.tolist() != files["train"][b"coarse_labels"]
    assert raw.y_test.tolist() == files["test"][b"fine_labels"]
    expected = torch.from_numpy(cifar_images([files["train"]]).astype(np.float64) / 255)
    torch.testing.assert_close(raw.x.double(), expected, rtol=0, atol=1e-7)


def test_num_train_and_num_test_keep_the_first_images(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    trust_cifar_files(monkeypatch, CIFAR10, tmp_path)
    full = cifar10(root=str(tmp_path))
    small = cifar10(root=str(tmp_path), num_train=3, num_test=1)
    assert torch.equal(small.x, full.x[:3]) and torch.equal(small.y, full.y[:3])
    assert torch.equal(small.x_test, full.x_test[:1])
    with pytest.raises(ConfigError, match="num_train=11 exceeds the 10 training images"):
        cifar10(root=str(tmp_path), num_train=11)
    with pytest.raises(ConfigError, match="num_test must be >= 1"):
        cifar10(root=str(tmp_path), num_test=0)


def test_dataset_standardisation_applies_the_published_constants(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    trust_cifar_files(monkeypatch, CIFAR10, tmp_path)
    raw = DATASETS.build("cifar10", root=str(tmp_path))
    splits = make_splits(raw, val_fraction=0.2, seed=0, standardize="dataset")
    assert len(splits.train) == 8 and len(splits.val) == 2 and len(splits.test) == 3
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(splits.test.x, (raw.x_test - mean) / std)
    # red channel of one pixel, by hand
    by_hand = (raw.x_test[0, 0, 3, 4].item() - 0.4914) / 0.2470
    assert splits.test.x[0, 0, 3, 4].item() == pytest.approx(by_hand, abs=1e-5)
    torch.testing.assert_close(splits.standardizer.inverse(splits.test.x), raw.x_test)


def test_channel_standardisation_fits_one_mean_and_std_per_channel(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    trust_cifar_files(monkeypatch, CIFAR10, tmp_path)
    raw = cifar10(root=str(tmp_path))
    splits = make_splits(raw, val_fraction=0.2, seed=0, standardize="channel")
    per_channel = splits.train.x.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(3), atol=1e-5, rtol=0)
    assert splits.standardizer.loc.shape == (3, 32, 32)
    assert torch.all(splits.standardizer.loc[1] == splits.standardizer.loc[1, 0, 0])


def test_dataset_standardisation_needs_published_constants():
    raw = gaussian_mixture(num_classes=3, dim=2, num_samples=60, seed=0)
    with pytest.raises(ConfigError, match="publishes no normalisation constants.*'channel'"):
        make_splits(raw, standardize="dataset")


# ---- SVHN ----------------------------------------------------------------------------------


def test_svhn_maps_label_10_to_digit_0_and_keeps_pixel_positions(tmp_path, monkeypatch):
    files = write_svhn(tmp_path, {"train": 7, "test": 5})
    files["train"]["X"][3, 20, 1, 4] = 250  # row 3, column 20, green, image 4
    files["train"]["X"][20, 3, 1, 4] = 9
    scipy.io.savemat(tmp_path / "train_32x32.mat", files["train"])
    trust_svhn_files(monkeypatch, tmp_path)

    raw = svhn(root=str(tmp_path))

    assert raw.name == "svhn" and raw.num_classes == 10
    assert raw.x.shape == (7, 3, 32, 32) and raw.x_test.shape == (5, 3, 32, 32)
    assert raw.x[4, 1, 3, 20].item() == pytest.approx(250 / 255, abs=1e-7)
    assert raw.x[4, 1, 20, 3].item() == pytest.approx(9 / 255, abs=1e-7)
    expected = files["train"]["X"].transpose(3, 2, 0, 1).astype(np.float64) / 255
    torch.testing.assert_close(raw.x.double(), torch.from_numpy(expected), rtol=0, atol=1e-7)
    written = files["train"]["y"][:, 0].astype(np.int64)
    assert raw.y[0].item() == 0
    assert raw.y.tolist() == np.where(written == 10, 0, written).tolist()
    assert set(raw.y_test.tolist()) <= set(range(10))
    mean = torch.tensor(SVHN_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SVHN_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(raw.normalization(raw.x), (raw.x - mean) / std)


def test_svhn_extra_is_appended_to_the_training_pool(tmp_path, monkeypatch):
    files = write_svhn(tmp_path, {"train": 4, "test": 3, "extra": 5})
    trust_svhn_files(monkeypatch, tmp_path)
    raw = svhn(root=str(tmp_path), extra=True)
    assert len(raw.y) == 9 and len(raw.y_test) == 3
    extra_pixels = files["extra"]["X"].transpose(3, 2, 0, 1).astype(np.float64) / 255
    torch.testing.assert_close(
        raw.x[4:].double(), torch.from_numpy(extra_pixels), rtol=0, atol=1e-7
    )
    assert len(svhn(root=str(tmp_path), extra=True, num_train=6).y) == 6


# ---- errors ----------------------------------------------------------------------------------


def test_missing_cifar_files_name_root_files_and_how_to_get_them(tmp_path):
    with pytest.raises(DataFileNotFoundError) as info:
        cifar10(root=str(tmp_path))
    message = str(info.value)
    assert f"root '{tmp_path}'" in message
    assert "cifar-10-batches-py/data_batch_1" in message and "batches.meta" in message
    assert "download: true" in message and "cifar-10-python.tar.gz" in message


def test_missing_svhn_file_is_named_alone(tmp_path):
    write_svhn(tmp_path, {"train": 2})
    with pytest.raises(DataFileNotFoundError, match=r"1 dataset file\(s\).*: test_32x32.mat;"):
        svhn(root=str(tmp_path))
    with pytest.raises(DataFileNotFoundError, match="extra_32x32.mat, test_32x32.mat"):
        svhn(root=str(tmp_path), extra=True)


def test_files_that_fail_the_official_checksum_are_not_read(tmp_path):
    write_cifar100(tmp_path)  # the real checksum table: hand-written files do not match
    with pytest.raises(
        DataError,
        match=r"MD5 checksums of the official release.*not read: .*cifar-100-python/train",
    ):
        cifar100(root=str(tmp_path))


def test_a_failed_download_says_so(tmp_path, monkeypatch):
    def offline(self):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(CIFAR10, "download", offline)
    with pytest.raises(DataFileNotFoundError, match="downloading into .* failed .*no network"):
        cifar10(root=str(tmp_path), download=True)


def test_root_is_a_required_option():
    with pytest.raises(ConfigError, match="option 'root' is required"):
        DATASETS.build("svhn")


# ---- few-shot subsets ------------------------------------------------------------------------

FEW_SHOT_FRACTIONS = (0.05, 0.10, 0.15, 0.25, 0.35, 0.50)


def exact_round(fraction: float, n: int) -> int:
    """round(fraction · n) on the decimal as written, ties to even (independent reference)."""
    return int((Decimal(str(fraction)) * n).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@pytest.mark.parametrize("fraction", FEW_SHOT_FRACTIONS)
def test_few_shot_fractions_keep_round_fraction_times_class_size(fraction):
    # CIFAR-10-like class sizes after a 10 % validation split, with halves (4490 · 5 %
    # = 224.5) and sizes where the float product misrounds (0.35 · 90 = 31.4999…)
    sizes = [4490, 4510, 4497, 4503, 4500, 4499, 4501, 4505, 4495, 90]
    labels = torch.repeat_interleave(torch.arange(10), torch.tensor(sizes))
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    idx = per_class_subset(labels, fraction=fraction, seed=0)
    counts = torch.bincount(labels[idx], minlength=10).tolist()
    assert counts == [exact_round(fraction, n) for n in sizes]
    assert len(set(idx.tolist())) == len(idx)
    assert torch.equal(idx, per_class_subset(labels, fraction=fraction, seed=0))


def test_few_shot_rounding_examples():
    labels = torch.repeat_interleave(torch.arange(3), torch.tensor([90, 4490, 7]))
    counts = lambda f: torch.bincount(labels[per_class_subset(labels, fraction=f)]).tolist()  # noqa: E731
    assert counts(0.35) == [32, 1572, 2]  # 31.5 → 32, 1571.5 → 1572, 2.45 → 2
    assert counts(0.05) == [4, 224, 1]  # 4.5 → 4, 224.5 → 224, 0.35 → at least 1

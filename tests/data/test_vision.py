"""CIFAR-10/100 and SVHN from tiny files written here in the official formats.

torchvision checks each file against the MD5 of the official release before reading it,
also when nothing is downloaded. Hand-written files cannot match, so the tests that read
them replace torchvision's table of checksums (with ``monkeypatch``, for that test only) by
the checksums of the files they wrote; the library keeps the real check for users, and
`test_files_that_fail_the_official_checksum_are_not_read` shows it in force.
"""

from __future__ import annotations

import pickle
import urllib.error
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import pytest
import scipy.io
import torch
from torchvision.datasets import CIFAR10, CIFAR100

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
from tests.vision_files import (
    PIXELS,
    dump_py2,
    trust_cifar_files,
    trust_svhn_files,
    write_cifar10,
    write_cifar100,
    write_svhn,
)


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

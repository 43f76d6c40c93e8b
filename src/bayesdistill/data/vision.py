"""CIFAR-10, CIFAR-100 and SVHN, read through torchvision from a local folder.

Each factory returns the official training set as the training pool (`make_splits` carves
the validation set from it) and the official test set as the test set. Images are float32
``(N, 3, 32, 32)`` in [0, 1] (uint8 / 255), channels in RGB order. Each dataset publishes
its standard per-channel mean/std as `RawDataset.normalization`; select it with
``standardize: dataset`` (or ``channel`` to fit per-channel statistics to the training
split instead).

Nothing is downloaded unless ``download`` is true. torchvision checks every file against
the MD5 checksum of the official release before reading it, also without download; this
matters because the CIFAR files are pickles, and unpickling an arbitrary file can run
arbitrary code. We keep that check: a file that fails it raises `DataError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bayesdistill.data.raw import RawDataset
from bayesdistill.data.standardize import Standardizer
from bayesdistill.errors import ConfigError, DataError, DataFileNotFoundError

PIXEL_MAX = 255.0
"""uint8 pixels are divided by this to lie in [0, 1] (what ``ToTensor`` does)."""
IMAGE_SHAPE = (3, 32, 32)

# Per-channel (R, G, B) mean and std of the official *training* images scaled to [0, 1],
# over all pixels of all images (the population statistics, not a mean of per-image stds).
# These are the values in common use, e.g. torchvision-based CIFAR training scripts:
# CIFAR-10 mean (0.49139968, 0.48215841, 0.44653091), std (0.24703223, 0.24348513,
# 0.26158784) rounded to 4 digits. Two variants circulate and are *not* used here:
# CIFAR-10 std (0.2023, 0.1994, 0.2010) (kuangliu/pytorch-cifar; an average of per-image
# stds) and CIFAR-100 (0.5071, 0.4867, 0.4408) / (0.2675, 0.2565, 0.2761) (RepDistiller /
# mdistiller; differ in the 4th digit). ``standardize: channel`` recomputes the statistics
# from the loaded training split instead.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
# SVHN: statistics of the 73,257 images of train_32x32.mat (extra_32x32.mat not included).
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)

CIFAR10_CLASSES = 10
CIFAR100_CLASSES = 100
SVHN_CLASSES = 10


def cifar10(
    *,
    root: str,
    download: bool = False,
    num_train: int | None = None,
    num_test: int | None = None,
) -> RawDataset:
    """CIFAR-10 (Krizhevsky 2009): 60,000 colour 32×32 images of 10 classes.

    50,000 training and 10,000 test images. Reads ``<root>/cifar-10-batches-py/``
    (``data_batch_1`` … ``data_batch_5``, ``test_batch``, ``batches.meta``), the folder in
    ``cifar-10-python.tar.gz``. The images take about 0.7 GB as float32.

    Args:
        root: folder holding ``cifar-10-batches-py``.
        download: fetch and extract the archive into ``root`` if it is missing (needs
            internet access).
        num_train: keep only the first n training images, in file order (quick runs);
            few-shot subsets per class are chosen by the student's ``subset`` instead.
        num_test: keep only the first n test images.
    """
    from torchvision.datasets import CIFAR10

    return _cifar(
        "cifar10",
        CIFAR10,
        CIFAR10_CLASSES,
        (CIFAR10_MEAN, CIFAR10_STD),
        root,
        download,
        num_train,
        num_test,
    )


def cifar100(
    *,
    root: str,
    download: bool = False,
    num_train: int | None = None,
    num_test: int | None = None,
) -> RawDataset:
    """CIFAR-100 (Krizhevsky 2009): 60,000 colour 32×32 images of 100 classes.

    50,000 training and 10,000 test images; labels are the 100 fine classes. Reads
    ``<root>/cifar-100-python/`` (``train``, ``test``, ``meta``), the folder in
    ``cifar-100-python.tar.gz``. The images take about 0.7 GB as float32.

    Args:
        root: folder holding ``cifar-100-python``.
        download: fetch and extract the archive into ``root`` if it is missing (needs
            internet access).
        num_train: keep only the first n training images, in file order (quick runs).
        num_test: keep only the first n test images.
    """
    from torchvision.datasets import CIFAR100

    return _cifar(
        "cifar100",
        CIFAR100,
        CIFAR100_CLASSES,
        (CIFAR100_MEAN, CIFAR100_STD),
        root,
        download,
        num_train,
        num_test,
    )


def svhn(
    *,
    root: str,
    download: bool = False,
    extra: bool = False,
    num_train: int | None = None,
    num_test: int | None = None,
) -> RawDataset:
    """SVHN (Netzer et al. 2011): house-number digits, 32×32 colour crops of 10 classes.

    73,257 training and 26,032 test images. Reads ``<root>/train_32x32.mat`` and
    ``<root>/test_32x32.mat`` (the cropped-digits format). The files label the digit 0 as
    10; here it is class 0, so class c is digit c. Digits are not mirror-symmetric: augment
    with ``random_crop`` alone, not ``hflip`` or ``cifar``.

    Args:
        root: folder holding the ``.mat`` files.
        download: fetch the missing files into ``root`` (needs internet access).
        extra: append the 531,131 easier images of ``extra_32x32.mat`` to the training
            pool (about 6.5 GB as float32).
        num_train: keep only the first n images of the training pool (train, then extra).
        num_test: keep only the first n test images.
    """
    from torchvision.datasets import SVHN

    _check_limits("svhn", num_train, num_test)
    folder = Path(root).expanduser()
    splits = ["train", "extra"] if extra else ["train"]
    entries = [SVHN.split_list[split] for split in [*splits, "test"]]  # (url, file, md5)
    checks = [(folder / file, md5) for _, file, md5 in entries]
    how = (
        "download them with `download: true` (needs internet access), or fetch "
        + ", ".join(url for url, _, _ in entries)
        + f" into '{folder}'"
    )
    if not download:
        _require_files("svhn", folder, [path for path, _ in checks], how)

    def load(split: str) -> Any:
        return _read(
            "svhn",
            folder,
            checks,
            how,
            download,
            lambda: SVHN(str(folder), split, download=download),
        )

    pools = [load(split) for split in splits]
    test = load("test")
    x, y = _limit(
        "svhn",
        "training",
        np.concatenate([p.data for p in pools]),
        np.concatenate([p.labels for p in pools]),
        num_train,
    )
    x_test, y_test = _limit("svhn", "test", test.data, test.labels, num_test)
    return _raw("svhn", SVHN_CLASSES, (SVHN_MEAN, SVHN_STD), x, y, x_test, y_test)


def _cifar(
    name: str,
    dataset_cls: Any,
    num_classes: int,
    constants: tuple[Sequence[float], Sequence[float]],
    root: str,
    download: bool,
    num_train: int | None,
    num_test: int | None,
) -> RawDataset:
    _check_limits(name, num_train, num_test)
    folder = Path(root).expanduser()
    base = folder / dataset_cls.base_folder
    checks = [(base / file, md5) for file, md5 in dataset_cls.train_list + dataset_cls.test_list]
    checks.append((base / dataset_cls.meta["filename"], dataset_cls.meta["md5"]))
    how = (
        f"download them with `download: true` (needs internet access), or download "
        f"{dataset_cls.url} and extract it into '{folder}'"
    )
    if not download:
        _require_files(name, folder, [path for path, _ in checks], how)
    train = _read(
        name,
        folder,
        checks,
        how,
        download,
        lambda: dataset_cls(str(folder), train=True, download=download),
    )
    test = _read(name, folder, checks, how, False, lambda: dataset_cls(str(folder), train=False))
    # torchvision holds CIFAR as (N, H, W, C) uint8 and the labels as a list
    x, y = _limit(name, "training", train.data.transpose(0, 3, 1, 2), train.targets, num_train)
    x_test, y_test = _limit(name, "test", test.data.transpose(0, 3, 1, 2), test.targets, num_test)
    return _raw(name, num_classes, constants, x, y, x_test, y_test)


def _raw(
    name: str,
    num_classes: int,
    constants: tuple[Sequence[float], Sequence[float]],
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> RawDataset:
    """A `RawDataset` from uint8 ``(N, C, H, W)`` images and integer labels."""
    images, images_test = _to_float(x), _to_float(x_test)
    mean, std = constants
    return RawDataset(
        name,
        images,
        torch.as_tensor(np.asarray(y, dtype=np.int64)),
        num_classes,
        x_test=images_test,
        y_test=torch.as_tensor(np.asarray(y_test, dtype=np.int64)),
        normalization=Standardizer.per_channel(tuple(mean), tuple(std), tuple(images.shape[1:])),
    )


def _to_float(images: np.ndarray) -> Tensor:
    """uint8 ``(N, C, H, W)`` → float32 in [0, 1], contiguous."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(PIXEL_MAX)


def _check_limits(name: str, num_train: int | None, num_test: int | None) -> None:
    for option, value in (("num_train", num_train), ("num_test", num_test)):
        if value is not None and value < 1:
            raise ConfigError(f"{name}: {option} must be >= 1 (or null for all), got {value}")


def _limit(
    name: str, part: str, x: np.ndarray, y: Sequence[int] | np.ndarray, n: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` images and labels (all when ``n`` is None)."""
    labels = np.asarray(y, dtype=np.int64)
    if n is None:
        return x, labels
    if n > len(labels):
        option = "num_train" if part == "training" else "num_test"
        raise ConfigError(
            f"{name}: {option}={n} exceeds the {len(labels)} {part} images; lower it or "
            "leave it out to use all"
        )
    return x[:n], labels[:n]


def _require_files(name: str, root: Path, files: Sequence[Path], how: str) -> None:
    missing = [str(path.relative_to(root)) for path in files if not path.is_file()]
    if missing:
        raise DataFileNotFoundError(
            f"{name}: {len(missing)} dataset file(s) not found under root '{root}' (resolved "
            f"to '{root.resolve()}'): {', '.join(missing)}; {how}"
        )


def _read(
    name: str,
    root: Path,
    checks: Sequence[tuple[Path, str]],
    how: str,
    download: bool,
    make: Callable[[], Any],
) -> Any:
    """Build a torchvision dataset, turning its errors into ours."""
    from torchvision.datasets.utils import check_integrity

    try:
        return make()
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        bad = [str(path) for path, md5 in checks if not check_integrity(str(path), md5)]
        if bad:
            raise DataError(
                f"{name}: {len(bad)} file(s) do not match the MD5 checksums of the official "
                f"release (a partial download or other files), so they are not read: "
                f"{', '.join(bad)}; delete them, then {how}"
            ) from None
        raise DataError(f"{name}: torchvision cannot read the files under '{root}': {exc}") from exc
    except OSError as exc:  # URLError and HTTPError are OSErrors
        if download:
            raise DataFileNotFoundError(
                f"{name}: downloading into '{root}' failed ({exc}); without internet access, "
                "copy the files there from a machine that has it and set download: false"
            ) from exc
        raise DataError(f"{name}: cannot read the files under '{root}': {exc}") from exc

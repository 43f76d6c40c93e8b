"""Tiny CIFAR-10/100 and SVHN files in the official formats, and trusting their checksums.

torchvision checks each file against the MD5 of the official release before reading it,
also when nothing is downloaded. Hand-written files cannot match, so tests that read them
replace torchvision's table of checksums (with ``monkeypatch``, for that test only) by the
checksums of the files they wrote.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import scipy.io
from torchvision.datasets import SVHN

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


def cifar_batch(
    rng: np.random.Generator, n: int, label_keys: dict[str, int], cycle: bool = False
) -> dict:
    """Random pixels; random labels, or with ``cycle`` labels 0, 1, ..., C-1, 0, ... (every
    class present once n ≥ C)."""
    data = rng.integers(0, 256, (n, PIXELS), dtype=np.uint8)
    batch = {Py2Str(b"batch_label"): Py2Str(b"tiny batch"), Py2Str(b"data"): data}
    for key, num_classes in label_keys.items():
        labels = np.arange(n) % num_classes if cycle else rng.integers(0, num_classes, n)
        batch[Py2Str(key.encode())] = labels.tolist()
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


def write_cifar100(
    root: Path, n_train: int = 6, n_test: int = 4, cycle: bool = False
) -> dict[str, dict]:
    """``root/cifar-100-python/{train, test, meta}`` with fine and coarse labels."""
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    files = {}
    for name, n in (("train", n_train), ("test", n_test)):
        files[name] = cifar_batch(rng, n, {"fine_labels": 100, "coarse_labels": 20}, cycle)
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

"""Memory-mapped arrays on disk, read example by example: labelled data larger than memory.

A folder holds two NumPy files: ``x.npy``, the inputs ``(N, *input_shape)`` (any real
dtype: float32, float16, uint8 images, ...), and ``y.npy``, the labels ``(N,)`` (integers).
`save_arrays` writes them (each file atomically, see `bayesdistill.io`); `OnDiskArrays` is
a map-style ``torch.utils.data.Dataset`` over them whose item ``i`` is ``(x_i, y_i)``; and
`ondisk_data` wraps a folder as `StreamData`, which `fit`, `distill` and the metrics read
through a ``DataLoader`` one batch at a time.

Memory stays small: the files are opened with ``numpy.load(mmap_mode="r")``, so only the
pages of the examples read are loaded (and the operating system may drop them again). The
memory maps are opened lazily, once per process: a ``DataLoader`` worker, forked or
spawned, opens its own on its first read, and pickling the dataset (to send it to a
spawned worker) carries the file names only, never the mapped arrays. A whole batch is read
with one fancy-indexing call (``__getitems__``, which the ``DataLoader`` prefers to one
call per example).

Items keep the stored dtype; `StreamData.prepare` turns each batch into float32 on the
training device (so uint8 images travel to a GPU as bytes). Labels are read once, into
memory, by `ondisk_data` (8 bytes per example: `StreamData` keeps them for per-class
subsets, folds and metrics).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from bayesdistill.data.labelled import LoaderOptions, StreamData, stream_data
from bayesdistill.data.standardize import Standardizer
from bayesdistill.errors import DataError, DataFileNotFoundError
from bayesdistill.io import atomic_open

X_FILE = "x.npy"
"""Inputs ``(N, *input_shape)`` in a folder written by `save_arrays`."""
Y_FILE = "y.npy"
"""Integer labels ``(N,)`` in a folder written by `save_arrays`."""
INPUT_KINDS = "fiub"
"""NumPy dtype kinds accepted for inputs: float, signed and unsigned integer, bool."""
LABEL_KINDS = "iu"
"""NumPy dtype kinds accepted for labels: signed and unsigned integer."""


def save_arrays(folder: str | os.PathLike[str], x: Any, y: Any) -> Path:
    """Write inputs ``x`` ``(N, *input_shape)`` and integer labels ``y`` ``(N,)`` to
    ``folder/x.npy`` and ``folder/y.npy`` (creating the folder), for `OnDiskArrays`.

    ``x`` keeps its dtype (a torch tensor is written as its NumPy counterpart); labels are
    written as int64. Each file is written to a temporary sibling and renamed, so a reader
    never sees a half-written file. Returns the folder.

    Raises `DataError` for malformed arrays (what `OnDiskArrays` would refuse to read).
    """
    x_arr, y_arr = _as_numpy(x, "x"), _as_numpy(y, "y")
    _check_inputs(x_arr.dtype, x_arr.shape, "x")
    _check_labels_array(y_arr.dtype, y_arr.shape, "y")
    _check_lengths(x_arr.shape, y_arr.shape, "x", "y")
    out = Path(folder).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for name, array in ((X_FILE, x_arr), (Y_FILE, y_arr.astype(np.int64, copy=False))):
        with atomic_open(out / name, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
    return out


class OnDiskArrays(Dataset):
    """Item ``i`` of the arrays in a folder written by `save_arrays`: ``(x_i, y_i)``, with
    ``x_i`` a tensor of ``input_shape`` in the stored dtype and ``y_i`` an int.

    The files are checked when the dataset is made (shapes, dtypes, lengths) and memory
    mapped read-only on first use in each process.

    Raises:
        DataFileNotFoundError: the folder, ``x.npy`` or ``y.npy`` does not exist.
        DataError: a file is not a readable ``.npy`` array, the inputs are not real
            numbers of shape ``(N, ...)``, the labels not integers of shape ``(N,)``, or
            the lengths differ.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise DataFileNotFoundError(
                f"on-disk dataset folder not found: '{self.folder}' (resolved to "
                f"'{self.folder.resolve()}'); write one with save_arrays(folder, x, y)"
            )
        self.x_path, self.y_path = self.folder / X_FILE, self.folder / Y_FILE
        x, y = _open(self.x_path), _open(self.y_path)
        _check_inputs(x.dtype, x.shape, str(self.x_path))
        _check_labels_array(y.dtype, y.shape, str(self.y_path))
        _check_lengths(x.shape, y.shape, str(self.x_path), str(self.y_path))
        self.input_shape: tuple[int, ...] = tuple(int(s) for s in x.shape[1:])
        self.dtype: np.dtype = x.dtype
        self._length = int(x.shape[0])
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x, y = self._arrays()
        return torch.from_numpy(np.array(x[i])), int(y[i])

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor, int]]:
        """The items at ``indices``, read with one fancy-indexing call per file."""
        x, y = self._arrays()
        index = np.asarray(indices, dtype=np.int64)
        inputs = torch.from_numpy(np.asarray(x[index]))  # a copy: fancy indexing reads
        return list(zip(inputs.unbind(0), y[index].tolist(), strict=True))

    def labels(self) -> Tensor:
        """All labels ``(N,)`` int64, read into memory."""
        return torch.from_numpy(np.load(self.y_path, allow_pickle=False).astype(np.int64))

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """This process's memory maps of x and y (opened on first use in each process)."""
        pid = os.getpid()
        if self._x is None or self._y is None or self._pid != pid:
            self._x, self._y = _open(self.x_path), _open(self.y_path)
            self._pid = pid
        return self._x, self._y

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the memory maps (a spawned worker opens its own)."""
        state = dict(self.__dict__)
        state["_x"] = state["_y"] = state["_pid"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"OnDiskArrays('{self.folder}', {self._length} examples of "
            f"{self.input_shape} {self.dtype})"
        )


def ondisk_data(
    folder: str | os.PathLike[str],
    *,
    num_classes: int | None = None,
    standardizer: Standardizer | None = None,
    loader: LoaderOptions | None = None,
) -> StreamData:
    """The arrays in ``folder`` (written by `save_arrays`) as `StreamData`.

    Labels are read once from ``y.npy`` and checked against ``[0, num_classes)``
    (``num_classes`` defaults to the largest label + 1); inputs stay on disk and are read
    batch by batch, standardised on the training device by ``standardizer``.

    Example:
        >>> save_arrays("data/train", x, y)  # doctest: +SKIP
        >>> train = ondisk_data("data/train", num_classes=10,
        ...                     loader=LoaderOptions(num_workers=2))
        >>> fit(model, train, loss_fn=onehot_ce, settings=settings, seed=0)
    """
    dataset = OnDiskArrays(folder)
    return stream_data(
        dataset,
        num_classes=num_classes,
        labels=dataset.labels(),
        standardizer=standardizer,
        loader=loader,
    )


def _as_numpy(array: Any, name: str) -> np.ndarray:
    if isinstance(array, Tensor):
        return array.detach().cpu().numpy()
    try:
        return np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise DataError(f"cannot convert {name} to a NumPy array: {exc}") from exc


def _open(path: Path) -> np.ndarray:
    """``path`` memory-mapped read-only, with our errors for a missing or foreign file."""
    if not path.is_file():
        raise DataFileNotFoundError(
            f"on-disk dataset file not found: '{path}'; a folder written by "
            f"save_arrays(folder, x, y) holds {X_FILE} and {Y_FILE}"
        )
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read '{path}' as a .npy array: {exc}") from exc


def _check_inputs(dtype: np.dtype, shape: tuple[int, ...], what: str) -> None:
    if dtype.kind not in INPUT_KINDS:
        raise DataError(
            f"inputs in {what} must be real numbers (float, int, uint or bool), got dtype {dtype}"
        )
    if len(shape) < 2:
        raise DataError(f"inputs in {what} must have shape (N, *input_shape), got {shape}")
    if shape[0] == 0:
        raise DataError(f"inputs in {what} hold no example (shape {shape})")


def _check_labels_array(dtype: np.dtype, shape: tuple[int, ...], what: str) -> None:
    if dtype.kind not in LABEL_KINDS:
        raise DataError(
            f"labels in {what} must be integers, got dtype {dtype}; convert them first "
            "(e.g. y.astype(numpy.int64) after checking they are whole numbers)"
        )
    if len(shape) != 1:
        raise DataError(f"labels in {what} must have shape (N,), got {shape}")


def _check_lengths(x_shape: tuple[int, ...], y_shape: tuple[int, ...], x: str, y: str) -> None:
    if x_shape[0] != y_shape[0]:
        raise DataError(
            f"{x} has {x_shape[0]} examples but {y} has {y_shape[0]} labels; "
            "inputs and labels must have the same length"
        )

"""Dataset sources: MNIST-1D (generated offline) and user-supplied ``.npz`` files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from bayesdistill.data.arrays import as_tensor_data
from bayesdistill.data.raw import RawDataset
from bayesdistill.errors import ConfigError, DataError, DataFileNotFoundError

MNIST1D_CLASSES = 10


def mnist1d(
    *,
    num_samples: int = 5000,
    seed: int = 42,
    train_split: float = 0.8,
    iid_noise_scale: float = 2e-2,
    corr_noise_scale: float = 0.25,
) -> RawDataset:
    """MNIST-1D (Greydanus 2020), generated offline by the ``mnist1d`` package.

    The ``mnist1d`` generator produces ``num_samples`` length-40 signals of 10 classes and
    keeps the first ``train_split`` of them for training; the rest is the test set.
    Nothing is downloaded. Generation seeds NumPy's global generator; its state is
    restored afterwards so calling this has no side effect.

    Args:
        num_samples: total examples (train + test), a multiple of 10.
        seed: the generator's seed (42 reproduces the package's reference data).
        train_split: fraction kept as the training pool (validation is split from it).
        iid_noise_scale: scale of the i.i.d. noise added to each signal.
        corr_noise_scale: scale of the correlated noise added to each signal.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    if num_samples < 10 * MNIST1D_CLASSES:
        raise ConfigError(f"mnist1d needs num_samples >= 100, got {num_samples}")
    if not 0.0 < train_split < 1.0:
        raise ConfigError(f"train_split must lie in (0, 1), got {train_split}")
    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, seed, train_split
    args.iid_noise_scale, args.corr_noise_scale = iid_noise_scale, corr_noise_scale
    np_state = np.random.get_state()
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(np_state)
    train = as_tensor_data(raw["x"], raw["y"], MNIST1D_CLASSES, source="mnist1d")
    test = as_tensor_data(raw["x_test"], raw["y_test"], MNIST1D_CLASSES, source="mnist1d")
    return RawDataset("mnist1d", train.x, train.y, MNIST1D_CLASSES, x_test=test.x, y_test=test.y)


NPZ_REQUIRED = ("x", "y")
NPZ_OPTIONAL = ("x_test", "y_test", "bcp", "bcp_test")


def npz(*, path: str, num_classes: int | None = None) -> RawDataset:
    """Your own data from a NumPy ``.npz`` file.

    The file holds arrays ``x`` ``(N, ...)`` and ``y`` ``(N,)`` (integer labels), and
    optionally ``x_test``/``y_test`` (a fixed test set) and ``bcp``/``bcp_test`` (exact
    class probabilities, if known). Other keys are ignored. Loaded without pickle.

    Args:
        path: the ``.npz`` file.
        num_classes: C; inferred as ``max(y) + 1`` over train and test when omitted.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataFileNotFoundError(
            f"npz dataset file not found: '{file}' (resolved to '{file.resolve()}'); "
            "give data.path as an existing .npz file with arrays x and y"
        )
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read '{file}' as an .npz archive: {exc}") from exc
    missing = [k for k in NPZ_REQUIRED if k not in arrays]
    if missing:
        raise DataError(
            f"'{file}' lacks array(s) {missing}; found {sorted(arrays)}; required "
            f"{list(NPZ_REQUIRED)}, optional {list(NPZ_OPTIONAL)}"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"'{file}': x_test and y_test must be given together")
    for key in ("x", "y", "x_test", "y_test"):
        if key in arrays and (arrays[key].ndim == 0 or arrays[key].shape[0] == 0):
            raise DataError(
                f"'{file}': array '{key}' holds no examples (shape {list(arrays[key].shape)}); "
                f"{key} must have shape (N, ...) with N >= 1"
            )
    if num_classes is None:
        labels = [arrays["y"]] + ([arrays["y_test"]] if "y_test" in arrays else [])
        for lab in labels:
            if lab.dtype.kind not in "iubf":
                raise DataError(f"'{file}': labels must be integers, got dtype {lab.dtype}")
        # non-finite float labels are reported by as_tensor_data below
        finite = [lab[np.isfinite(lab)] if lab.dtype.kind == "f" else lab for lab in labels]
        seen = [int(np.max(lab)) for lab in finite if lab.size]
        num_classes = max(seen) + 1 if seen else 2
    source = f"npz file '{file}'"
    train = as_tensor_data(arrays["x"], arrays["y"], num_classes, arrays.get("bcp"), source=source)
    if "x_test" in arrays:
        test = as_tensor_data(
            arrays["x_test"],
            arrays["y_test"],
            num_classes,
            arrays.get("bcp_test"),
            source=f"{source} (test split)",
        )
        return RawDataset(
            file.stem, train.x, train.y, num_classes, train.bcp, test.x, test.y, test.bcp
        )
    return RawDataset(file.stem, train.x, train.y, num_classes, train.bcp)


def save_npz(path: str | Path, **arrays: np.ndarray | torch.Tensor) -> None:
    """Write arrays to an ``.npz`` file in the layout `npz` reads (atomically)."""
    from bayesdistill.io import atomic_open

    plain = {
        k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in arrays.items()
    }
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **plain)

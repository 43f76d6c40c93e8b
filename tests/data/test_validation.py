"""Bad data gets a clear error naming what was given and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest

from bayesdistill.data import as_tensor_data, npz, save_npz
from bayesdistill.errors import DataError, DataFileNotFoundError


def test_nan_and_inf_inputs_are_rejected_with_rows():
    x = np.zeros((5, 3), dtype=np.float32)
    x[2, 1] = np.nan
    x[4, 0] = np.inf
    with pytest.raises(DataError, match=r"2 NaN/inf values \(first rows: \[2, 4\]\)"):
        as_tensor_data(x, [0, 1, 0, 1, 0], 2)


def test_labels_outside_range_are_rejected():
    with pytest.raises(DataError, match=r"labels must lie in \[0, 3\), found values in \[-1, 2\]"):
        as_tensor_data(np.zeros((3, 2)), [0, 2, -1], 3)
    with pytest.raises(DataError, match=r"in \[0, 2\), found values in \[0, 5\]"):
        as_tensor_data(np.zeros((3, 2)), [0, 5, 1], 2)


def test_shape_and_type_mismatches():
    with pytest.raises(DataError, match="x has 3 examples but y has 2"):
        as_tensor_data(np.zeros((3, 2)), [0, 1], 2)
    with pytest.raises(DataError, match="labels must be integers"):
        as_tensor_data(np.zeros((2, 2)), [0.5, 1.0], 2)
    with pytest.raises(DataError, match="bcp rows must sum to 1"):
        as_tensor_data(np.zeros((2, 2)), [0, 1], 2, bcp=[[0.5, 0.4], [0.5, 0.5]])


def test_npz_missing_file(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(DataFileNotFoundError, match="npz dataset file not found: .*nope.npz"):
        npz(path=str(missing))


def test_npz_missing_arrays_lists_what_was_found(tmp_path):
    path = tmp_path / "d.npz"
    save_npz(path, inputs=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"lacks array\(s\) \['x'\]; found \['inputs', 'y'\]"):
        npz(path=str(path))


def test_npz_not_an_archive(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"definitely not a zip file")
    with pytest.raises(DataError, match="cannot read"):
        npz(path=str(path))


def test_npz_round_trip_with_test_split(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    save_npz(
        path,
        x=rng.normal(size=(20, 3)),
        y=rng.integers(0, 3, 20),
        x_test=rng.normal(size=(6, 3)),
        y_test=np.array([0, 1, 2, 0, 1, 2]),
    )
    raw = npz(path=str(path))
    assert raw.num_classes == 3 and raw.x.shape == (20, 3) and raw.x_test.shape == (6, 3)


def test_npz_with_nan_names_the_file(tmp_path):
    path = tmp_path / "nan.npz"
    x = np.zeros((4, 2))
    x[1, 1] = np.nan
    save_npz(path, x=x, y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="nan.npz.*NaN/inf"):
        npz(path=str(path))

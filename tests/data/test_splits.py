"""Deterministic splits and per-class subsets; one split function, with the same checks, for
in-memory and streamed data."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.utils.data import TensorDataset

from bayesdistill.data import (
    RawDataset,
    RawStream,
    StreamData,
    gaussian_mixture,
    make_splits,
    make_stream_splits,
    per_class_subset,
    split_indices,
    stream_data,
)
from bayesdistill.errors import ConfigError, DataError

KINDS = ["in_memory", "streamed"]
"""The two kinds of raw dataset `make_splits` takes."""


def test_split_indices_partition_and_are_reproducible():
    parts = split_indices(103, (0.7, 0.2, 0.1), seed=5)
    assert [len(p) for p in parts] == [73, 20, 10]
    assert torch.equal(torch.cat(parts).sort().values, torch.arange(103))
    again = split_indices(103, (0.7, 0.2, 0.1), seed=5)
    assert all(torch.equal(a, b) for a, b in zip(parts, again, strict=True))
    other = split_indices(103, (0.7, 0.2, 0.1), seed=6)
    assert not torch.equal(parts[1], other[1])


def test_make_splits_keeps_a_given_test_set():
    raw = gaussian_mixture(num_classes=3, dim=2, num_samples=100, seed=0)
    with_test = replace(raw, x_test=raw.x[:10], y_test=raw.y[:10], bcp_test=raw.bcp[:10])
    splits = make_splits(with_test, val_fraction=0.25, seed=0)
    assert len(splits.test) == 10 and len(splits.val) == 25 and len(splits.train) == 75


def _raw(kind: str, *, own_test: bool = False) -> RawDataset | RawStream:
    """40 examples of 2 classes, in memory or as a streamed Dataset; maybe a test set too."""
    raw = gaussian_mixture(num_classes=2, dim=3, num_samples=50, seed=0)
    pool, test = slice(0, 40), slice(40, 50)
    if kind == "in_memory":
        if not own_test:
            return replace(raw, x=raw.x[pool], y=raw.y[pool], bcp=raw.bcp[pool])
        return replace(
            raw,
            x=raw.x[pool],
            y=raw.y[pool],
            bcp=raw.bcp[pool],
            x_test=raw.x[test],
            y_test=raw.y[test],
            bcp_test=raw.bcp[test],
        )

    def streamed(part: slice) -> StreamData:
        return stream_data(TensorDataset(raw.x[part], raw.y[part]), num_classes=2)

    return RawStream("toy", streamed(pool), streamed(test) if own_test else None)


@pytest.mark.parametrize("kind", KINDS)
def test_both_kinds_split_into_the_same_positions(kind):
    splits = make_splits(_raw(kind), val_fraction=0.25, test_fraction=0.25, seed=3)
    memory = make_splits(_raw("in_memory"), val_fraction=0.25, test_fraction=0.25, seed=3)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(splits, part).y, getattr(memory, part).y)
    assert isinstance(splits.train, StreamData) == (kind == "streamed")
    assert make_stream_splits is make_splits  # the old name of the streamed split


@pytest.mark.parametrize("own_test", [False, True])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("val_fraction", "test_fraction", "named"),
    [(-0.1, 0.2, "val_fraction"), (1.0, 0.2, "val_fraction"), (0.1, 1.5, "test_fraction")],
)
def test_both_kinds_refuse_a_fraction_outside_0_1(
    kind, own_test, val_fraction, test_fraction, named
):
    raw = _raw(kind, own_test=own_test)
    with pytest.raises(ConfigError, match=rf"{named} must lie in \[0, 1\), got"):
        make_splits(raw, val_fraction=val_fraction, test_fraction=test_fraction)


@pytest.mark.parametrize("kind", KINDS)
def test_both_kinds_refuse_fractions_that_leave_no_training_share(kind):
    with pytest.raises(ConfigError, match="val_fraction \\+ test_fraction must be < 1"):
        make_splits(_raw(kind), val_fraction=0.5, test_fraction=0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_both_kinds_refuse_an_empty_test_split(kind):
    with pytest.raises(DataError, match="dataset '.*' leaves an empty test set"):
        make_splits(_raw(kind), val_fraction=0.2, test_fraction=0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_both_kinds_refuse_an_empty_validation_split(kind):
    with pytest.raises(DataError, match="leaves an empty validation set"):
        make_splits(_raw(kind), val_fraction=0.0, test_fraction=0.2)


@pytest.mark.parametrize("count", [1, 4, 7])
def test_per_class_subset_counts(count):
    labels = torch.tensor([0] * 10 + [1] * 8 + [2] * 7)
    idx = per_class_subset(labels, count=count, seed=0)
    assert torch.bincount(labels[idx], minlength=3).tolist() == [count] * 3
    assert torch.equal(idx, per_class_subset(labels, count=count, seed=0))


def test_per_class_subset_fraction_and_errors():
    labels = torch.tensor([0] * 10 + [1] * 20)
    idx = per_class_subset(labels, fraction=0.5, seed=1)
    assert torch.bincount(labels[idx]).tolist() == [5, 10]
    with pytest.raises(ConfigError, match="class 0 has 10"):
        per_class_subset(labels, count=11, seed=0)
    with pytest.raises(ConfigError, match="exactly one"):
        per_class_subset(labels, count=1, fraction=0.5, seed=0)

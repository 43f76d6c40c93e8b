"""Deterministic splits and per-class subsets."""

from __future__ import annotations

import pytest
import torch

from bayesdistill.data import gaussian_mixture, make_splits, per_class_subset, split_indices
from bayesdistill.errors import ConfigError


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
    from dataclasses import replace

    with_test = replace(raw, x_test=raw.x[:10], y_test=raw.y[:10], bcp_test=raw.bcp[:10])
    splits = make_splits(with_test, val_fraction=0.25, seed=0)
    assert len(splits.test) == 10 and len(splits.val) == 25 and len(splits.train) == 75


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

"""Augmentations draw their few random numbers on the generator's device, whatever torch's
default device, so a CPU generator gives the same augmented batch everywhere.

A draw made without a device under ``torch.device("meta")`` lands on meta, as one under
``torch.set_default_device("cuda")`` lands on the GPU, where a CPU generator fails.
"""

from __future__ import annotations

import pytest
import torch

from bayesdistill.data import gaussian_mixture, per_class_subset
from bayesdistill.data.augment import (
    Compose,
    GaussianNoise,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShift,
)
from bayesdistill.data.splits import split_indices
from bayesdistill.teachers.cross_fit import stratified_folds

META = torch.device("meta")
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("augment", "shape"),
    [
        (RandomShift(max_shift=3), (6, 2, 10)),
        (RandomCrop(padding=2), (6, 3, 8, 8)),
        (RandomHorizontalFlip(), (6, 3, 8, 8)),
        (Compose([RandomCrop(padding=2), RandomHorizontalFlip()]), (6, 3, 8, 8)),
        (Compose([]), (6, 3, 8, 8)),
    ],
)
def test_parameters_are_drawn_on_the_cpu_whatever_the_default_device(augment, shape) -> None:
    expected = augment.sample(shape[0], torch.Generator().manual_seed(5), shape[1:])
    with torch.device(META):
        params = augment.sample(shape[0], torch.Generator().manual_seed(5), shape[1:])
    assert params.device == CPU
    assert torch.equal(params, expected)


@pytest.mark.parametrize(
    "augment", [RandomShift(max_shift=3), GaussianNoise(std=0.1), RandomHorizontalFlip()]
)
def test_augmented_batch_is_the_same_whatever_the_default_device(augment) -> None:
    x = torch.linspace(-1.0, 1.0, 6 * 3 * 8).view(6, 3, 8)
    expected = augment(x, torch.Generator().manual_seed(7))
    with torch.device(META):
        got = augment(x, torch.Generator().manual_seed(7))
    assert got.device == CPU
    assert torch.equal(got, expected)


def test_data_draws_are_made_on_the_cpu_whatever_the_default_device() -> None:
    """Synthetic data, splits, per-class subsets and cross-fitting folds: what a run
    trains on is the same whatever device torch creates tensors on by default."""

    def draws() -> list[torch.Tensor]:
        raw = gaussian_mixture(num_classes=3, dim=4, num_samples=60, seed=2)
        parts = split_indices(60, (0.6, 0.2, 0.2), seed=3)
        subset = per_class_subset(raw.y, count=4, seed=5, num_classes=3)
        folds = stratified_folds(raw.y, 3, seed=7)
        return [raw.x, raw.y, *parts, subset, folds]

    expected = draws()
    with torch.device(META):
        got = draws()
    for a, b in zip(got, expected, strict=True):
        assert a.device == CPU
        assert torch.equal(a, b)

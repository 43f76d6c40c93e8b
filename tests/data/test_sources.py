"""MNIST-1D generated offline; augmentations."""

from __future__ import annotations

import numpy as np
import torch

from bayesdistill.data import mnist1d
from bayesdistill.data.augment import GaussianNoise, RandomShift


def test_mnist1d_offline_shapes_seed_and_no_global_side_effect():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    raw = mnist1d(num_samples=200, seed=3)
    assert np.array_equal(np.random.get_state()[1], before)
    assert raw.x.shape == (160, 40) and raw.x_test.shape == (40, 40)
    assert raw.num_classes == 10 and set(raw.y.tolist()) <= set(range(10))
    again = mnist1d(num_samples=200, seed=3)
    assert torch.equal(raw.x, again.x)
    assert not torch.equal(raw.x, mnist1d(num_samples=200, seed=4).x)


def test_random_shift_moves_each_row_and_pads_with_zeros():
    x = torch.arange(1, 9, dtype=torch.float32).repeat(50, 1)  # (50, 8)
    out = RandomShift(max_shift=2)(x, torch.Generator().manual_seed(0))
    for row in out:
        nonzero = row[row != 0]
        # a shifted copy of 1..8: consecutive values, with at most 2 dropped
        assert len(nonzero) >= 6
        assert torch.all(nonzero[1:] - nonzero[:-1] == 1)
    shifts = {int((row == 0).sum()) for row in out}
    assert shifts == {0, 1, 2}


def test_gaussian_noise_std():
    x = torch.zeros(2000, 10)
    out = GaussianNoise(std=0.3)(x, torch.Generator().manual_seed(0))
    assert abs(out.std().item() - 0.3) < 0.01

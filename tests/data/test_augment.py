"""Image augmentations: random crop with zero padding and horizontal flip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bayesdistill.data import AUGMENTATIONS, RandomCrop, RandomHorizontalFlip, crop, hflip
from bayesdistill.data.augment import Compose
from bayesdistill.errors import ConfigError


def images(batch: int = 6, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def naive_crop(x, top, left, size, padding):
    """Reference: pad each image and slice its window, one example at a time."""
    padded = F.pad(x, (padding,) * 4)
    return torch.stack(
        [
            padded[b, :, t : t + size, s : s + size]
            for b, (t, s) in enumerate(zip(top, left, strict=True))
        ]
    )


def test_crop_at_the_padding_offset_reproduces_the_input():
    x = images()
    centre = torch.full((len(x),), 4)
    assert torch.equal(crop(x, centre, centre, size=32, padding=4), x)


def test_crop_at_the_corner_shifts_in_zeros():
    x = images()
    zero = torch.zeros(len(x), dtype=torch.long)
    out = crop(x, zero, zero, size=32, padding=4)
    assert torch.equal(out[:, :, 4:, 4:], x[:, :, :28, :28])
    assert torch.all(out[:, :, :4, :] == 0) and torch.all(out[:, :, :, :4] == 0)


def test_crop_matches_a_naive_loop_and_keeps_channels_together():
    x = images(batch=20)
    gen = torch.Generator().manual_seed(1)
    top, left = torch.randint(0, 9, (20,), generator=gen), torch.randint(0, 9, (20,), generator=gen)
    assert torch.equal(crop(x, top, left, size=32, padding=4), naive_crop(x, top, left, 32, 4))
    small = crop(x, top, left, size=28, padding=2)
    assert small.shape == (20, 3, 28, 28)
    assert torch.equal(small, naive_crop(x, top, left, 28, 2))


def test_crop_rejects_offsets_outside_the_padded_image():
    x = images(batch=2)
    with pytest.raises(ConfigError, match=r"offsets must lie in \[0, 8\]"):
        crop(x, torch.tensor([0, 9]), torch.tensor([0, 0]), size=32, padding=4)


@pytest.mark.parametrize(("size", "expected"), [(None, 32), (24, 24)])
def test_random_crop_output_shape(size, expected):
    out = RandomCrop(size=size)(images(), torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, expected, expected)


def test_random_crop_draws_every_offset_and_each_output_is_a_crop():
    x = images(batch=400, channels=1, size=8)
    out = RandomCrop(padding=2)(x, torch.Generator().manual_seed(0))
    offsets = []
    for b in range(len(x)):
        matches = [
            (t, s)
            for t in range(5)
            for s in range(5)
            if torch.equal(out[b], naive_crop(x[b : b + 1], [t], [s], 8, 2)[0])
        ]
        assert len(matches) == 1
        offsets.append(matches[0])
    assert {t for t, _ in offsets} == set(range(5)) and {s for _, s in offsets} == set(range(5))


def test_same_seed_same_output_other_seed_other_output():
    x = images(batch=64)
    cifar = AUGMENTATIONS.build("cifar")
    first = cifar(x, torch.Generator().manual_seed(7))
    assert torch.equal(first, cifar(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, cifar(x, torch.Generator().manual_seed(8)))


def test_flip_twice_is_the_identity_and_mirrors_the_width():
    x = images()
    assert torch.equal(hflip(hflip(x)), x)
    assert torch.equal(hflip(x)[..., 0], x[..., -1])
    assert torch.equal(hflip(x)[:, :, 0, :], x[:, :, 0, :].flip(-1))  # rows stay rows


def test_random_flip_flips_about_half_of_the_examples():
    n = 4000
    x = images(batch=n, channels=1, size=4)
    out = RandomHorizontalFlip()(x, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == hflip(x)).flatten(1).all(1)
    assert torch.all(same ^ mirrored)  # each example is either kept or mirrored, never both
    # Binomial(4000, 0.5): standard deviation of the fraction 0.0079; 0.03 is ~4 sd
    assert abs(mirrored.float().mean().item() - 0.5) < 0.03


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_flip_probability_extremes(p):
    x = images()
    out = RandomHorizontalFlip(p=p)(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, hflip(x) if p == 1.0 else x)


def test_cifar_composite_is_crop_then_flip_and_keeps_the_shape():
    x = images(batch=16)
    out = AUGMENTATIONS.build("cifar", padding=4, flip_p=0.5)(x, torch.Generator().manual_seed(3))
    manual = Compose([RandomCrop(padding=4), RandomHorizontalFlip(p=0.5)])
    assert out.shape == x.shape
    assert torch.equal(out, manual(x, torch.Generator().manual_seed(3)))


def test_options_are_validated():
    with pytest.raises(ConfigError, match="padding must be >= 0"):
        AUGMENTATIONS.build("random_crop", padding=-1)
    with pytest.raises(ConfigError, match=r"p must lie in \[0, 1\]"):
        AUGMENTATIONS.build("hflip", p=1.5)
    with pytest.raises(ConfigError, match="has no option 'pad'"):
        AUGMENTATIONS.build("cifar", pad=4)
    with pytest.raises(ConfigError, match="crop size 41 exceeds the padded image size 40×40"):
        RandomCrop(size=41)(images(), torch.Generator())
    with pytest.raises(ConfigError, match="for 1-D signals use 'shift'"):
        RandomCrop()(torch.zeros(4, 40), torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_batch_with_cpu_generator_matches_cpu():
    x = images(batch=32)
    cifar = AUGMENTATIONS.build("cifar")
    on_gpu = cifar(x.cuda(), torch.Generator().manual_seed(5))
    assert on_gpu.is_cuda
    assert torch.equal(on_gpu.cpu(), cifar(x, torch.Generator().manual_seed(5)))
    cuda_gen = torch.Generator(device="cuda").manual_seed(5)
    assert cifar(x.cuda(), cuda_gen).shape == x.shape

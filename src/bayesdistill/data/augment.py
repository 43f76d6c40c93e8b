"""Batch augmentations, each drawing randomness from a generator.

An augmentation is a callable ``(x, generator) -> x'`` on a batch ``(B, ..., L)``. Most are
*parametric* (`ParametricAugmentation`): what they do to each example is a few integers
(a shift, crop offsets, a flip bit), drawn by ``sample`` and applied by ``apply``, and
``aug(x, g) == aug.apply(x, aug.sample(len(x), g, x.shape[1:]))``. Parameters can be stored,
so the teacher's predictions on augmented views can be computed once and each view rebuilt
exactly when a student trains on it (`bayesdistill.train.views`). Gaussian noise is not
parametric (its parameters would be the whole noise tensor): with it, the teacher is asked
on every augmented batch.

Augmentations run on standardised batches, on the batch's device: the few random numbers
per example (offsets, coin flips) are drawn on the generator's device and then moved, so a
CPU generator gives the same augmented batch on CPU and GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from bayesdistill.errors import ConfigError
from bayesdistill.registry import Registry

CIFAR_CROP_PADDING = 4
"""Zero padding of the standard CIFAR random crop (He et al. 2016, "Deep Residual Learning
for Image Recognition", Sec. 4.2: "4 pixels are padded on each side, and a 32×32 crop is
randomly sampled from the padded image or its horizontal flip")."""
FLIP_PROBABILITY = 0.5
"""Probability of mirroring an image left-right in the standard CIFAR recipe."""


class Augmentation(Protocol):
    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor: ...


@runtime_checkable
class ParametricAugmentation(Protocol):
    """An augmentation whose per-example randomness is ``num_params`` integers."""

    num_params: int

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor: ...

    def sample(self, n: int, generator: torch.Generator, input_shape: tuple[int, ...]) -> Tensor:
        """Parameters ``(n, num_params)`` int64 for ``n`` examples of ``input_shape``."""
        ...

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        """Augment ``x`` ``(B, ...)`` with the parameters ``(B, num_params)``."""
        ...


class _Parametric:
    """``__call__`` = `apply` ∘ `sample`, drawing from the generator as `sample` does."""

    num_params: int

    def sample(self, n: int, generator: torch.Generator, input_shape: tuple[int, ...]) -> Tensor:
        raise NotImplementedError

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return self.apply(x, self.sample(x.shape[0], generator, tuple(x.shape[1:])))


AUGMENTATIONS: Registry = Registry("augmentation")


class RandomShift(_Parametric):
    """Translate each example along its last axis by an integer in [−max_shift, max_shift].

    Positions shifted in from outside are zero (the standardised signal's mean).
    Parameters: the shift.
    """

    num_params = 1

    def __init__(self, *, max_shift: int = 4) -> None:
        if max_shift < 0:
            raise ConfigError(f"max_shift must be >= 0, got {max_shift}")
        self.max_shift = max_shift

    def sample(self, n: int, generator: torch.Generator, input_shape: tuple[int, ...]) -> Tensor:
        shift = torch.randint(
            -self.max_shift, self.max_shift + 1, (n,), generator=generator, device=generator.device
        )
        return shift.cpu()[:, None]

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        length = x.shape[-1]
        shift = params[:, 0].to(x.device)
        source = torch.arange(length, device=x.device) - shift[:, None]  # (B, L)
        valid = (source >= 0) & (source < length)
        source = source.clamp(0, length - 1)
        view = (x.shape[0],) + (1,) * (x.ndim - 2) + (length,)
        shifted = torch.gather(x, -1, source.view(view).expand_as(x))
        return shifted * valid.view(view).to(x.dtype)


class GaussianNoise:
    """Add i.i.d. N(0, std²) noise to every input coordinate."""

    def __init__(self, *, std: float = 0.05) -> None:
        if std < 0:
            raise ConfigError(f"std must be >= 0, got {std}")
        self.std = std

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device)
        return x + self.std * noise.to(x.device)


def crop(
    x: Tensor, top: Tensor, left: Tensor, *, size: int, padding: int, fill: float = 0.0
) -> Tensor:
    """Crop each image of a zero-padded batch at its own offset.

    Pads ``x`` ``(B, C, H, W)`` by ``padding`` on every side with ``fill``, then takes the
    ``size × size`` window whose top-left corner is ``(top[b], left[b])`` in the padded
    image of example b. Returns ``(B, C, size, size)``; with ``size = H = W``, offsets
    ``(padding, padding)`` give back ``x``.
    """
    _require_images(x, "crop")
    span_h = x.shape[2] + 2 * padding - size
    span_w = x.shape[3] + 2 * padding - size
    if not (((top >= 0) & (top <= span_h)).all() and ((left >= 0) & (left <= span_w)).all()):
        raise ConfigError(
            f"crop offsets must lie in [0, {span_h}] × [0, {span_w}] for a {size}×{size} "
            f"crop of {tuple(x.shape[2:])} images padded by {padding}"
        )
    return _crop(x, top, left, size, padding, fill)


def _crop(x: Tensor, top: Tensor, left: Tensor, size: int, padding: int, fill: float) -> Tensor:
    padded = F.pad(x, (padding,) * 4, value=fill)
    batch, channels, _, width = padded.shape
    steps = torch.arange(size, device=x.device)
    rows = (top.to(x.device)[:, None] + steps).view(batch, 1, size, 1)
    out = padded.gather(2, rows.expand(batch, channels, size, width))  # (B, C, size, W + 2p)
    cols = (left.to(x.device)[:, None] + steps).view(batch, 1, 1, size)
    return out.gather(3, cols.expand(batch, channels, size, size))


def hflip(x: Tensor) -> Tensor:
    """Mirror every example left-right (along its last axis, the width of an image)."""
    return x.flip(-1)


class RandomCrop(_Parametric):
    """Random crop of zero-padded images, the standard CIFAR augmentation.

    Each image ``(C, H, W)`` is padded by ``padding`` pixels on every side and a
    ``size × size`` window is taken at an offset drawn uniformly from the
    ``(H + 2·padding − size + 1) × (W + 2·padding − size + 1)`` possible ones, so with the
    defaults a 32×32 image is shifted by −4..4 pixels along each axis. Padded pixels are
    ``fill`` in the *standardised* space, i.e. the mean colour; torchvision's
    ``RandomCrop(32, padding=4)`` before ``Normalize`` pads with black pixels instead.

    Args:
        size: side of the square crop; None keeps the input's own (square) size, which a
            network built for the input shape needs.
        padding: pixels added on each side before cropping.
        fill: value of the padded pixels.

    Parameters: the offsets (top, left) of the window in the padded image.
    """

    num_params = 2

    def __init__(
        self, *, size: int | None = None, padding: int = CIFAR_CROP_PADDING, fill: float = 0.0
    ) -> None:
        if padding < 0:
            raise ConfigError(f"padding must be >= 0, got {padding}")
        if size is not None and size < 1:
            raise ConfigError(f"crop size must be >= 1 (or None for the input size), got {size}")
        self.size, self.padding, self.fill = size, padding, fill

    def _size(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(crop size, vertical span, horizontal span) for images of ``input_shape``."""
        if len(input_shape) != 3:
            raise ConfigError(
                f"augmentation 'random_crop' works on image batches (B, C, H, W), got "
                f"inputs of shape {tuple(input_shape)}; for 1-D signals use 'shift'"
            )
        height, width = input_shape[1], input_shape[2]
        if self.size is None and height != width:
            raise ConfigError(
                f"random_crop with size=None needs square images, got {height}×{width}; "
                "give size explicitly"
            )
        size = height if self.size is None else self.size
        span_h, span_w = height + 2 * self.padding - size, width + 2 * self.padding - size
        if span_h < 0 or span_w < 0:
            raise ConfigError(
                f"crop size {size} exceeds the padded image size "
                f"{height + 2 * self.padding}×{width + 2 * self.padding}"
            )
        return size, span_h, span_w

    def sample(self, n: int, generator: torch.Generator, input_shape: tuple[int, ...]) -> Tensor:
        _, span_h, span_w = self._size(input_shape)
        top = torch.randint(0, span_h + 1, (n,), generator=generator, device=generator.device)
        left = torch.randint(0, span_w + 1, (n,), generator=generator, device=generator.device)
        return torch.stack([top, left], 1).cpu()

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        _require_images(x, "random_crop")
        size, _, _ = self._size(tuple(x.shape[1:]))
        return _crop(x, params[:, 0], params[:, 1], size, self.padding, self.fill)


class RandomHorizontalFlip(_Parametric):
    """Mirror each example left-right with probability ``p``, independently.

    Not for digits or text (SVHN, MNIST): a mirrored digit is not the same digit, so by
    convention SVHN is trained with `RandomCrop` alone (or no augmentation).
    Parameters: 1 to flip, 0 not to.
    """

    num_params = 1

    def __init__(self, *, p: float = FLIP_PROBABILITY) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"flip probability p must lie in [0, 1], got {p}")
        self.p = p

    def sample(self, n: int, generator: torch.Generator, input_shape: tuple[int, ...]) -> Tensor:
        draws = torch.rand(n, generator=generator, device=generator.device)
        return (draws < self.p).long().cpu()[:, None]

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        flip = params[:, 0].bool().to(x.device).view(-1, *([1] * (x.ndim - 1)))
        return torch.where(flip, hflip(x), x)


class Compose:
    """Apply augmentations in order; parametric when every step is."""

    def __init__(self, steps: Sequence[Augmentation]) -> None:
        self.steps = list(steps)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        for step in self.steps:
            x = step(x, generator)
        return x

    @property
    def num_params(self) -> int:
        return sum(getattr(step, "num_params", 0) for step in self.steps)

    def _parametric(self) -> list[ParametricAugmentation]:
        steps = [s for s in self.steps if isinstance(s, ParametricAugmentation)]
        if len(steps) != len(self.steps):
            names = [type(s).__name__ for s in self.steps if s not in steps]
            raise ConfigError(
                f"augmentations {names} are not parametric (their randomness cannot be "
                "stored), so their views cannot be cached; use teacher_cache: none"
            )
        return steps

    def sample(self, n: int, generator: torch.Generator, input_shape: tuple[int, ...]) -> Tensor:
        parts, shape = [], tuple(input_shape)
        for step in self._parametric():
            parts.append(step.sample(n, generator, shape))
            shape = _output_shape(step, shape)
        return torch.cat(parts, 1) if parts else torch.zeros(n, 0, dtype=torch.long, device="cpu")

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        start = 0
        for step in self._parametric():
            x = step.apply(x, params[:, start : start + step.num_params])
            start += step.num_params
        return x


def is_parametric(augment: Augmentation) -> bool:
    """Whether ``augment``'s randomness can be stored (see `ParametricAugmentation`)."""
    if isinstance(augment, Compose):
        return all(isinstance(s, ParametricAugmentation) for s in augment.steps)
    return isinstance(augment, ParametricAugmentation)


def _output_shape(step: ParametricAugmentation, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of one example after ``step`` (a crop may change it)."""
    if isinstance(step, RandomCrop):
        size, _, _ = step._size(shape)
        return (shape[0], size, size)
    return shape


def cifar_augmentation(
    *, padding: int = CIFAR_CROP_PADDING, flip_p: float = FLIP_PROBABILITY, fill: float = 0.0
) -> Compose:
    """The standard CIFAR augmentation: random crop (zero padding 4), then horizontal flip.

    The crop is `RandomCrop` to the input size, the flip `RandomHorizontalFlip` with
    probability 0.5 (He et al. 2016, Sec. 4.2).

    For SVHN use ``random_crop`` alone: digits are not mirror-symmetric.

    Args:
        padding: pixels padded on each side before the crop (`RandomCrop`).
        flip_p: probability of a left-right flip (`RandomHorizontalFlip`).
        fill: value of the padded pixels in standardised space (0 = the mean colour).
    """
    return Compose([RandomCrop(padding=padding, fill=fill), RandomHorizontalFlip(p=flip_p)])


def _require_images(x: Tensor, name: str) -> None:
    if x.ndim != 4:
        raise ConfigError(
            f"augmentation '{name}' works on image batches (B, C, H, W), got shape "
            f"{tuple(x.shape)}; for 1-D signals use 'shift'"
        )


# tag `parametric`: the augmentation's randomness can be stored (teacher view caches)
AUGMENTATIONS.register("shift", parametric=True)(RandomShift)
AUGMENTATIONS.register("noise", parametric=False)(GaussianNoise)
AUGMENTATIONS.register("random_crop", parametric=True)(RandomCrop)
AUGMENTATIONS.register("hflip", parametric=True)(RandomHorizontalFlip)
AUGMENTATIONS.register("cifar", parametric=True)(cifar_augmentation)

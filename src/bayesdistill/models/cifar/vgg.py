"""VGG with batch norm for CIFAR (Simonyan & Zisserman, ICLR 2015), as in RepDistiller.

Five stages of 3x3 conv-BN-ReLU layers at widths 64, 128, 256, 512, 512; 2x2 max-pools
after the first three stages (and after the fourth for inputs of 64 pixels or more, as
RepDistiller does for 64x64 images), then global average pooling and one linear layer: the
fully connected layers of the ImageNet VGG are dropped. This is the variant of the KD
benchmarks (CRD, Tian et al., ICLR 2020; mdistiller); VGG-8 has one conv per stage.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from bayesdistill.errors import ConfigError
from bayesdistill.models.cifar._common import PooledConvNet, check_dropout, image_shape

STAGE_WIDTHS = (64, 128, 256, 512, 512)
CONVS_PER_STAGE: dict[int, tuple[int, int, int, int, int]] = {
    8: (1, 1, 1, 1, 1),
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}
"""VGG configurations A (11), B (13), D (16), E (19) of Simonyan & Zisserman and RepDistiller's
VGG-8 ("S"). Depths keep the ImageNet count, conv layers + 3 FC layers (VGG-8: 5 + 3), although
two of the FC layers are dropped here."""
ALWAYS_POOLED_STAGES = 3
LARGE_INPUT = 64
"""Inputs at least this many pixels high and wide are also max-pooled after stage 4."""


def conv_relu(in_channels: int, out_channels: int, batch_norm: bool) -> list[nn.Module]:
    """3x3 conv (→ BN) → ReLU. The conv keeps its bias even before BN, as in RepDistiller."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return layers


class VGG(PooledConvNet):
    """VGG-8/11/13/16/19, CIFAR variant without FC layers (Simonyan & Zisserman, ICLR 2015).

    ``batch_norm=False`` gives the plain VGG (RepDistiller's ``vgg8`` as opposed to
    ``vgg8_bn``). Features: the globally pooled last stage, ``(B, 512)``. Inputs need at
    least 8x8 pixels.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        depth: Literal[8, 11, 13, 16, 19] = 13,
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, height, width = image_shape("vgg", input_shape)
        check_dropout(dropout)
        if depth not in CONVS_PER_STAGE:
            raise ConfigError(f"vgg depth must be one of {sorted(CONVS_PER_STAGE)}, got {depth}")
        smallest = 2**ALWAYS_POOLED_STAGES
        if min(height, width) < smallest:
            raise ConfigError(
                f"vgg max-pools {ALWAYS_POOLED_STAGES} times and needs images of at least "
                f"{smallest}x{smallest} pixels, got {height}x{width}"
            )
        pooled_stages = ALWAYS_POOLED_STAGES + (min(height, width) >= LARGE_INPUT)
        layers: list[nn.Module] = []
        in_ch = channels
        for stage, (out_ch, convs) in enumerate(
            zip(STAGE_WIDTHS, CONVS_PER_STAGE[depth], strict=True)
        ):
            for _ in range(convs):
                layers += conv_relu(in_ch, out_ch, batch_norm)
                in_ch = out_ch
            if stage < pooled_stages:
                layers.append(nn.MaxPool2d(2))
        self._finish(nn.Sequential(*layers), in_ch, num_classes, dropout)


def vgg8(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> VGG:
    """VGG-8 with BN, CIFAR variant (Simonyan & Zisserman, ICLR 2015), 3.97M params for 100 classes."""
    return VGG(input_shape, num_classes, depth=8, dropout=dropout)


def vgg13(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> VGG:
    """VGG-13 with BN, CIFAR variant (Simonyan & Zisserman, ICLR 2015), 9.46M params for 100 classes."""
    return VGG(input_shape, num_classes, depth=13, dropout=dropout)

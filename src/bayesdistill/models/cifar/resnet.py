"""CIFAR ResNets of depth 6n + 2 (He et al., "Deep Residual Learning", CVPR 2016, §4.2).

A 3x3 stem, then three stages of n basic blocks at 32x32, 16x16 and 8x8 (for 32x32 inputs),
global average pooling and a linear head. As in the KD benchmarks (RepDistiller, the code
of CRD, Tian et al., ICLR 2020; mdistiller) the shortcut that changes shape is a 1x1
convolution with batch norm (He et al.'s option B); the paper's own CIFAR networks use the
parameter-free option A (subsample and zero-pad), available as ``shortcut="zero_pad"``. The
"x4" variants widen the stem and the stages to 32-64-128-256.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.models.cifar._common import (
    PooledConvNet,
    check_dropout,
    conv_bn,
    image_shape,
)

CIFAR_WIDTHS = (16, 16, 32, 64)
"""Stem width and the widths of the three stages, of He et al.'s CIFAR ResNets."""
CIFAR_WIDTHS_X4 = (32, 64, 128, 256)
"""The 4x-wide widths of resnet8x4 / resnet32x4 (RepDistiller)."""
STAGE_STRIDES = (1, 2, 2)


Shortcut = Literal["projection", "zero_pad"]


class BasicBlock(nn.Module):
    """``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))`` (He et al., CVPR 2016).

    The shortcut is the identity where shapes agree, else a strided 1x1 convolution with
    batch norm (``"projection"``, option B) or a subsampled, zero-padded identity
    (``"zero_pad"``, option A). ``(B, in_channels, H, W)`` → ``(B, out_channels, H / stride,
    W / stride)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        shortcut: Shortcut = "projection",
    ) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            conv_bn(in_channels, out_channels, 3, stride),
            conv_bn(out_channels, out_channels, 3, relu=False),
        )
        if shortcut == "zero_pad" and (stride != 1 or in_channels != out_channels):
            self.shortcut: nn.Module = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = projection(in_channels, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity where shapes agree, else a strided 1x1 conv + BN (option B)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return conv_bn(in_channels, out_channels, 1, stride, relu=False)


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. (2016): keep every ``stride``-th pixel, append zero channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ConfigError(
                f"a zero-padding shortcut cannot shrink {in_channels} channels to {out_channels}"
            )
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        # F.pad's last pair pads the channel dimension of (B, C, H, W)
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra_channels))


class CifarResNet(PooledConvNet):
    """CIFAR ResNet of depth 6n + 2 (He et al., CVPR 2016), 1x1-conv or zero-pad shortcuts.

    ``depth`` = 6n + 2 (n basic blocks per stage); ``widths`` = (stem, stage 1, stage 2,
    stage 3); ``shortcut`` = ``"projection"`` (1x1 conv + BN, the benchmarks' choice) or
    ``"zero_pad"`` (He et al.'s parameter-free option A). Features are the pooled output of
    the last stage, ``(B, widths[3])``.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        depth: int = 20,
        widths: tuple[int, int, int, int] = CIFAR_WIDTHS,
        shortcut: Shortcut = "projection",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, _, _ = image_shape("cifar_resnet", input_shape)
        check_dropout(dropout)
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ConfigError(
                f"cifar_resnet depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), "
                f"got {depth}"
            )
        if len(widths) != 4 or any(w < 1 for w in widths):
            raise ConfigError(f"widths must be 4 positive ints (stem, 3 stages), got {widths}")
        if shortcut not in ("projection", "zero_pad"):
            raise ConfigError(f"shortcut must be 'projection' or 'zero_pad', got {shortcut!r}")
        blocks_per_stage = (depth - 2) // 6
        layers: list[nn.Module] = [conv_bn(channels, widths[0], 3)]
        in_ch = widths[0]
        for out_ch, stride in zip(widths[1:], STAGE_STRIDES, strict=True):
            stage = []
            for i in range(blocks_per_stage):
                stage.append(BasicBlock(in_ch, out_ch, stride if i == 0 else 1, shortcut))
                in_ch = out_ch
            layers.append(nn.Sequential(*stage))
        self._finish(nn.Sequential(*layers), in_ch, num_classes, dropout)


# The named variants of the KD benchmarks. Parameter counts are for 100 classes.


def resnet8(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> CifarResNet:
    """CIFAR ResNet-8 (He et al., CVPR 2016), 0.08M params for 100 classes."""
    return CifarResNet(input_shape, num_classes, depth=8, dropout=dropout)


def resnet14(
    input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0
) -> CifarResNet:
    """CIFAR ResNet-14 (He et al., CVPR 2016), 0.18M params for 100 classes."""
    return CifarResNet(input_shape, num_classes, depth=14, dropout=dropout)


def resnet20(
    input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0
) -> CifarResNet:
    """CIFAR ResNet-20 (He et al., CVPR 2016), 0.28M params for 100 classes."""
    return CifarResNet(input_shape, num_classes, depth=20, dropout=dropout)


def resnet32(
    input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0
) -> CifarResNet:
    """CIFAR ResNet-32 (He et al., CVPR 2016), 0.47M params for 100 classes."""
    return CifarResNet(input_shape, num_classes, depth=32, dropout=dropout)


def resnet44(
    input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0
) -> CifarResNet:
    """CIFAR ResNet-44 (He et al., CVPR 2016), 0.67M params for 100 classes."""
    return CifarResNet(input_shape, num_classes, depth=44, dropout=dropout)


def resnet56(
    input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0
) -> CifarResNet:
    """CIFAR ResNet-56 (He et al., CVPR 2016), 0.86M params for 100 classes."""
    return CifarResNet(input_shape, num_classes, depth=56, dropout=dropout)


def resnet110(
    input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0
) -> CifarResNet:
    """CIFAR ResNet-110 (He et al., CVPR 2016), 1.74M params for 100 classes."""
    return CifarResNet(input_shape, num_classes, depth=110, dropout=dropout)


def resnet8x4(
    input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0
) -> CifarResNet:
    """CIFAR ResNet-8, 4x wide (Tian et al., ICLR 2020), 1.23M params for 100 classes."""
    return CifarResNet(input_shape, num_classes, depth=8, widths=CIFAR_WIDTHS_X4, dropout=dropout)


def resnet32x4(
    input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0
) -> CifarResNet:
    """CIFAR ResNet-32, 4x wide (Tian et al., ICLR 2020), 7.43M params for 100 classes."""
    return CifarResNet(input_shape, num_classes, depth=32, widths=CIFAR_WIDTHS_X4, dropout=dropout)

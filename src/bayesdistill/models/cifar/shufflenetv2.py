"""ShuffleNet V2 (Ma et al., "Practical Guidelines for Efficient CNN Architecture Design", ECCV 2018).

CIFAR variant of the KD benchmarks (RepDistiller, the code of CRD, Tian et al., ICLR 2020;
mdistiller): the 3x3 stride-2 stem and the max-pool become one 1x1 convolution to 24
channels, so a 32x32 image reaches 4x4 after the three stages. Each stage is a stride-2
unit followed by stride-1 units (4, 8, 4 units in all, the paper's Table 5), then a 1x1
convolution to 1024 channels (2048 at 2x), global average pooling and a linear head.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.models.cifar._common import (
    PooledConvNet,
    channel_shuffle,
    check_dropout,
    conv_bn,
    image_shape,
)

STEM_WIDTH = 24
SHUFFLE_GROUPS = 2
UNITS_PER_STAGE = (4, 8, 4)
WIDTHS: dict[float, tuple[int, int, int, int]] = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}
"""Stage widths and last conv width per width multiplier (Ma et al., 2018, Table 5)."""


def branch(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """1x1 conv-BN-ReLU → 3x3 depthwise conv-BN (strided) → 1x1 conv-BN-ReLU."""
    return nn.Sequential(
        conv_bn(in_channels, out_channels, 1),
        conv_bn(out_channels, out_channels, 3, stride, groups=out_channels, relu=False),
        conv_bn(out_channels, out_channels, 1),
    )


class BasicUnit(nn.Module):
    """Stride-1 unit: split channels in half, transform one half, concatenate, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.half = channels // 2
        self.branch = branch(channels - self.half, channels - self.half, 1)

    def forward(self, x: Tensor) -> Tensor:
        kept, transformed = x[:, : self.half], x[:, self.half :]
        out = torch.cat([kept, self.branch(transformed)], dim=1)
        return channel_shuffle(out, SHUFFLE_GROUPS)


class DownUnit(nn.Module):
    """Stride-2 unit: two branches on the whole input, each to half the output width.

    Left: 3x3 depthwise conv-BN (stride 2) → 1x1 conv-BN-ReLU. Right: `branch`. Then
    concatenate and shuffle: ``(B, in, H, W)`` → ``(B, out, H / 2, W / 2)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        half = out_channels // 2
        self.left = nn.Sequential(
            conv_bn(in_channels, in_channels, 3, 2, groups=in_channels, relu=False),
            conv_bn(in_channels, half, 1),
        )
        self.right = branch(in_channels, out_channels - half, 2)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat([self.left(x), self.right(x)], dim=1)
        return channel_shuffle(out, SHUFFLE_GROUPS)


class ShuffleNetV2(PooledConvNet):
    """ShuffleNet V2 1x, CIFAR variant (Ma et al., ECCV 2018), 1.36M params for 100 classes.

    Features: the pooled output of the last 1x1 convolution, ``(B, 1024)`` (2048 at 2x).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        width_mult: Literal[0.5, 1.0, 1.5, 2.0] = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, _, _ = image_shape("shufflenetv2", input_shape)
        check_dropout(dropout)
        if width_mult not in WIDTHS:
            raise ConfigError(
                f"shufflenetv2 width_mult must be one of {sorted(WIDTHS)}, got {width_mult}"
            )
        *stage_widths, last = WIDTHS[width_mult]
        layers: list[nn.Module] = [conv_bn(channels, STEM_WIDTH, 1)]
        in_ch = STEM_WIDTH
        for width, units in zip(stage_widths, UNITS_PER_STAGE, strict=True):
            stage: list[nn.Module] = [DownUnit(in_ch, width)]
            stage += [BasicUnit(width) for _ in range(units - 1)]
            layers.append(nn.Sequential(*stage))
            in_ch = width
        layers.append(conv_bn(in_ch, last, 1))
        self._finish(nn.Sequential(*layers), last, num_classes, dropout)

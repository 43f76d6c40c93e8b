"""ImageNet-style ResNet-18/34/50/101/152 (He et al., CVPR 2016, Table 1) with a CIFAR stem.

Four stages of basic (18, 34) or bottleneck (50+) blocks at widths 64-128-256-512 (x4 for
bottlenecks); for 32x32 images the 7x7 stride-2 stem and the max-pool are replaced by one
3x3 stride-1 convolution, as in RepDistiller (the code of CRD, Tian et al., ICLR 2020) and
mdistiller. Shortcuts that change shape are 1x1 convolutions with batch norm.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.models.cifar._common import (
    PooledConvNet,
    check_dropout,
    conv_bn,
    image_shape,
)
from bayesdistill.models.cifar.resnet import BasicBlock, projection

STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
BOTTLENECK_EXPANSION = 4

BLOCKS_PER_STAGE: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
"""He et al., CVPR 2016, Table 1; depths 50 and up use bottleneck blocks."""


class Bottleneck(nn.Module):
    """1x1 reduce → 3x3 (strided) → 1x1 expand (x4), plus shortcut, then ReLU (He et al., 2016).

    ``(B, in_channels, H, W)`` → ``(B, 4 * width, H / stride, W / stride)``.
    """

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = BOTTLENECK_EXPANSION * width
        self.residual = nn.Sequential(
            conv_bn(in_channels, width, 1),
            conv_bn(width, width, 3, stride),
            conv_bn(width, out_channels, 1, relu=False),
        )
        self.shortcut = projection(in_channels, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class ResNet(PooledConvNet):
    """ResNet-18/34/50/101/152 with a CIFAR stem: 3x3 conv, no max-pool (He et al., CVPR 2016).

    Features are the pooled output of the last stage: ``(B, 512)`` for depths 18 and 34,
    ``(B, 2048)`` for bottleneck depths.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        depth: Literal[18, 34, 50, 101, 152] = 18,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, _, _ = image_shape("resnet", input_shape)
        check_dropout(dropout)
        if depth not in BLOCKS_PER_STAGE:
            raise ConfigError(
                f"resnet depth must be one of {sorted(BLOCKS_PER_STAGE)}, got {depth}; "
                "for CIFAR ResNets of depth 6n + 2 use 'cifar_resnet'"
            )
        bottleneck = depth >= 50
        stem = STAGE_WIDTHS[0]
        layers: list[nn.Module] = [conv_bn(channels, stem, 3)]
        in_ch = stem
        for width, stride, count in zip(
            STAGE_WIDTHS, STAGE_STRIDES, BLOCKS_PER_STAGE[depth], strict=True
        ):
            stage: list[nn.Module] = []
            for i in range(count):
                s = stride if i == 0 else 1
                if bottleneck:
                    stage.append(Bottleneck(in_ch, width, s))
                    in_ch = BOTTLENECK_EXPANSION * width
                else:
                    stage.append(BasicBlock(in_ch, width, s))
                    in_ch = width
            layers.append(nn.Sequential(*stage))
        self._finish(nn.Sequential(*layers), in_ch, num_classes, dropout)


def resnet18(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> ResNet:
    """ResNet-18 with a CIFAR stem (He et al., CVPR 2016), 11.22M params for 100 classes."""
    return ResNet(input_shape, num_classes, depth=18, dropout=dropout)


def resnet34(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> ResNet:
    """ResNet-34 with a CIFAR stem (He et al., CVPR 2016), 21.33M params for 100 classes."""
    return ResNet(input_shape, num_classes, depth=34, dropout=dropout)


def resnet50(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> ResNet:
    """ResNet-50 with a CIFAR stem (He et al., CVPR 2016), 23.71M params for 100 classes."""
    return ResNet(input_shape, num_classes, depth=50, dropout=dropout)

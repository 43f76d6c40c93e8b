"""ShuffleNet V1 with g = 3 groups (Zhang et al., "ShuffleNet", CVPR 2018), CIFAR variant.

Stage widths 240-480-960 and 4-8-4 units (the paper's Table 1 for g = 3). As in the KD
benchmarks (RepDistiller, the code of CRD, Tian et al., ICLR 2020; mdistiller) the 3x3
stride-2 stem and the max-pool become one 1x1 convolution to 24 channels, so a 32x32 image
reaches 4x4 after the three stages, and a unit's bottleneck width is a quarter of its
residual branch's output (in a stride-2 unit: of the stage width minus the concatenated input).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bayesdistill.models.cifar._common import (
    PooledConvNet,
    channel_shuffle,
    check_dropout,
    conv_bn,
    image_shape,
)

GROUPS = 3
STEM_WIDTH = 24
STAGE_WIDTHS = (240, 480, 960)
UNITS_PER_STAGE = (4, 8, 4)
BOTTLENECK_RATIO = 4


class ShuffleUnit(nn.Module):
    """ShuffleNet unit: 1x1 group conv → channel shuffle → 3x3 depthwise → 1x1 group conv (+ BN each).

    Stride 1: ``relu(branch(x) + x)``. Stride 2: ``relu(cat(branch(x), avgpool3x3(x)))``,
    so the output has ``branch_channels + in_channels`` channels at half the resolution.
    The first 1x1 convolution is not grouped when its input is the narrow stem.
    """

    def __init__(
        self, in_channels: int, branch_channels: int, stride: int, groups: int, group_input: bool
    ) -> None:
        super().__init__()
        mid = branch_channels // BOTTLENECK_RATIO
        self.input_groups = groups if group_input else 1
        self.stride = stride
        self.reduce = conv_bn(in_channels, mid, 1, groups=self.input_groups)
        # ReLU after the depthwise conv as in the benchmarks' code (the paper has none there)
        self.depthwise = conv_bn(mid, mid, 3, stride, groups=mid)
        self.expand = conv_bn(mid, branch_channels, 1, groups=groups, relu=False)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = channel_shuffle(self.reduce(x), self.input_groups)
        out = self.expand(self.depthwise(out))
        if self.stride == 2:
            return self.relu(torch.cat([out, self.shortcut(x)], dim=1))
        return self.relu(out + x)


class ShuffleNetV1(PooledConvNet):
    """ShuffleNet V1 g=3, CIFAR variant (Zhang et al., CVPR 2018), 0.95M params for 100 classes.

    Features: the pooled output of the last stage, ``(B, 960)``.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, _, _ = image_shape("shufflenetv1", input_shape)
        check_dropout(dropout)
        layers: list[nn.Module] = [conv_bn(channels, STEM_WIDTH, 1)]
        in_ch = STEM_WIDTH
        for index, (width, units) in enumerate(zip(STAGE_WIDTHS, UNITS_PER_STAGE, strict=True)):
            # a stride-2 unit concatenates its input, so its branch adds width - in_ch channels
            stage = [ShuffleUnit(in_ch, width - in_ch, 2, GROUPS, group_input=index > 0)]
            stage += [
                ShuffleUnit(width, width, 1, GROUPS, group_input=True) for _ in range(units - 1)
            ]
            layers.append(nn.Sequential(*stage))
            in_ch = width
        self._finish(nn.Sequential(*layers), in_ch, num_classes, dropout)

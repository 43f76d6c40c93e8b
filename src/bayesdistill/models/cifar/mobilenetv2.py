"""MobileNetV2 (Sandler et al., "Inverted Residuals and Linear Bottlenecks", CVPR 2018), CIFAR variant.

The variant of the KD benchmarks (RepDistiller, the code of CRD, Tian et al., ICLR 2020;
mdistiller; taken there from Jin et al., "Route Constrained Optimization", ICCV 2019): width
multiplier 0.5, expansion 6, the paper's stage table with the second stage's stride set to 1
(so a 32x32 image ends at 2x2), ReLU instead of ReLU6, and an expanding 1x1 convolution in
every block, also in the first one whose expansion factor is 1 (the paper skips it there).
"""

from __future__ import annotations

from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.models.cifar._common import (
    PooledConvNet,
    check_dropout,
    conv_bn,
    image_shape,
)

STEM_WIDTH = 32
STEM_STRIDE = 2
LAST_WIDTH = 1280
FIRST_STAGE = (1, 16, 1, 1)
"""(expansion t, width c, blocks n, stride s) of the first stage, which never expands."""
LATER_STAGES = (
    (24, 2, 1),  # stride 2 in the paper; the CIFAR variant stays at 16x16 for 32x32 images
    (32, 3, 2),
    (64, 4, 2),
    (96, 3, 1),
    (160, 3, 2),
    (320, 1, 1),
)
"""(width c, blocks n, stride s) of the stages that expand by the ``expansion`` option."""


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU) → 3x3 depthwise (ReLU) → 1x1 linear projection, + x if shapes agree.

    ``(B, in_channels, H, W)`` → ``(B, out_channels, H / stride, W / stride)`` (Sandler et
    al., 2018), with ReLU rather than ReLU6 as in the KD benchmarks' variant.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.block = nn.Sequential(
            conv_bn(in_channels, hidden, 1),
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            conv_bn(hidden, out_channels, 1, relu=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2(PooledConvNet):
    """MobileNetV2 x0.5, CIFAR variant (Sandler et al., CVPR 2018), 0.81M params for 100 classes.

    Features: the pooled output of the last 1x1 convolution, ``(B, 1280)`` (wider for
    ``width_mult`` > 1, as in the paper).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        width_mult: float = 0.5,
        expansion: int = 6,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, _, _ = image_shape("mobilenetv2", input_shape)
        check_dropout(dropout)
        if width_mult <= 0:
            raise ConfigError(f"width_mult must be positive, got {width_mult}")
        if expansion < 1:
            raise ConfigError(f"expansion must be a positive int, got {expansion}")
        stem = max(1, int(STEM_WIDTH * width_mult))
        layers: list[nn.Module] = [conv_bn(channels, stem, 3, STEM_STRIDE)]
        in_ch = stem
        stages = [FIRST_STAGE, *((expansion, c, n, s) for c, n, s in LATER_STAGES)]
        for t, c, n, s in stages:
            out_ch = max(1, int(c * width_mult))
            stage = []
            for i in range(n):
                stage.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
            layers.append(nn.Sequential(*stage))
        last = int(LAST_WIDTH * width_mult) if width_mult > 1.0 else LAST_WIDTH
        layers.append(conv_bn(in_ch, last, 1))
        self._finish(nn.Sequential(*layers), last, num_classes, dropout)

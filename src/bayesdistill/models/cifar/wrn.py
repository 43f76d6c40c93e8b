"""Wide residual networks WRN-d-k (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016).

A 3x3 stem of 16 channels, then three stages of n = (d - 4) / 6 pre-activation blocks of
widths 16k, 32k, 64k (strides 1, 2, 2), a final BN-ReLU, global average pooling and a linear
head. Shortcuts that change shape are plain 1x1 convolutions applied to the pre-activated
input, as in the authors' code and in RepDistiller (CRD, Tian et al., ICLR 2020).
"""

from __future__ import annotations

from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.models.cifar._common import PooledConvNet, check_dropout, image_shape

STEM_WIDTH = 16
STAGE_WIDTHS = (16, 32, 64)
STAGE_STRIDES = (1, 2, 2)


class PreActBlock(nn.Module):
    """``conv3x3(dropout(relu(bn(conv3x3(relu(bn(x))))))) + shortcut`` (He et al., ECCV 2016).

    The shortcut is ``x`` when shapes agree, else a strided 1x1 conv of ``relu(bn(x))``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, block_dropout: float
    ) -> None:
        super().__init__()
        self.preact = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(block_dropout) if block_dropout > 0 else nn.Identity(),
            nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False),
        )
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = self.preact(x)
        skip = x if self.shortcut is None else self.shortcut(activated)
        return self.residual(activated) + skip


class WideResNet(PooledConvNet):
    """Wide ResNet WRN-depth-widen_factor (Zagoruyko & Komodakis, BMVC 2016).

    ``depth`` = 6n + 4; ``block_dropout`` is the paper's dropout between the two convolutions
    of each block, ``dropout`` the one before the head. Features: ``(B, 64 * widen_factor)``.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        depth: int = 16,
        widen_factor: int = 2,
        block_dropout: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels, _, _ = image_shape("wrn", input_shape)
        check_dropout(dropout)
        if not 0.0 <= block_dropout < 1.0:
            raise ConfigError(f"block_dropout must lie in [0, 1), got {block_dropout}")
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ConfigError(
                f"wrn depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}"
            )
        if widen_factor < 1:
            raise ConfigError(f"widen_factor must be a positive int, got {widen_factor}")
        blocks_per_stage = (depth - 4) // 6
        layers: list[nn.Module] = [nn.Conv2d(channels, STEM_WIDTH, 3, 1, padding=1, bias=False)]
        in_ch = STEM_WIDTH
        for width, stride in zip(STAGE_WIDTHS, STAGE_STRIDES, strict=True):
            out_ch = width * widen_factor
            stage = []
            for i in range(blocks_per_stage):
                stage.append(PreActBlock(in_ch, out_ch, stride if i == 0 else 1, block_dropout))
                in_ch = out_ch
            layers.append(nn.Sequential(*stage))
        layers += [nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True)]
        self._finish(nn.Sequential(*layers), in_ch, num_classes, dropout)


def wrn_16_2(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> WideResNet:
    """WRN-16-2 (Zagoruyko & Komodakis, BMVC 2016), 0.70M params for 100 classes."""
    return WideResNet(input_shape, num_classes, depth=16, widen_factor=2, dropout=dropout)


def wrn_40_1(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> WideResNet:
    """WRN-40-1 (Zagoruyko & Komodakis, BMVC 2016), 0.57M params for 100 classes."""
    return WideResNet(input_shape, num_classes, depth=40, widen_factor=1, dropout=dropout)


def wrn_40_2(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> WideResNet:
    """WRN-40-2 (Zagoruyko & Komodakis, BMVC 2016), 2.26M params for 100 classes."""
    return WideResNet(input_shape, num_classes, depth=40, widen_factor=2, dropout=dropout)

"""Pieces shared by the CIFAR zoo: input checks, conv-BN blocks, the pooled head, init."""

from __future__ import annotations

from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.models.base import Classifier


def image_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(channels, height, width)`` from ``input_shape``; a `ConfigError` for anything else."""
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
        raise ConfigError(
            f"{model} is a 2-D convolutional network and needs images of shape "
            f"(channels, height, width), e.g. (3, 32, 32); got input_shape {tuple(input_shape)}. "
            "For flat or 1-D inputs use 'mlp' or 'cnn1d'."
        )
    channels, height, width = (int(d) for d in input_shape)
    return channels, height, width


def check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must lie in [0, 1), got {dropout}")


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    *,
    groups: int = 1,
    relu: bool = True,
) -> nn.Sequential:
    """Conv2d (no bias, 'same' padding) → BatchNorm2d (→ ReLU)."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave ``groups`` channel groups (Zhang et al., CVPR 2018): ``(B, C, H, W)`` in and out.

    Channel ``g * (C // groups) + i`` moves to position ``i * groups + g``.
    """
    batch, channels, height, width = x.shape
    return (
        x.view(batch, groups, channels // groups, height, width)
        .transpose(1, 2)
        .reshape(batch, channels, height, width)
    )


class PooledConvNet(Classifier):
    """``features(x) = dropout(global_avg_pool(body(x)))`` of shape ``(B, D)``; logits ``head(features)``.

    Subclasses build ``body`` (an image ``(B, C, H, W)`` → feature map ``(B, D, h, w)``) and
    call `_finish`. The optional dropout sits just before the linear head, where MC dropout
    (Gal & Ghahramani, ICML 2016) acts on the last layer.
    """

    body: nn.Module

    def _finish(self, body: nn.Module, width: int, num_classes: int, dropout: float) -> None:
        if num_classes < 1:
            raise ConfigError(f"num_classes must be positive, got {num_classes}")
        self.body = body
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(width, num_classes)
        init_weights(self)

    def features(self, x: Tensor) -> Tensor:
        return self.dropout(self.pool(self.body(x)))


def init_weights(model: nn.Module) -> None:
    """He-normal convolutions (fan-out, He et al., ICCV 2015), BN scale 1 and shift 0.

    Linear layers keep PyTorch's default initialisation.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

"""1-D convolutional networks for signals such as MNIST-1D."""

from __future__ import annotations

from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.models.base import Classifier


class CNN1d(Classifier):
    """Strided 1-D CNN (the MNIST-1D baseline of Greydanus 2020, widths configurable).

    Each block is Conv1d(kernel_size, stride, padding=kernel_size // 2) → ReLU (→ dropout);
    the flattened output of the last block, optionally passed through a hidden linear
    layer, forms the penultimate features. Inputs are ``(B, L)`` or ``(B, channels, L)``.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        channels: tuple[int, ...] = (32, 32, 32),
        kernel_size: int = 5,
        stride: int = 2,
        hidden: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) not in (1, 2):
            raise ConfigError(
                f"cnn1d needs inputs of shape (L,) or (channels, L), got {input_shape}"
            )
        if not channels or any(c < 1 for c in channels):
            raise ConfigError(
                f"channels must be a non-empty tuple of positive ints, got {channels}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got {dropout}")
        in_ch, length = (1, input_shape[0]) if len(input_shape) == 1 else input_shape
        self._add_channel_dim = len(input_shape) == 1
        layers: list[nn.Module] = []
        for out_ch in channels:
            layers += [nn.Conv1d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2)]
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_ch = out_ch
            length = (length + 2 * (kernel_size // 2) - kernel_size) // stride + 1
            if length < 1:
                raise ConfigError(
                    f"input length {input_shape[-1]} is too short for {len(channels)} "
                    f"conv blocks of stride {stride}"
                )
        layers.append(nn.Flatten())
        width = in_ch * length
        if hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x.unsqueeze(1) if self._add_channel_dim else x)

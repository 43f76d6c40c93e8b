"""Fully connected networks (and the linear softmax model)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from bayesdistill.errors import ConfigError
from bayesdistill.models.base import Classifier, flat_size

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLP(Classifier):
    """Multilayer perceptron on flattened inputs: [Linear → activation → dropout]* → Linear.

    The penultimate features are the last hidden layer's activations (the flattened input
    when ``hidden`` is empty, i.e. a linear softmax model).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        hidden: tuple[int, ...] = (128, 128),
        activation: Literal["relu", "gelu", "tanh"] = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got {dropout}")
        if any(h < 1 for h in hidden):
            raise ConfigError(f"hidden widths must be positive, got {hidden}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = flat_size(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


class LinearSoftmax(MLP):
    """Multinomial logistic regression: logits = W x + b (no hidden layer)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(input_shape, num_classes, hidden=())

"""Models: classifiers with accessible penultimate features, registered by name.

``create_model(name, input_shape, num_classes, **options)`` builds a registered model and
attaches its `ModelSpec`, so a saved network can be rebuilt from its file alone.
"""

from __future__ import annotations

from typing import Any

from bayesdistill.models.base import Classifier, ModelSpec
from bayesdistill.models.cnn import CNN1d
from bayesdistill.models.mlp import MLP, LinearSoftmax
from bayesdistill.registry import Registry

MODELS: Registry = Registry("model")
MODELS.register("mlp")(MLP)
MODELS.register("linear")(LinearSoftmax)
MODELS.register("cnn1d")(CNN1d)


def create_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> Classifier:
    """Build a registered model; its `ModelSpec` is attached as ``model.spec``."""
    validated = MODELS.validate_options(name, options)
    model = MODELS.get(name)(tuple(input_shape), num_classes, **validated)
    model.spec = ModelSpec(name, tuple(input_shape), num_classes, validated)
    return model


def build_from_spec(spec: ModelSpec) -> Classifier:
    return create_model(spec.name, spec.input_shape, spec.num_classes, **spec.options)


__all__ = [
    "MLP",
    "MODELS",
    "CNN1d",
    "Classifier",
    "LinearSoftmax",
    "ModelSpec",
    "build_from_spec",
    "create_model",
]

"""Models: classifiers with accessible penultimate features, registered by name.

Besides the small networks (``mlp``, ``linear``, ``cnn1d``) the registry holds the CIFAR
model zoo of the KD benchmarks (`bayesdistill.models.cifar`): ``resnet8`` … ``resnet110``,
``resnet8x4``, ``resnet32x4``, ``resnet18/34/50``, ``wrn_16_2``, ``wrn_40_1``, ``wrn_40_2``,
``vgg8``, ``vgg13``, ``mobilenetv2``, ``shufflenetv1``, ``shufflenetv2`` and the generic
``cifar_resnet``, ``resnet``, ``wrn`` and ``vgg`` with their depth/width options.

``create_model(name, input_shape, num_classes, **options)`` builds a registered model and
attaches its `ModelSpec`, so a saved network can be rebuilt from its file alone.
``load_teacher_checkpoint`` / ``load_weights`` (`bayesdistill.models.checkpoints`) put trained
weights from a file into one, also from the layouts of the mdistiller/RepDistiller zoo.
"""

from __future__ import annotations

from typing import Any

from bayesdistill.models.base import Classifier, ModelSpec
from bayesdistill.models.checkpoints import (
    KeyMapping,
    WeightsMatch,
    load_teacher_checkpoint,
    load_weights,
)
from bayesdistill.models.cifar import ZOO
from bayesdistill.models.cnn import CNN1d
from bayesdistill.models.mlp import MLP, LinearSoftmax
from bayesdistill.registry import Registry

MODELS: Registry = Registry("model")
MODELS.register("mlp")(MLP)
MODELS.register("linear")(LinearSoftmax)
MODELS.register("cnn1d")(CNN1d)
for _name, _factory in ZOO.items():
    MODELS.register(_name)(_factory)


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
    "KeyMapping",
    "LinearSoftmax",
    "ModelSpec",
    "WeightsMatch",
    "build_from_spec",
    "create_model",
    "load_teacher_checkpoint",
    "load_weights",
]

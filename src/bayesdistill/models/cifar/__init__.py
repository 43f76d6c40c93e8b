"""The CIFAR model zoo of the knowledge-distillation benchmarks.

The architectures and names of RepDistiller (the code of CRD, Tian et al., ICLR 2020) and
mdistiller, written from the papers: CIFAR ResNets, ImageNet-style ResNets with a CIFAR
stem, wide ResNets, VGG with batch norm, MobileNetV2 and ShuffleNet V1/V2. Every model is a
`Classifier` built as ``(input_shape, num_classes, *, options)`` with ``input_shape =
(channels, height, width)`` (any channel count; 32x32 is the reference size), pooled
penultimate features ``(B, D)`` and an optional ``dropout`` before the linear head (for MC
dropout). Parameter counts are checked against the published ones and against exact closed
forms in ``tests/models/test_cifar_param_counts.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from bayesdistill.models.base import Classifier
from bayesdistill.models.cifar.mobilenetv2 import MobileNetV2
from bayesdistill.models.cifar.resnet import (
    CifarResNet,
    resnet8,
    resnet8x4,
    resnet14,
    resnet20,
    resnet32,
    resnet32x4,
    resnet44,
    resnet56,
    resnet110,
)
from bayesdistill.models.cifar.resnet_imagenet_style import ResNet, resnet18, resnet34, resnet50
from bayesdistill.models.cifar.shufflenetv1 import ShuffleNetV1
from bayesdistill.models.cifar.shufflenetv2 import ShuffleNetV2
from bayesdistill.models.cifar.vgg import VGG, vgg8, vgg13
from bayesdistill.models.cifar.wrn import WideResNet, wrn_16_2, wrn_40_1, wrn_40_2

ZOO: dict[str, Callable[..., Classifier]] = {
    # CIFAR ResNets, depth 6n + 2
    "cifar_resnet": CifarResNet,
    "resnet8": resnet8,
    "resnet14": resnet14,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "resnet8x4": resnet8x4,
    "resnet32x4": resnet32x4,
    # ImageNet-style ResNets with a CIFAR stem
    "resnet": ResNet,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    # wide ResNets
    "wrn": WideResNet,
    "wrn_16_2": wrn_16_2,
    "wrn_40_1": wrn_40_1,
    "wrn_40_2": wrn_40_2,
    # VGG with batch norm
    "vgg": VGG,
    "vgg8": vgg8,
    "vgg13": vgg13,
    # mobile networks
    "mobilenetv2": MobileNetV2,
    "shufflenetv1": ShuffleNetV1,
    "shufflenetv2": ShuffleNetV2,
}
"""Registry name → constructor ``(input_shape, num_classes, *, options) -> Classifier``."""

__all__ = [
    "VGG",
    "ZOO",
    "CifarResNet",
    "MobileNetV2",
    "ResNet",
    "ShuffleNetV1",
    "ShuffleNetV2",
    "WideResNet",
]

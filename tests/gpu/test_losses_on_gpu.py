"""Every registered loss, response and feature, on the GPU: the CPU's value and gradient.

The cases come from the registries, so a loss added later is covered without a new test:
each loss at its default options and at a second set (the full-covariance Gaussian
distances, POT's own ``emd2``, an unbiased MMD), on the same random inputs on both devices.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bayesdistill.losses import FEATURE_LOSSES, LOSSES, runtime_inputs

BATCH, CLASSES, FEATURES = 24, 5, 6
RTOL, ATOL = 1e-4, 1e-5
"""float32 on two devices: other kernels and summation orders."""
FEATURE_VARIANTS: dict[str, list[dict[str, Any]]] = {
    "gaussian_kl": [{}, {"covariance": "full"}, {"direction": "teacher_student"}],
    "gaussian_w2": [{}, {"covariance": "full"}],
    "gaussian_w2_class_conditional": [{}, {"covariance": "full"}],
    "mmd": [{}, {"unbiased": True}, {"bandwidths": (0.5, 2.0)}],
    "w2_class_conditional": [{}],
    "w2_empirical": [{}, {"solver": "emd2"}],
    "w2_joint": [{}, {"beta": 1.0}],
}
RESPONSE_VARIANTS: dict[str, list[dict[str, Any]]] = {
    "kd": [{}, {"alpha": 1.0, "temperature": 2.0}],
    "distilled_ranking": [{}, {"use_labels": True}],
}


def _classes(name: str) -> int:
    return 2 if LOSSES.entry(name).tags.get("binary", False) else CLASSES


def _inputs(num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = 2.0 * torch.randn(BATCH, num_classes, generator=gen)
    teacher = torch.softmax(2.0 * torch.randn(BATCH, num_classes, generator=gen), 1)
    labels = torch.arange(BATCH) % num_classes
    return logits, teacher, labels


def _value_and_grad(fn, first: torch.Tensor, *rest: torch.Tensor, device, **options):
    device = torch.device(device)
    leaf = first.to(device).requires_grad_(True)
    value = fn(leaf, *(t.to(device) for t in rest), **options)
    value.backward()
    assert value.device.type == device.type and leaf.grad is not None
    return value.detach().cpu(), leaf.grad.cpu()


def _response_cases() -> list[tuple[str, dict[str, Any]]]:
    return [(n, o) for n in LOSSES.names() for o in RESPONSE_VARIANTS.get(n, [{}])]


def _feature_cases() -> list[tuple[str, dict[str, Any]]]:
    return [(n, o) for n in FEATURE_LOSSES.names() for o in FEATURE_VARIANTS.get(n, [{}])]


@pytest.mark.parametrize(("name", "options"), _response_cases(), ids=str)
def test_response_loss_on_the_gpu(name, options, device):
    logits, teacher, labels = _inputs(_classes(name))
    if "epoch" in runtime_inputs(name):
        options = {**options, "epoch": 0.5}
    fn = LOSSES.get(name)
    value, grad = _value_and_grad(fn, logits, teacher, labels, device=device, **options)
    ref_value, ref_grad = _value_and_grad(fn, logits, teacher, labels, device="cpu", **options)
    assert torch.isfinite(value) and torch.allclose(value, ref_value, rtol=RTOL, atol=ATOL)
    assert torch.allclose(grad, ref_grad, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("name", "options"), _feature_cases(), ids=str)
def test_feature_loss_on_the_gpu(name, options, device):
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(BATCH, FEATURES, generator=gen)
    teacher = 0.5 + torch.randn(BATCH, FEATURES, generator=gen)
    labels = torch.arange(BATCH) % 3
    fn = FEATURE_LOSSES.get(name)
    value, grad = _value_and_grad(fn, student, teacher, labels, device=device, **options)
    ref_value, ref_grad = _value_and_grad(fn, student, teacher, labels, device="cpu", **options)
    assert torch.isfinite(value) and torch.allclose(value, ref_value, rtol=RTOL, atol=ATOL)
    assert torch.allclose(grad, ref_grad, rtol=1e-3, atol=1e-4)


def test_every_registered_loss_has_a_case():
    assert {n for n, _ in _response_cases()} == set(LOSSES.names())
    assert {n for n, _ in _feature_cases()} == set(FEATURE_LOSSES.names())

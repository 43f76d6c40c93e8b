"""Contract of every registered loss of logits that needs a teacher.

Finite value and finite gradients on extreme logits (±1e4), with one-hot teachers (exact
zeros, on the label and off it) and with random teachers, at default options and, for a
loss with the runtime input ``epoch``, at the start of training and mid-warm-up too.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from bayesdistill.errors import ConfigError
from bayesdistill.losses import LOSSES, needs_teacher, runtime_inputs

BATCH = 6
MULTICLASS = 5
EXTREME = 1e4


def _logit_losses_with_teacher() -> list[str]:
    return [
        name
        for name in LOSSES.names()
        if needs_teacher(name)
        and next(iter(inspect.signature(LOSSES.get(name)).parameters)) == "student_logits"
    ]


NAMES = _logit_losses_with_teacher()


def _num_classes(name: str) -> int:
    return 2 if LOSSES.entry(name).tags.get("binary", False) else MULTICLASS


def _teacher(kind: str, targets: torch.Tensor, num_classes: int, dtype: torch.dtype):
    if kind == "one_hot_on_label":
        return F.one_hot(targets, num_classes).to(dtype)
    if kind == "one_hot_off_label":
        return F.one_hot((targets + 1) % num_classes, num_classes).to(dtype)
    gen = torch.Generator().manual_seed(0)
    return torch.softmax(3.0 * torch.randn(len(targets), num_classes, generator=gen), 1).to(dtype)


def _extreme_logits(num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    signs = torch.randint(-1, 2, (BATCH, num_classes), generator=gen)
    signs[0] = 1  # a row of equal extreme logits
    signs[1, 0], signs[1, 1] = 1, -1
    return (EXTREME * signs).to(dtype).requires_grad_(True)


def _epochs(name: str) -> list[dict[str, float]]:
    if "epoch" in runtime_inputs(name):
        return [{}, {"epoch": 0.0}, {"epoch": 0.5}]
    return [{}]


CASES = [
    (name, kind, dtype, runtime)
    for name in NAMES
    for kind in ("one_hot_on_label", "one_hot_off_label", "random")
    for dtype in (torch.float32, torch.float64)
    for runtime in _epochs(name)
]


def test_the_new_losses_are_covered():
    expected = {"dkd", "dist", "wttm", "self_distill", "weighted_negatives", "distilled_ranking"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize(("name", "kind", "dtype", "runtime"), CASES)
def test_finite_value_and_gradients_on_extreme_logits(name, kind, dtype, runtime):
    num_classes = _num_classes(name)
    targets = torch.arange(BATCH) % num_classes
    logits = _extreme_logits(num_classes, dtype)
    teacher = _teacher(kind, targets, num_classes, dtype)
    value = LOSSES.get(name)(logits, teacher, targets, **runtime)
    assert value.ndim == 0
    assert math.isfinite(value.item()), f"{name}: {value.item()}"
    value.backward()
    assert torch.isfinite(logits.grad).all(), f"{name}: {logits.grad}"


@pytest.mark.parametrize("name", NAMES)
def test_finite_gradients_on_ordinary_logits_reach_every_example(name):
    num_classes = _num_classes(name)
    targets = torch.arange(BATCH) % num_classes
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(BATCH, num_classes, generator=gen, dtype=torch.float64)
    logits.requires_grad_(True)
    teacher = _teacher("random", targets, num_classes, torch.float64)
    value = LOSSES.get(name)(logits, teacher, targets)
    value.backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad.abs().sum(1) > 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_defaults_are_valid_options_and_teacher_is_required(name):
    defaults = {o.name: o.default for o in LOSSES.entry(name).options}
    assert all(not o.required for o in LOSSES.entry(name).options)
    assert LOSSES.validate_options(name, defaults) == defaults
    num_classes = _num_classes(name)
    logits = torch.zeros(BATCH, num_classes)
    with pytest.raises(ConfigError, match="needs teacher probabilities"):
        LOSSES.get(name)(logits, None, torch.arange(BATCH) % num_classes)

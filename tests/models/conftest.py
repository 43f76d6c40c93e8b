"""Shared builders for the CIFAR model-zoo tests: each zoo network is built once per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from bayesdistill.models import Classifier, create_model
from bayesdistill.seeding import seeded

CIFAR100 = ((3, 32, 32), 100)


@pytest.fixture(autouse=True, scope="package")
def single_threaded() -> Iterator[None]:
    """Run these tests on one intra-op thread, then restore the setting.

    Batches of two small images gain nothing from threads, and on a loaded machine torch's
    spinning worker threads make each forward pass 10-100x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def cifar100_model() -> Callable[[str], Classifier]:
    """``build(name)``: the registered zoo model for 3x32x32 inputs and 100 classes, in eval mode.

    Cached: tests must not train or modify the returned networks.
    """
    cache: dict[str, Classifier] = {}

    def build(name: str) -> Classifier:
        if name not in cache:
            with seeded(0):
                cache[name] = create_model(name, *CIFAR100).eval()
        return cache[name]

    return build

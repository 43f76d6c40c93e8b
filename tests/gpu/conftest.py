"""tests/gpu: every teacher, loss, cache, precision and executor on a CUDA device.

Each test runs a case on the GPU and, where the two should agree, the same case on the CPU
(teacher probabilities, one-step losses), within float tolerance: TF32 is switched off for
these comparisons (`strict_float32`), so both devices compute in float32.

Without a GPU every test here is skipped, with the reason. ``BAYESDISTILL_GPU_TESTS_DEVICE``
names the device to use instead of ``cuda`` (``cpu``: a dry run of this suite's code on the
CPU, comparing the CPU with itself; `benchmarks/gpu_check.py --device cpu` uses it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

DEVICE_VARIABLE = "BAYESDISTILL_GPU_TESTS_DEVICE"
HERE = Path(__file__).parent
NO_GPU = (
    "no CUDA device here (torch.cuda.is_available() is False): tests/gpu runs on a GPU; "
    f"{DEVICE_VARIABLE}=cpu dry-runs its code on the CPU"
)


def gpu_device() -> torch.device | None:
    """The device these tests run on: ``$BAYESDISTILL_GPU_TESTS_DEVICE``, else ``cuda``
    where there is one, else None (skip)."""
    named = os.environ.get(DEVICE_VARIABLE)
    if named:
        return torch.device(named)
    return torch.device("cuda") if torch.cuda.is_available() else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if gpu_device() is not None:
        return
    skip = pytest.mark.skip(reason=NO_GPU)
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> torch.device:
    found = gpu_device()
    assert found is not None  # collection skipped every test otherwise
    return found


@pytest.fixture(autouse=True)
def strict_float32() -> Iterator[None]:
    """float32 matrix products and convolutions without TF32 (CUDA's default for
    convolutions), so GPU results agree with the CPU's to float32 rounding."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

"""Device names a run may ask for, checked in one place.

A config's ``device``, an executor's ``devices`` and the command line's ``--devices`` name
devices alike: ``auto`` (CUDA where available, else the CPU), ``cpu``, ``cuda`` (the current
GPU), ``cuda:N`` or ``mps``. `check_device` refuses anything else with one message that
names what was given and what is allowed. Whether this machine has the device is asked when
a run starts (`bayesdistill.runner.common.resolve_device`), not here.
"""

from __future__ import annotations

import torch

from bayesdistill.errors import ConfigError

AUTO = "auto"
"""CUDA where it is available, else the CPU."""
DEVICE_TYPES = ("cpu", "cuda", "mps")
ALLOWED = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def check_device(name: str) -> str:
    """``name`` unchanged if a run may ask for it (see the module); else `ConfigError`."""
    if name == AUTO:
        return name
    refused = ConfigError(f"device must be {ALLOWED}, got '{name}'")
    if name.split(":")[0] not in DEVICE_TYPES:
        raise refused
    try:
        torch.device(name)  # the index: cuda:x, cuda:-1, cuda:0:1 are refused here
    except RuntimeError:
        raise refused from None
    return name


def parse_devices(text: str | None) -> list[str]:
    """``"cuda:0,cuda:1"`` → ``["cuda:0", "cuda:1"]``, each checked (`check_device`); None
    or empty → ``["auto"]``."""
    if not text:
        return [AUTO]
    return [check_device(d.strip()) for d in text.split(",") if d.strip()]

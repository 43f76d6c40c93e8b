"""Seeds and generators, without touching global random state behind the caller's back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_MIX = 1_000_003
_MASK = (1 << 63) - 1


def derive_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers, e.g. ``derive_seed(run_seed, epoch)``."""
    seed = 0x5EED
    for part in parts:
        seed = (seed * _MIX + int(part) + 0x9E3779B97F4A7C15) & _MASK
    return seed


def generator(*parts: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A `torch.Generator` on ``device`` seeded with ``derive_seed(*parts)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Run a block with torch's global generator(s) seeded, then restore their state.

    Used to initialise networks reproducibly (``with seeded(3): net = create_model(...)``)
    and around training loops whose layers (dropout) draw from the global generator.
    """
    devices = []
    if device is not None and torch.device(device).type == "cuda":
        devices = [torch.device(device).index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(derive_seed(seed))
        yield

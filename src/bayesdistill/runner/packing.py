"""Several units on one GPU: which unit may start where, by memory, and what a worker measures.

A pool worker runs one unit at a time; several workers may share a device
(``units_per_device``). `DeviceBudget` is the pool's bookkeeping, pure and kept by the
process that hands out the units (it touches no GPU):

- a unit needs ``unit_bytes`` when given, else the largest peak measured so far of the same
  unit in another seed (same kind, same arguments), else of any unit of its kind; nothing
  known: it starts unchecked;
- a unit starts beside others on a device only if its worker finds that much free there,
  plus `HEADROOM_BYTES` (`required`); if not, the worker hands it back (`held`) and the unit
  waits until a unit on that device ends (meanwhile only units known to fit in what was
  measured free start there). A unit never waits for an empty device: alone it starts
  anyway;
- a unit that runs out of GPU memory while others shared its device is rerun once, alone on
  that device, after they end (`out_of_memory`); meanwhile nothing else starts there.

`DeviceMemory` is what a worker measures on its device (free bytes before a unit, the
unit's peak after it); `CudaMemory` measures it with ``torch.cuda`` and measures nothing off
CUDA, where units start unchecked.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass, field
from typing import Protocol

from bayesdistill.runner.graph import Unit

GIB = 1024**3
HEADROOM_BYTES = GIB // 2
"""Free memory a unit needs beyond its estimate: a fresh worker's CUDA context and the
caching allocator's slack."""


def memory_key(unit: Unit) -> tuple[str, str]:
    """Units alike in memory: the same kind with the same arguments (the same unit of
    another seed)."""
    return unit.kind, repr(sorted(unit.args.items()))


def has_room(required: int | None, free: int | None) -> bool:
    """Whether a unit may start where ``free`` bytes are free and it ``required`` that many
    (None for either: nothing to check)."""
    return required is None or free is None or free >= required


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's GPU out-of-memory errors (the allocator's, cuBLAS's, cuDNN's), without
    importing torch."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(
        getattr(torch, "cuda", None), "OutOfMemoryError", None
    )
    if isinstance(oom, type) and isinstance(exc, oom):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "ALLOC_FAILED" in text)


@dataclass
class _Device:
    """What the budget knows of one device."""

    running: dict[str, Unit] = field(default_factory=dict)
    shared: set[str] = field(default_factory=set)
    """Running units that have had company on the device."""
    free: int | None = None
    """Bytes a worker found free when a unit did not fit, less the needs of the units
    started since; None once a unit here ends (memory came back: measure again)."""
    held: set[str] = field(default_factory=set)
    """Units that did not fit; they wait for a unit here to end."""
    retry: Unit | None = None
    """A unit to rerun alone here once the device is empty."""
    alone: str | None = None
    """The rerun running alone here: nothing else starts until it ends."""


class DeviceBudget:
    """Which unit may start on which device of a pool, by memory (see the module).

    Devices are named as the workers' placements name them (``cuda:0``, ``auto``); the
    executor calls `may_start` and `required` before handing a unit to a worker,
    `started` when it does, and `held`, `ended` or `out_of_memory` with the worker's answer.
    """

    def __init__(self, unit_bytes: int | None = None, headroom: int = HEADROOM_BYTES) -> None:
        if unit_bytes is not None and unit_bytes <= 0:
            raise ValueError(f"unit_bytes must be positive, got {unit_bytes}")
        self.unit_bytes = unit_bytes
        self.headroom = headroom
        self._peaks: dict[tuple[str, str], int] = {}
        self._kind_peaks: dict[str, int] = {}
        self._devices: dict[str, _Device] = {}
        self._retried: set[str] = set()

    def _device(self, device: str) -> _Device:
        return self._devices.setdefault(device, _Device())

    def need(self, unit: Unit) -> int | None:
        """The bytes ``unit`` is expected to hold on its device; None: nothing known."""
        if self.unit_bytes is not None:
            return self.unit_bytes
        peak = self._peaks.get(memory_key(unit))
        return peak if peak is not None else self._kind_peaks.get(unit.kind)

    def running_on(self, device: str) -> list[str]:
        """The units running on ``device``."""
        return list(self._device(device).running)

    def may_start(self, unit: Unit, device: str) -> bool:
        """Whether ``unit`` may be handed to an idle worker on ``device`` now."""
        here = self._device(device)
        if here.alone is not None:
            return False
        if here.retry is not None:
            return here.retry.name == unit.name and not here.running
        if any(d.retry is not None and d.retry.name == unit.name for d in self._devices.values()):
            return False  # it reruns where it ran out, alone
        if not here.running:
            return True
        if unit.name in here.held:
            return False
        if here.free is not None:
            need = self.need(unit)
            return need is not None and need + self.headroom <= here.free
        return True

    def required(self, unit: Unit, device: str) -> int | None:
        """The free bytes the worker must find on ``device`` before it starts ``unit``;
        None: start without looking (nothing else runs there, or nothing is known)."""
        if not self._device(device).running:
            return None
        need = self.need(unit)
        return None if need is None else need + self.headroom

    def started(self, unit: Unit, device: str) -> None:
        here = self._device(device)
        here.running[unit.name] = unit
        if len(here.running) > 1:
            here.shared.update(here.running)
        if here.retry is not None and here.retry.name == unit.name:
            here.retry, here.alone = None, unit.name
        if here.free is not None:
            here.free -= self.need(unit) or 0
        for other in self._devices.values():
            other.held.discard(unit.name)

    def held(self, unit: Unit, device: str, free: int) -> None:
        """``unit`` did not fit in the ``free`` bytes its worker found; it waits for a unit
        on ``device`` to end."""
        here = self._device(device)
        self._leave(unit, here)
        if here.running:  # else the device emptied meanwhile, and the unit goes again
            here.free = free
            here.held.add(unit.name)

    def ended(self, unit: Unit, device: str, peak: int | None = None) -> None:
        """``unit`` ended on ``device`` (finished, failed or its worker died); ``peak``: the
        most memory it held there, learnt for the units like it."""
        here = self._device(device)
        self._leave(unit, here)
        here.free = None  # memory came back: measure again
        here.held.clear()
        if peak is not None:
            key = memory_key(unit)
            self._peaks[key] = max(peak, self._peaks.get(key, 0))
            self._kind_peaks[unit.kind] = max(peak, self._kind_peaks.get(unit.kind, 0))

    def out_of_memory(self, unit: Unit, device: str) -> bool:
        """``unit`` ran out of memory on ``device``. True: it is to be rerun, alone there,
        once the units running there end (it had company, and was not rerun already)."""
        here = self._device(device)
        shared = unit.name in here.shared
        self.ended(unit, device)
        if not shared or unit.name in self._retried:
            return False
        self._retried.add(unit.name)
        here.retry = unit
        return True

    def _leave(self, unit: Unit, here: _Device) -> None:
        here.running.pop(unit.name, None)
        here.shared.discard(unit.name)
        if here.alone == unit.name:
            here.alone = None
        if not here.running:  # an empty device holds nobody back
            here.free = None
            here.held.clear()


class DeviceMemory(Protocol):
    """What a pool worker measures on its device (None: not measured there)."""

    def free_bytes(self, device: str) -> int | None: ...

    def reset_peak(self, device: str) -> None: ...

    def peak_bytes(self, device: str) -> int | None: ...

    def release(self, device: str) -> None:
        """Hand the memory cached by this process back to the device."""
        ...


class CudaMemory:
    """`DeviceMemory` from ``torch.cuda``, on CUDA devices only.

    The peak is ``max_memory_reserved``, the memory the process took from the device
    (what the other processes there lose), not the smaller ``max_memory_allocated``. A
    worker on ``auto`` measures its CUDA device once a unit has used it.
    """

    def _index(self, device: str) -> int | None:
        import torch

        if device.startswith("cuda") and torch.cuda.is_available():
            parsed = torch.device(device)
            return parsed.index if parsed.index is not None else torch.cuda.current_device()
        if device == "auto" and torch.cuda.is_initialized():
            return torch.cuda.current_device()
        return None

    def free_bytes(self, device: str) -> int | None:
        import torch

        index = self._index(device)
        return None if index is None else int(torch.cuda.mem_get_info(index)[0])

    def reset_peak(self, device: str) -> None:
        import torch

        index = self._index(device)
        if index is not None and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats(index)

    def peak_bytes(self, device: str) -> int | None:
        import torch

        index = self._index(device)
        if index is None or not torch.cuda.is_initialized():
            return None
        return int(torch.cuda.max_memory_reserved(index))

    def release(self, device: str) -> None:
        import torch

        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()

"""Fakes for the packing tests (module level and light: pool workers import it).

`FakeMemory` gives fixed memory figures; `packing_runner` records each attempt of a unit
and can wait for another unit to start (so that the two share the device) and raise torch's
out-of-memory error; `ray_runner` records the resources Ray gave its task.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bayesdistill.runner.graph import Placement, Unit

GIB = 1024**3
WAIT_SECONDS = 60


class FakeMemory:
    """`DeviceMemory` with fixed figures (module level: the workers unpickle it)."""

    def __init__(self, free: int, peak: int = GIB) -> None:
        self.free, self.peak = free, peak

    def free_bytes(self, device: str) -> int | None:
        return self.free

    def reset_peak(self, device: str) -> None:
        pass

    def peak_bytes(self, device: str) -> int | None:
        return self.peak

    def release(self, device: str) -> None:
        pass


def _wait_for(path: Path) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def packing_runner(unit: Unit, placement: Placement) -> None:
    """Records each attempt (start and end times, whether the unit it waits for had ended);
    ``wait_for``: start only once that unit has started (so the two share the device);
    ``oom``: raise torch's out-of-memory error on the first attempt ("once") or always."""
    root = Path(unit.args["root"])
    attempts = root / f"{unit.name}.attempts"
    record = {"start": time.time(), "device": placement.device}
    (root / f"{unit.name}.started").touch()
    other = unit.args.get("wait_for")
    if other:
        record["other_started"] = _wait_for(root / f"{other}.started")
        record["other_ended"] = (root / f"{other}.ended").exists()
    count = len(attempts.read_text().splitlines()) if attempts.exists() else 0
    oom = unit.args.get("oom")
    failing = oom == "always" or (oom == "once" and count == 0)
    time.sleep(unit.args.get("sleep", 0.0))
    record["end"] = time.time()
    with attempts.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    if failing:
        import torch

        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    (root / f"{unit.name}.ended").touch()


def ray_runner(unit: Unit, placement: Placement) -> None:
    """Records the resources Ray gave the task, then waits for the other unit to start."""
    import ray

    root = Path(unit.args["root"])
    (root / f"{unit.name}.started").touch()
    record = {
        "resources": ray.get_runtime_context().get_assigned_resources(),
        "device": placement.device,
        "other_started": _wait_for(root / f"{unit.args['wait_for']}.started"),
    }
    (root / f"{unit.name}.json").write_text(json.dumps(record))

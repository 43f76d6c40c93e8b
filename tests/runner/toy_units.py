"""A toy unit runner for the executor tests (module level: worker processes import it).

Each unit writes ``<root>/<name>.txt`` holding its name and its dependencies' contents, so
the files show the order, and appends its name to ``<root>/ran.txt``; ``args`` can make a
unit raise, kill its worker process once, kill the idle worker of a finished unit, or skip
itself when its file exists (as a study's units do under ``--resume``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from bayesdistill.runner.graph import Placement, Unit

IDLE_SECONDS = 1.0
"""How long after a unit's file appears its worker is taken to be idle (it has answered)."""
DEADLINE_SECONDS = 60.0


def toy_runner(unit: Unit, placement: Placement) -> None:
    root = Path(unit.args["root"])
    if unit.args.get("skip_done") and (root / f"{unit.name}.txt").exists():
        return
    (root / f"{unit.name}.pid").write_text(str(os.getpid()))
    with open(root / "ran.txt", "a", encoding="utf-8") as ran:
        ran.write(unit.name + "\n")
    if unit.args.get("raise"):
        raise ValueError(f"unit {unit.name} was told to fail")
    marker = root / f"{unit.name}.killed"
    if unit.args.get("kill_once") and not marker.exists():
        marker.write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    if unit.args.get("kill_idle"):
        _kill_idle_worker(root, unit.args["kill_idle"])
    parts = [unit.name]
    for dep in unit.deps:
        parts.append((root / f"{dep}.txt").read_text())
    (root / f"{unit.name}.txt").write_text("(" + " ".join(parts) + ")")


def _kill_idle_worker(root: Path, finished: str) -> None:
    """Kill the worker that ran unit ``finished`` once it is idle (its file written, and
    `IDLE_SECONDS` for its answer to reach the pool)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not (root / f"{finished}.txt").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"unit {finished} did not finish")
        time.sleep(0.01)
    time.sleep(IDLE_SECONDS)
    os.kill(int((root / f"{finished}.pid").read_text()), signal.SIGKILL)
    time.sleep(IDLE_SECONDS / 2)  # it is gone before this unit answers

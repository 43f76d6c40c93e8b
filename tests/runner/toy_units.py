"""A toy unit runner for the executor tests (module level: worker processes import it).

Each unit writes ``<root>/<name>.txt`` holding its name and its dependencies' contents, so
the files show the order; ``args`` can make a unit raise, or kill its worker process once.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from bayesdistill.runner.executors import Placement, Unit


def toy_runner(unit: Unit, placement: Placement) -> None:
    root = Path(unit.args["root"])
    if unit.args.get("raise"):
        raise ValueError(f"unit {unit.name} was told to fail")
    marker = root / f"{unit.name}.killed"
    if unit.args.get("kill_once") and not marker.exists():
        marker.write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    parts = [unit.name]
    for dep in unit.deps:
        parts.append((root / f"{dep}.txt").read_text())
    (root / f"{unit.name}.txt").write_text("(" + " ".join(parts) + ")")

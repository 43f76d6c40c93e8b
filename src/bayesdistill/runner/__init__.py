"""Runners turn a validated config into library calls: teacher, distill, study.

The run functions are imported on first use, so that `bayesdistill.runner.layout` (the
run-folder layout, which the reports and the theory lab read) imports nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_data": "bayesdistill.runner.common",
    "resolve_device": "bayesdistill.runner.common",
    "run_distill": "bayesdistill.runner.single",
    "run_teachers": "bayesdistill.runner.single",
    "run_study": "bayesdistill.runner.study",
    "RunLayout": "bayesdistill.runner.layout",
    "RunKind": "bayesdistill.runner.layout",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bayesdistill.runner' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

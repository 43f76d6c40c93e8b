"""Runners turn a validated config into library calls: teacher, distill, study.

The run-folder layout they write (`RunLayout`, `RunKind`) lives in `bayesdistill.layout`,
below the runners, so that the reports and the theory lab read run folders without
importing the runners (which write reports: `bayesdistill.reports` sits between them).
"""

from __future__ import annotations

from bayesdistill.layout import RunKind, RunLayout
from bayesdistill.runner.common import load_data, resolve_device
from bayesdistill.runner.single import run_distill, run_teachers
from bayesdistill.runner.study import run_study

__all__ = [
    "RunKind",
    "RunLayout",
    "load_data",
    "resolve_device",
    "run_distill",
    "run_study",
    "run_teachers",
]

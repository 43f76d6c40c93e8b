"""Runners turn a validated config into library calls: teacher, distill, study."""

from bayesdistill.runner.common import load_data, resolve_device
from bayesdistill.runner.single import run_distill, run_teachers
from bayesdistill.runner.study import run_study

__all__ = ["load_data", "resolve_device", "run_distill", "run_study", "run_teachers"]

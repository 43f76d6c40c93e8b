"""Reports: tables and figures built from run folders (never from live objects)."""

from __future__ import annotations

from pathlib import Path

from bayesdistill.layout import RunLayout
from bayesdistill.reports.collect import CSV_COLUMNS, StudyResults, best_accuracies, collect
from bayesdistill.reports.differences import Difference, loss_differences, paired_comparison
from bayesdistill.reports.plots import (
    plot_learning_curves,
    plot_reliability,
    plot_teacher_vs_student,
)
from bayesdistill.reports.stats import IntervalMethod, PairedComparison, compare_paired
from bayesdistill.reports.tables import csv_text, markdown, mean_std, paired, write_tables


def write_reports(
    folder: str | Path,
    interval: IntervalMethod | str = IntervalMethod.T,
    bootstrap_seed: int = 0,
) -> StudyResults:
    """(Re)write results.csv, results.md and plots/ of the study in ``folder``.

    ``interval`` ("t" or "bootstrap") picks the paired-difference intervals of results.md.
    """
    results = collect(folder)
    write_tables(results, interval, bootstrap_seed)
    plots = RunLayout(results.folder).plots
    plot_learning_curves(results, plots / "student_learning_curves.png")
    plot_reliability(results, plots / "teacher_reliability.png")
    plot_teacher_vs_student(results, plots / "teacher_vs_student.png")
    return results


__all__ = [
    "CSV_COLUMNS",
    "Difference",
    "IntervalMethod",
    "PairedComparison",
    "StudyResults",
    "best_accuracies",
    "collect",
    "compare_paired",
    "csv_text",
    "loss_differences",
    "markdown",
    "mean_std",
    "paired",
    "paired_comparison",
    "plot_learning_curves",
    "plot_reliability",
    "plot_teacher_vs_student",
    "write_reports",
    "write_tables",
]

"""Reports: tables and figures built from run folders (never from live objects)."""

from __future__ import annotations

from pathlib import Path

from bayesdistill.reports.collect import CSV_COLUMNS, StudyResults, collect
from bayesdistill.reports.plots import (
    plot_learning_curves,
    plot_reliability,
    plot_teacher_vs_student,
)
from bayesdistill.reports.tables import csv_text, markdown, mean_std, paired, write_tables


def write_reports(folder: str | Path) -> StudyResults:
    """(Re)write results.csv, results.md and plots/ of the study in ``folder``."""
    results = collect(folder)
    write_tables(results)
    plots = results.folder / "plots"
    plot_learning_curves(results, plots / "student_learning_curves.png")
    plot_reliability(results, plots / "teacher_reliability.png")
    plot_teacher_vs_student(results, plots / "teacher_vs_student.png")
    return results


__all__ = [
    "CSV_COLUMNS",
    "StudyResults",
    "collect",
    "csv_text",
    "markdown",
    "mean_std",
    "paired",
    "plot_learning_curves",
    "plot_reliability",
    "plot_teacher_vs_student",
    "write_reports",
    "write_tables",
]

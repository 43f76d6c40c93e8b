"""Claims, their table, and the report of a theory experiment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bayesdistill.io import read_json, write_json, write_text

CLAIMS_NAME = "claims.json"
REPORT_NAME = "report.md"


@dataclass(frozen=True)
class Claim:
    """One prediction of the theory and what was measured.

    Attributes:
        claim: the statement, as the theory makes it.
        prediction: the number or ordering the theory predicts here.
        measured: what was measured (mean ± std over seeds where there are seeds).
        held: whether the measurement agrees with the prediction.
        note: how it was decided, or what was found out when it did not hold.
    """

    claim: str
    prediction: str
    measured: str
    held: bool
    note: str = ""


@dataclass
class ExperimentResult:
    """What an experiment returns: its claims and the report's prose, tables and figures."""

    title: str
    summary: str
    claims: list[Claim]
    sections: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


def pm(values: Sequence[float] | np.ndarray, digits: int = 3, scale: float = 1.0) -> str:
    """``mean ± std`` over seeds (sample std; a single value prints alone)."""
    v = np.asarray(values, dtype=np.float64) * scale
    if v.size == 1:
        return f"{v[0]:.{digits}g}"
    return f"{v.mean():.{digits}g} ± {v.std(ddof=1):.{digits}g}"


def claims_table(claims: Sequence[Claim], experiment: str | None = None) -> str:
    """Markdown table: (experiment,) claim, prediction, measured, held."""
    head = ["experiment"] if experiment is not None else []
    lines = [
        "| " + " | ".join([*head, "claim", "prediction", "measured", "held"]) + " |",
        "|" + "---|" * (len(head) + 4),
    ]
    for c in claims:
        cells = [*([experiment] if experiment is not None else [])]
        cells += [c.claim, c.prediction, c.measured, "**yes**" if c.held else "**no**"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def render_report(result: ExperimentResult) -> str:
    parts = [f"# {result.title}", "", result.summary, "", claims_table(result.claims), ""]
    notes = [f"- *{c.claim}*: {c.note}" for c in result.claims if c.note]
    if notes:
        parts += ["Notes:", "", *notes, ""]
    parts += [s + "\n" for s in result.sections]
    parts += [f"![{Path(f).stem}]({f})" for f in result.figures]
    return "\n".join(parts).rstrip() + "\n"


def write_result(out: Path, result: ExperimentResult) -> None:
    """``claims.json`` and ``report.md`` in ``out`` (atomically)."""
    write_json(
        out / CLAIMS_NAME,
        {
            "title": result.title,
            "summary": result.summary,
            "claims": [asdict(c) for c in result.claims],
            "sections": result.sections,
            "figures": result.figures,
        },
    )
    write_text(out / REPORT_NAME, render_report(result))


def read_result(out: Path) -> ExperimentResult:
    data: dict[str, Any] = read_json(out / CLAIMS_NAME)
    return ExperimentResult(
        data["title"],
        data["summary"],
        [Claim(**c) for c in data["claims"]],
        data.get("sections", []),
        data.get("figures", []),
    )

"""Claims, their table, the report of a theory experiment, and how a claim over seeds is decided.

A claim that compares quantities measured over several seeds ("A < B", an ordering
a < b < c < d, "increasing in α") is decided from the per-seed paired differences d_s, each
seed's A minus its B, with the 95 % paired t interval d̄ ± t_{0.975, n−1}·s/√n
(`bayesdistill.reports.stats.t_interval`): "A < B" holds only when the interval lies below 0,
an ordering only when the interval of every adjacent pair does. One seed gives no interval,
and the claim does not hold. Where the compared quantities are scales that differ from seed to
seed by a factor (SGD floors, variances, gradient noise of a seed's own mixture), the
differences are of natural logarithms: d_s = ln A_s − ln B_s, the log ratio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from bayesdistill.io import read_json, write_json, write_text
from bayesdistill.reports.stats import t_interval

CLAIMS_NAME = "claims.json"
REPORT_NAME = "report.md"


@dataclass(frozen=True)
class Claim:
    """One prediction of the theory and what was measured.

    Attributes:
        claim: the statement, as the theory makes it.
        prediction: the number or ordering the theory predicts here.
        measured: what was measured: means (mean ± std over seeds) and, for comparisons over
            seeds, the paired differences with their 95 % t intervals.
        held: whether the measurement agrees with the prediction (for a comparison over
            seeds: every paired interval excludes 0 in the predicted direction).
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


NO_INTERVAL = "1 seed, no interval"
"""Printed in place of an interval when there is a single seed (a t interval needs two)."""


@dataclass(frozen=True)
class PairedDecision:
    """A comparison over seeds decided by paired 95 % t intervals.

    Attributes:
        held: every interval excludes 0 in the predicted direction (False with one seed).
        measured: each difference as ``name: mean [lo, hi]``, joined by ``"; "``.
        differences: the per-seed differences of a single comparison (`paired_less`), for a
            caller that also asks about the other direction; None for an ordering.
    """

    held: bool
    measured: str
    differences: np.ndarray | None = None


EQUAL_SEEDS = "every seed equal: a zero-width interval"
"""Appended when every per-seed value is the same: the t interval then has zero width and
excludes 0 however few seeds there are, which says more about the statistic (e.g. a rank
correlation over four points) than about the effect."""

NOT_FINITE = "a seed is not finite, no interval"
"""Printed in place of an interval when a per-seed value is NaN or infinite (e.g. the
fluctuation of a curve too short to have one); such a comparison does not hold."""


def _interval(values: Sequence[float] | np.ndarray) -> tuple[float, float] | None:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    return t_interval(v) if np.all(np.isfinite(v)) else None


def mean_ci(values: Sequence[float] | np.ndarray, digits: int = 3) -> str:
    """``mean [lo, hi]`` of per-seed values with their 95 % t interval (``mean (1 seed, no
    interval)`` for a single value)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size < 2:
        return f"{v.mean():.{digits}g} ({NO_INTERVAL})"
    if not np.all(np.isfinite(v)):
        per_seed = ", ".join(f"{x:.{digits}g}" for x in v)
        return f"per seed {per_seed} ({NOT_FINITE})"
    ci = t_interval(v)
    assert ci is not None  # n ≥ 2
    if ci[0] == ci[1]:  # a discrete statistic (a rank correlation) equal in every seed
        return f"{v.mean():.{digits}g} [{ci[0]:.{digits}g}, {ci[1]:.{digits}g}] ({EQUAL_SEEDS})"
    return f"{v.mean():.{digits}g} [{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"


def above_zero(values: Sequence[float] | np.ndarray) -> bool:
    """The 95 % t interval of the per-seed values lies above 0 (False for one seed or a
    non-finite value)."""
    ci = _interval(values)
    return ci is not None and ci[0] > 0


def below_zero(values: Sequence[float] | np.ndarray) -> bool:
    """The 95 % t interval of the per-seed values lies below 0 (False for one seed or a
    non-finite value)."""
    ci = _interval(values)
    return ci is not None and ci[1] < 0


def _log(name: str, values: np.ndarray) -> np.ndarray:
    if np.any(values <= 0):
        raise ValueError(
            f"a log-ratio comparison needs positive values; {name} has {values.tolist()}"
        )
    return np.log(values)


def paired_less(
    lower: tuple[str, Sequence[float] | np.ndarray],
    higher: tuple[str, Sequence[float] | np.ndarray],
    *,
    log: bool = False,
    digits: int = 3,
) -> PairedDecision:
    """Predicted: ``lower`` < ``higher`` (each a ``(name, per-seed values)`` pair, same seeds
    in the same order). Held when the 95 % t interval of the per-seed differences
    lower − higher (``log``: ln lower − ln higher) lies below 0."""
    (a_name, a), (b_name, b) = lower, higher
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(
            f"paired comparison needs one value per seed on both sides; {a_name} has {a.size}, "
            f"{b_name} has {b.size}"
        )
    if log:
        d, label = _log(a_name, a) - _log(b_name, b), f"ln({a_name}/{b_name})"
    else:
        d, label = a - b, f"{a_name} − {b_name}"
    return PairedDecision(below_zero(d), f"{label}: {mean_ci(d, digits)}", d)


def paired_ordering(
    values: Mapping[str, Sequence[float] | np.ndarray], *, log: bool = False, digits: int = 3
) -> PairedDecision:
    """Predicted: the per-seed ``values`` increase in the mapping's order (a < b < c < …).
    Held when the paired interval of every adjacent pair lies below 0 (`paired_less`)."""
    if len(values) < 2:
        raise ValueError(f"an ordering needs at least two quantities, got {list(values)}")
    pairs = [paired_less(lo, hi, log=log, digits=digits) for lo, hi in pairwise(values.items())]
    return PairedDecision(all(p.held for p in pairs), "; ".join(p.measured for p in pairs))


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

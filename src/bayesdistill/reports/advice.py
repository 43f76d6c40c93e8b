"""Which teacher? Teacher kinds ranked by teacher-side measurements alone (REFERENCE.md §11).

The paper's guideline is to distil from the teacher whose probabilities are closest to the
Bayes class probabilities p*. On held-out pairs (x, y), y ~ p*(·|x), the expected log loss
of a predictive p is

    E[−log p(y|x)] = E_x[H(p*(·|x))] + E_x[KL(p*(·|x) ‖ p(·|x))],

and the first term does not depend on the teacher, so **held-out NLL ranks teachers by
their expected KL to p*** (the Brier score likewise by E‖p − p*‖²). ECE is not a proper
score (predicting the class frequencies everywhere has ECE ≈ 0) and is reported, not ranked
on. A finite validation set ranks with noise, so kinds are compared by per-seed paired
differences (`bayesdistill.reports.stats`): the recommended kind is the one with the lowest
mean held-out NLL over seeds, and the kinds whose paired 95 % interval against it includes
0 cannot be told apart from it.

Students learn from the teacher's predictions on the training points, where a teacher is
usually over-confident. When the kinds rank differently by their training-set NLL than by
their held-out NLL, what the students see is ordered differently from what the guideline
measures; cross-fitting (``cross_fit: K``) gives every training point a prediction from a
teacher fitted without it, which removes that difference.

Everything here reads a study's run folder through `bayesdistill.reports.collect` (teacher
summaries hold validation, test and training-set metrics) plus, on synthetic data,
``advice.json`` for the exact E KL(p* ‖ p) that ``bayesdistill advise`` computes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from bayesdistill.io import read_json
from bayesdistill.metrics import ECE_BINS, NLL_EPS
from bayesdistill.reports.collect import NO_TEACHER, REFERENCE_TEACHER, StudyResults
from bayesdistill.reports.stats import CONFIDENCE, PairedComparison, compare_paired

ADVICE_JSON = "advice.json"
"""The advice of ``bayesdistill advise`` at the root of the study folder (per-seed values)."""
ADVICE_MD = "advice.md"
"""The same, as the markdown the command prints."""
EXACT_KL = "val_kl_bcp"
"""Key of the exact E_x KL(p*(·|x) ‖ p(·|x)) on validation data in advice.json."""


class Predictor(str, Enum):
    """A teacher-side measurement that may predict which teacher gives the best student."""

    VAL_NLL = "val_nll"
    """Held-out NLL on the validation set: the guideline (ranks by E KL(p* ‖ p))."""
    VAL_BRIER = "val_brier"
    """Held-out Brier score (ranks by E‖p − p*‖²)."""
    VAL_ACCURACY = "val_accuracy"
    """Held-out accuracy (higher is better)."""
    VAL_ECE = "val_ece"
    """Held-out ECE (not a proper score)."""
    TRAIN_NLL = "train_nll"
    """NLL on the training set: how the targets students learn from fit their labels."""
    EXACT_KL = EXACT_KL
    """E_x KL(p* ‖ p) on validation data, exact: synthetic data only (p* known)."""

    @property
    def lower_is_better(self) -> bool:
        return self is not Predictor.VAL_ACCURACY

    @property
    def title(self) -> str:
        return _TITLES[self]


_TITLES = {
    Predictor.VAL_NLL: "held-out NLL (the guideline)",
    Predictor.VAL_BRIER: "held-out Brier",
    Predictor.VAL_ACCURACY: "held-out accuracy",
    Predictor.VAL_ECE: "held-out ECE",
    Predictor.TRAIN_NLL: "training-set NLL",
    Predictor.EXACT_KL: "exact KL(p* ‖ p), held-out",
}

GUIDELINE = Predictor.VAL_NLL
MAX_SWAPS_SHOWN = 4
"""Pairs of kinds in reverse order that the in-sample note names (the rest are counted)."""

Values = Mapping[str, Mapping[int, float]]
"""teacher kind → seed → value."""


@dataclass(frozen=True)
class Ranking:
    """Teacher kinds ordered by the mean of one measurement over seeds, best first.

    Attributes:
        predictor: the measurement.
        order: the kinds, best first (ties keep the given order).
        means: each kind's mean over its seeds.
        versus_best: each other kind's paired comparison with the best one (kind − best,
            per seed, over the seeds both have); None where they share no seed.
    """

    predictor: Predictor
    order: list[str]
    means: dict[str, float]
    versus_best: dict[str, PairedComparison | None]

    @property
    def best(self) -> str:
        return self.order[0]

    def indistinguishable(self) -> list[str]:
        """The other kinds whose paired interval against the best includes 0 (or that have
        no interval: one shared seed cannot tell them apart), in rank order."""
        out = []
        for kind in self.order[1:]:
            c = self.versus_best.get(kind)
            if c is None or not c.excludes_zero:
                out.append(kind)
        return out


def rank_kinds(values: Values, predictor: Predictor) -> Ranking:
    """Rank the kinds of ``values`` (kind → seed → value) by their mean over seeds.

    Kinds without a finite value are left out; a ValueError names them when none is left.
    """
    clean = {k: _finite(v) for k, v in values.items()}
    means = {k: float(np.mean(list(v.values()))) for k, v in clean.items() if v}
    if not means:
        raise ValueError(
            f"no teacher kind has a finite '{predictor.value}' (kinds given: {sorted(values)}); "
            "has any teacher finished?"
        )
    sign = 1.0 if predictor.lower_is_better else -1.0
    given = list(means)
    order = sorted(given, key=lambda k: (sign * means[k], given.index(k)))
    best = order[0]
    versus = {k: paired_values(clean[k], clean[best]) for k in order[1:]}
    return Ranking(predictor, order, means, versus)


def paired_values(a: Mapping[int, float], b: Mapping[int, float]) -> PairedComparison | None:
    """a − b over the seeds both have (paired t interval); None when they share no seed."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    return compare_paired([a[s] - b[s] for s in seeds])


def _finite(values: Mapping[int, float]) -> dict[int, float]:
    return {s: float(v) for s, v in values.items() if v is not None and math.isfinite(v)}


def teacher_kinds(results: StudyResults, only: Sequence[str] | None = None) -> list[str]:
    """The study's teacher kinds besides ``none`` (restricted to ``only`` if given)."""
    return [
        k
        for k in results.kinds
        if results.kind_names[k] != NO_TEACHER and (only is None or k in only)
    ]


def teacher_values(results: StudyResults, kinds: Sequence[str], predictor: Predictor) -> Values:
    """Per-seed values of one teacher-side measurement (kind → seed → value): validation and
    training-set metrics from the teachers' summaries, the exact KL from advice.json."""
    if predictor is Predictor.EXACT_KL:
        recorded = read_exact_kl(results.folder)
        return {k: recorded.get(k, {}) for k in kinds}
    out: dict[str, dict[int, float]] = {}
    for kind in kinds:
        per_seed = {s: results.value("teacher", kind, s, predictor.value) for s in results.seeds}
        out[kind] = {s: v for s, v in per_seed.items() if v is not None}
    return out


def read_exact_kl(folder: str | Path) -> dict[str, dict[int, float]]:
    """kind → seed → exact E KL(p* ‖ p) on validation data, from the folder's advice.json;
    empty when there is none (the data's p* is unknown, or advise has not run)."""
    path = Path(folder) / ADVICE_JSON
    if not path.is_file():
        return {}
    per_seed = read_json(path).get("per_seed", {})
    out: dict[str, dict[int, float]] = {}
    for kind, seeds in per_seed.items():
        values = {int(s): m.get(EXACT_KL) for s, m in seeds.items()}
        values = {s: float(v) for s, v in values.items() if v is not None}
        if values:
            out[kind] = values
    return out


@dataclass(frozen=True)
class TeacherAdvice:
    """What ``bayesdistill advise`` reports (see the module docstring).

    Attributes:
        ranking: the kinds by held-out NLL (the recommendation is its best).
        in_sample: the kinds by training-set NLL (what students learn from).
        reference: the deterministic teacher's kind, against which NLL, Brier and ECE are
            compared per seed (None when the study has none).
        versus_reference: metric → kind → paired comparison kind − reference.
        means: metric → kind → mean over seeds (every metric of the table).
        swaps: pairs (a, b) that held-out NLL orders a before b and training-set NLL b
            before a.
        uses_validation: kinds that fit something on the validation set, whose held-out
            scores are therefore slightly optimistic.
        cross_fitted: kinds whose training targets are already cross-fitted.
        exact: the kinds by exact E KL(p* ‖ p) on validation data, where p* is known.
    """

    ranking: Ranking
    in_sample: Ranking | None
    reference: str | None
    versus_reference: dict[str, dict[str, PairedComparison | None]]
    means: dict[str, dict[str, float]]
    swaps: list[tuple[str, str]]
    uses_validation: list[str] = field(default_factory=list)
    cross_fitted: list[str] = field(default_factory=list)
    exact: Ranking | None = None

    @property
    def recommended(self) -> str:
        return self.ranking.best

    @property
    def cross_fit_changes_ranking(self) -> bool:
        return bool(self.swaps)

    def to_json(self, values: Mapping[str, Values]) -> dict[str, Any]:
        """The advice with every per-seed value it was computed from (advice.json)."""
        kinds = self.ranking.order
        per_seed: dict[str, dict[str, dict[str, float]]] = {}
        for metric, table in values.items():
            for kind, seeds in table.items():
                for seed, value in seeds.items():
                    per_seed.setdefault(kind, {}).setdefault(str(seed), {})[metric] = value
        return {
            "recommended": self.recommended,
            "indistinguishable": self.ranking.indistinguishable(),
            "order": kinds,
            "in_sample_order": None if self.in_sample is None else self.in_sample.order,
            "exact_kl_order": None if self.exact is None else self.exact.order,
            "cross_fit_changes_ranking": self.cross_fit_changes_ranking,
            "swaps": [list(pair) for pair in self.swaps],
            "reference": self.reference,
            "means": self.means,
            "per_seed": per_seed,
        }


ADVICE_METRICS = (
    Predictor.VAL_NLL,
    Predictor.VAL_BRIER,
    Predictor.VAL_ECE,
    Predictor.VAL_ACCURACY,
    Predictor.TRAIN_NLL,
)
COMPARED = (Predictor.VAL_NLL, Predictor.VAL_BRIER, Predictor.VAL_ECE)
"""Metrics compared per seed against the deterministic teacher."""


def advise(
    results: StudyResults,
    exact_kl: Values | None = None,
    *,
    uses_validation: Sequence[str] = (),
    cross_fitted: Sequence[str] = (),
) -> tuple[TeacherAdvice, dict[str, Values]]:
    """The advice for the teacher kinds of ``results``, and the per-seed values behind it.

    ``exact_kl``: kind → seed → E KL(p* ‖ p) on validation data, where p* is known.
    """
    kinds = teacher_kinds(results)
    values: dict[str, Values] = {p.value: teacher_values(results, kinds, p) for p in ADVICE_METRICS}
    if exact_kl:
        values[EXACT_KL] = {k: exact_kl.get(k, {}) for k in kinds}
    ranking = rank_kinds(values[GUIDELINE.value], GUIDELINE)
    in_sample = _maybe_rank(values[Predictor.TRAIN_NLL.value], Predictor.TRAIN_NLL)
    exact = _maybe_rank(values[EXACT_KL], Predictor.EXACT_KL) if exact_kl else None
    reference = next((k for k in kinds if results.kind_names[k] == REFERENCE_TEACHER), None)
    versus: dict[str, dict[str, PairedComparison | None]] = {}
    if reference is not None:
        for metric in COMPARED:
            table = {k: _finite(v) for k, v in values[metric.value].items()}
            versus[metric.value] = {
                k: paired_values(table[k], table[reference]) for k in kinds if k != reference
            }
    means = {
        metric: {k: float(np.mean(list(v.values()))) for k, v in table.items() if _finite(v)}
        for metric, table in values.items()
    }
    swaps = [] if in_sample is None else order_swaps(ranking.order, in_sample.order)
    advice = TeacherAdvice(
        ranking,
        in_sample,
        reference,
        versus,
        means,
        swaps,
        [k for k in kinds if k in uses_validation],
        [k for k in kinds if k in cross_fitted],
        exact,
    )
    return advice, values


def _maybe_rank(values: Values, predictor: Predictor) -> Ranking | None:
    if not any(_finite(v) for v in values.values()):
        return None
    return rank_kinds(values, predictor)


def order_swaps(first: Sequence[str], second: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs (a, b) that ``first`` orders a before b and ``second`` b before a (kinds in
    both only), in the order of ``first``."""
    where = {k: i for i, k in enumerate(second)}
    both = [k for k in first if k in where]
    return [(a, b) for i, a in enumerate(both) for b in both[i + 1 :] if where[b] < where[a]]


def render_advice(
    advice: TeacherAdvice, results: StudyResults, *, command: str | None = None
) -> str:
    """The advice as markdown: the recommendation, the ranking table, the in-sample gap."""
    r = advice.ranking
    level = f"{100 * CONFIDENCE:g} %"
    n_val = results.data.get("n_val", "?")
    seeds = results.seeds
    ties = r.indistinguishable()
    lines = [
        f"# Which teacher? {len(r.order)} teacher kinds of `{results.data.get('dataset', '?')}` "
        f"ranked on held-out data ({n_val} validation examples, seeds {seeds})",
        "",
        f"**Recommended: `{advice.recommended}`**, the lowest held-out NLL "
        f"({r.means[advice.recommended]:.4f}, mean over seeds). "
        + (
            "Not told apart from it by the paired "
            f"{level} interval over seeds: {', '.join(f'`{k}`' for k in ties)}."
            if ties
            else f"Every other kind's held-out NLL is higher, each by a paired {level} interval "
            "that excludes 0."
        ),
        "",
    ]
    has_kl = advice.exact is not None
    ref = advice.reference
    header = ["rank", "teacher kind", "held-out NLL", f"Δ NLL vs `{r.best}` [{level}]"]
    if ref is not None:
        header += [f"Δ NLL vs `{ref}` [{level}]"]
    header += ["held-out Brier"] + ([f"Δ Brier vs `{ref}`"] if ref else [])
    header += ["held-out ECE"] + ([f"Δ ECE vs `{ref}`"] if ref else [])
    header += ["held-out acc (%)", "train NLL", "gap: held-out − train NLL"]
    header += ["exact KL(p* ‖ p)"] if has_kl else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    means = advice.means
    for rank, kind in enumerate(r.order, start=1):
        mark = " †" if kind in advice.uses_validation else ""
        cells = [str(rank), f"`{kind}`{mark}", _mean(means, GUIDELINE.value, kind, 4)]
        cells.append("—" if kind == r.best else _delta(r.versus_best.get(kind), 4))
        if ref is not None:
            cells.append(_versus(advice, Predictor.VAL_NLL, kind, 4))
        cells.append(_mean(means, Predictor.VAL_BRIER.value, kind, 4))
        if ref is not None:
            cells.append(_versus(advice, Predictor.VAL_BRIER, kind, 4))
        cells.append(_mean(means, Predictor.VAL_ECE.value, kind, 4))
        if ref is not None:
            cells.append(_versus(advice, Predictor.VAL_ECE, kind, 4))
        cells.append(_mean(means, Predictor.VAL_ACCURACY.value, kind, 2, 100.0))
        cells.append(_mean(means, Predictor.TRAIN_NLL.value, kind, 4))
        gap = _gap(means, kind)
        cells.append("—" if gap is None else f"{gap:+.4f}")
        if has_kl:
            cells.append(_mean(means, EXACT_KL, kind, 4))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if advice.uses_validation:
        lines += [
            "† fits something on the validation set (a temperature, or Laplace's prior "
            "precision by grid search), so its held-out scores are slightly optimistic.",
            "",
        ]
    if advice.exact is not None:
        agree = advice.exact.order == r.order
        lines += [
            "On these data p* is known: ranked by the exact E KL(p* ‖ p) on the validation set "
            f"the order is {_order_text(advice.exact.order)}; held-out NLL "
            + ("recovers it exactly." if agree else f"orders them {_order_text(r.order)}."),
            "",
        ]
    lines += [*_in_sample_text(advice), ""]
    lines.append(
        f"Held-out: the validation set. Δ columns: paired differences over seeds, mean "
        f"[{level} paired-t interval], a trailing * where it excludes 0. NLL clamps "
        f"probabilities at {NLL_EPS:g}; Brier is Σ_k (p_k − e_y,k)²; ECE uses {ECE_BINS} "
        "equal-width top-label bins. Held-out NLL ranks teachers by their expected KL to the "
        "Bayes class probabilities (E[−log p(y|x)] = E H(p*) + E KL(p* ‖ p)); ECE is not a "
        "proper score and is shown, not ranked on."
    )
    if command:
        lines += ["", f"Students next (no teacher is built twice): `{command}`"]
    return "\n".join(lines) + "\n"


def _in_sample_text(advice: TeacherAdvice) -> list[str]:
    """What the training-set (in-sample) ranking says about cross-fitting."""
    if advice.in_sample is None:
        return ["No training-set NLL is recorded, so the in-sample ranking is unknown."]
    order = advice.in_sample.order
    if not advice.swaps:
        return [
            "Students learn from the teachers' predictions on the training points. Ranked by "
            f"their training-set NLL the kinds come in the same order ({_order_text(order)}), "
            "so cross-fitting (`cross_fit: K`) would not change the ranking."
        ]
    shown = advice.swaps[:MAX_SWAPS_SHOWN]
    pairs = ", ".join(f"`{a}` before `{b}`" for a, b in shown)
    if len(advice.swaps) > len(shown):
        more = len(advice.swaps) - len(shown)
        pairs += f" and {more} more pair{'s' if more > 1 else ''}"
    total = len(order) * (len(order) - 1) // 2
    top = (
        f" The in-sample best is `{order[0]}`, not `{advice.recommended}`."
        if order[0] != advice.recommended
        else ""
    )
    done = (
        f" (`{'`, `'.join(advice.cross_fitted)}` already cross-fitted.)"
        if advice.cross_fitted
        else ""
    )
    return [
        "Students learn from the teachers' predictions on the training points, where they "
        f"are fitted. Ranked by training-set NLL the order differs: {_order_text(order)}; "
        f"{len(advice.swaps)} of {total} pairs are in reverse order (held-out NLL puts "
        f"{pairs}).{top} Cross-fitting "
        "(`cross_fit: K`: each training point gets the prediction of a teacher fitted "
        "without it) would change the ranking of what the students learn from towards the "
        f"held-out one.{done}"
    ]


def _order_text(order: Sequence[str]) -> str:
    return " < ".join(f"`{k}`" for k in order)


def _gap(means: Mapping[str, Mapping[str, float]], kind: str) -> float | None:
    held_out = means.get(GUIDELINE.value, {}).get(kind)
    train = means.get(Predictor.TRAIN_NLL.value, {}).get(kind)
    if held_out is None or train is None:
        return None
    return held_out - train


def _mean(
    means: Mapping[str, Mapping[str, float]],
    metric: str,
    kind: str,
    digits: int,
    scale: float = 1.0,
) -> str:
    value = means.get(metric, {}).get(kind)
    return "—" if value is None else f"{scale * value:.{digits}f}"


def _versus(advice: TeacherAdvice, metric: Predictor, kind: str, digits: int) -> str:
    if kind == advice.reference:
        return "—"
    return _delta(advice.versus_reference.get(metric.value, {}).get(kind), digits)


def _delta(c: PairedComparison | None, digits: int) -> str:
    """``+0.0123 [+0.0040, +0.0206]*``; one seed gives no interval."""
    if c is None:
        return "—"
    text = f"{c.mean:+.{digits}f}"
    if c.interval is not None:
        text += f" [{c.interval[0]:+.{digits}f}, {c.interval[1]:+.{digits}f}]"
    return text + ("*" if c.excludes_zero else "")

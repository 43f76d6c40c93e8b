"""``bayesdistill advise``: build a study's teachers (no students) and rank them on held-out data.

Ranking teachers costs only the teachers; finding out which teacher helps a student costs a
study. The command opens the study's own folder (`bayesdistill.runner.study.open_study`:
same checks, same run record, same layout) and runs only the study's teacher-network and
teacher units (`bayesdistill.runner.units.study_units`), so ``bayesdistill study CONFIG
--out DIR --resume`` afterwards finds every teacher built and trains only the students. The
advice itself (`bayesdistill.reports.advice`) is read back from the folder: the teachers'
summaries hold their validation, test and training-set metrics. On data with known Bayes
class probabilities (synthetic) it adds the exact E_x KL(p*(·|x) ‖ p(·|x)) on the validation
set, computed here from each saved teacher, so that the held-out-NLL ranking can be checked
against the quantity it stands for.

Writes ``advice.json`` (the ranking and every per-seed value behind it) and ``advice.md``
(what the command prints) at the root of the folder.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import torch
from scipy import special

from bayesdistill.config.schema import NO_TEACHER, ExperimentConfig, TeacherKindConfig
from bayesdistill.data import DataSplits
from bayesdistill.errors import ConfigError, DataError
from bayesdistill.io import write_json, write_text
from bayesdistill.layout import RunLayout
from bayesdistill.metrics import NLL_EPS
from bayesdistill.reports import collect
from bayesdistill.reports.advice import ADVICE_JSON, ADVICE_MD, TeacherAdvice, advise, render_advice
from bayesdistill.runner.common import log
from bayesdistill.runner.graph import Executor
from bayesdistill.runner.study import OpenedStudy, open_study, run_study_units
from bayesdistill.runner.units import NETWORK, TEACHER, study_units
from bayesdistill.teachers import load_teacher
from bayesdistill.train import predict_in_batches

VALIDATION_FITTERS = {"temperature"}
"""Teacher kinds that fit a parameter on the validation set by construction."""
LAPLACE_DEFAULT_PRIOR = "gridsearch"
"""Laplace's default prior precision method, a grid search on validation NLL."""


def check_advisable(config: ExperimentConfig) -> None:
    """What advise needs of the config, checked before anything is loaded or written: a
    teacher kind to rank, and validation data to rank it on."""
    kinds = [k.key for k in config.teachers if k.name != NO_TEACHER]
    if not kinds:
        listed = [k.key for k in config.teachers]
        raise ConfigError(
            f"advise ranks teacher kinds, but the config lists none besides 'none' "
            f"(teachers: {listed}); add the kinds to compare, e.g. teachers: [deterministic, "
            "temperature, {name: laplace, prior_precision: marglik}]"
        )
    if config.data.val_fraction == 0:
        raise ConfigError(
            "advise scores teachers on held-out validation data, but data.val_fraction is 0 "
            "(no validation set); set data.val_fraction, e.g. data.val_fraction=0.1 (a study "
            "of the same folder must use the same value)"
        )


def _check_validation(splits: DataSplits) -> None:
    if len(splits.val) == 0:
        raise DataError(
            f"advise scores teachers on held-out validation data, but dataset "
            f"'{splits.name}' gives an empty validation set ({len(splits.train)} train / "
            f"{len(splits.test)} test examples); raise data.val_fraction or use more data"
        )


def uses_validation(kind: TeacherKindConfig) -> bool:
    """Whether ``kind`` fits something on the validation set (temperature scaling, a
    ``calibrate: true`` kind, Laplace's prior precision by grid search on validation NLL), so
    that its held-out scores are slightly optimistic."""
    if kind.name in VALIDATION_FITTERS or kind.calibrate:
        return True
    prior = kind.options.get("prior_precision", LAPLACE_DEFAULT_PRIOR)
    return kind.name == "laplace" and getattr(prior, "value", prior) == LAPLACE_DEFAULT_PRIOR


def run_advise(
    config: ExperimentConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
    command: str | None = None,
) -> tuple[TeacherAdvice, str]:
    """Build every teacher kind of ``config`` for its seeds in the study folder ``out`` (no
    students), rank them, write advice.json / advice.md; returns the advice and its markdown.

    ``command``: the study command to show as the next step (default: built from ``out``).
    Refuses, before writing anything, a config without teacher kinds or validation data.
    """
    check_advisable(config)
    study = open_study(config, out, resume=resume, check=_check_validation)
    layout = study.layout
    units = [u for u in study_units(config) if u.kind in (NETWORK, TEACHER)]
    outcome = run_study_units(config, study, units, progress=progress, executor=executor)
    outcome.raise_for_failures()
    results = collect(layout.root)
    kinds = [k for k in config.teachers if k.name != NO_TEACHER]
    advice, values = advise(
        results,
        exact_kl(config, study),
        uses_validation=[k.key for k in kinds if uses_validation(k)],
        cross_fitted=[k.key for k in kinds if k.cross_fit is not None],
    )
    if command is None:
        command = f"bayesdistill study CONFIG --out {shlex.quote(str(out))} --resume"
    text = render_advice(advice, results, command=command)
    write_json(layout.root / ADVICE_JSON, advice.to_json(values))
    write_text(layout.root / ADVICE_MD, text)
    log.info("advise: recommended '%s'; advice in %s", advice.recommended, layout.root / ADVICE_MD)
    return advice, text


def exact_kl(config: ExperimentConfig, study: OpenedStudy) -> dict[str, dict[int, float]]:
    """kind → seed → E_x KL(p*(·|x) ‖ p(·|x)) over the validation set, with p clamped at
    `NLL_EPS` as NLL is (so NLL − KL estimates the teacher-free entropy term); empty when
    the data's Bayes class probabilities are unknown."""
    val = study.splits.val
    if getattr(val, "bcp", None) is None:
        return {}
    bcp = val.bcp.detach().cpu().double().numpy()
    accel = config.runtime.acceleration()
    out: dict[str, dict[int, float]] = {}
    for seed in config.seeds:
        pieces = RunLayout(study.layout.root).seed(seed)
        for kind in config.teachers:
            if kind.name == NO_TEACHER:
                continue
            teacher = load_teacher(pieces.teacher(kind.key).teacher, study.device)
            with torch.no_grad():
                probs = predict_in_batches(teacher, val, accel=accel).cpu().double()
            p = probs.clamp_min(NLL_EPS).numpy()
            out.setdefault(kind.key, {})[seed] = float(special.rel_entr(bcp, p).sum(1).mean())
    return out

"""Theory configs, one experiment run, and ``theory all`` with its combined report.

A theory config (``configs/theory/<name>.yaml``) holds::

    experiment: convergence        # a registered experiment (`bayesdistill list theory`)
    seeds: [0, 1, 2, 3, 4]
    options: {steps: 20000}        # the experiment's keyword options (validated)
    quick:                         # overrides used by `theory all` / --quick (reduced size)
      seeds: [0, 1, 2, 3, 4]       # claims over seeds are paired 95 % t intervals: keep ≥ 5
      options: {steps: 10000}
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic
import torch
import yaml

from bayesdistill.config.loading import apply_override, format_validation_error
from bayesdistill.errors import ConfigError
from bayesdistill.io import write_json, write_text
from bayesdistill.layout import RunKind, RunLayout
from bayesdistill.registry import Registry
from bayesdistill.runner.identity import RunIdentity, finish_run, open_run
from bayesdistill.runner.output import inspect_output
from bayesdistill.theory import (
    convergence,
    noise,
    real_data,
    risk_variance,
    self_distill,
    synthetic_study,
    train_point_targets,
)
from bayesdistill.theory.context import ExperimentContext, log
from bayesdistill.theory.report import (
    CLAIMS_NAME,
    REPORT_NAME,
    ExperimentResult,
    claims_table,
    read_result,
    write_result,
)

EXPERIMENTS: Registry = Registry("theory experiment")
EXPERIMENTS.register("synthetic_study")(synthetic_study.run)
EXPERIMENTS.register("gradient_noise")(noise.run)
EXPERIMENTS.register("convergence")(convergence.run)
EXPERIMENTS.register("risk_variance")(risk_variance.run)
EXPERIMENTS.register("self_distillation")(self_distill.run)
EXPERIMENTS.register("real_data")(real_data.run)
EXPERIMENTS.register("train_point_targets")(train_point_targets.run)

ORDER = [
    "synthetic_study",
    "gradient_noise",
    "convergence",
    "risk_variance",
    "self_distillation",
    "real_data",
    "train_point_targets",
]
"""The experiments in the order of the issue (and of ``theory all``)."""
THEORY_THREADS = 1
"""Torch threads for theory runs: their tensors are tiny (batch size 1, d ≤ 30), where
intra-op threading costs more than it gains (×3–10 slower on a busy 2-core machine)."""


class QuickOverrides(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    seeds: list[int] | None = None
    options: dict[str, Any] = {}


class TheoryConfig(pydantic.BaseModel):
    """One theory experiment: which, over which seeds, with which options."""

    model_config = pydantic.ConfigDict(extra="forbid")
    experiment: str
    seeds: list[int] = [0, 1, 2]
    options: dict[str, Any] = {}
    quick: QuickOverrides = QuickOverrides()

    def resolved(self, quick: bool) -> TheoryConfig:
        """The config with its ``quick`` overrides applied (if ``quick``), options validated."""
        seeds = self.quick.seeds if quick and self.quick.seeds is not None else self.seeds
        options = {**self.options, **(self.quick.options if quick else {})}
        if not seeds:
            raise ConfigError("seeds must not be empty")
        EXPERIMENTS.validate_options(self.experiment, options)
        return TheoryConfig(experiment=self.experiment, seeds=seeds, options=options)


def shipped_theory_configs() -> dict[str, Path]:
    """``name → path`` of the configs under the package's ``configs/theory/``."""
    folder = Path(str(resources.files("bayesdistill") / "configs" / "theory"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_theory_config(source: str | Path, overrides: Sequence[str] = ()) -> TheoryConfig:
    """Read a theory YAML (or a shipped config's name) with ``key.sub=value`` overrides."""
    path = Path(source)
    if not path.is_file():
        shipped = shipped_theory_configs()
        if str(source) in shipped:
            path = shipped[str(source)]
        else:
            raise FileNotFoundError(
                f"theory config not found: '{source}'; shipped theory configs: {', '.join(shipped)}"
            )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"theory config '{path}' is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"theory config '{path}' must be a mapping, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    for item in overrides:
        apply_override(raw, item)
    try:
        config = TheoryConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"theory config '{path}'")) from None
    EXPERIMENTS.entry(config.experiment)  # unknown names list the valid ones
    return config


def run_theory(
    config: TheoryConfig,
    out: str | Path,
    *,
    quick: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> ExperimentResult:
    """Run one experiment into ``out`` (run.json, config.yaml, environment.json,
    metrics.jsonl, figures/, steps/, claims.json, report.md).

    As for a study, ``out`` must be empty unless ``resume``, and a resumed folder must hold a
    run of the same resolved config. Resuming a finished run recomputes nothing: its report
    is rebuilt from the stored steps.
    """
    layout = RunLayout(Path(out))
    existing = inspect_output(layout, kind=RunKind.THEORY, resume=resume)
    resolved = config.resolved(quick)
    options = EXPERIMENTS.validate_options(resolved.experiment, resolved.options)
    values = resolved.model_dump(exclude={"quick"})
    identity = RunIdentity(RunKind.THEORY, values)
    open_run(layout, identity, existing, yaml.safe_dump(values, sort_keys=False))
    if existing.record is not None and existing.record.get("finished"):
        log.info(
            "'%s' holds a finished theory run; rebuilding its report from its steps", layout.root
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(THEORY_THREADS)
    tic = time.perf_counter()
    try:
        ctx = ExperimentContext(layout.root, list(resolved.seeds), progress=progress, resume=resume)
        result = EXPERIMENTS.get(resolved.experiment)(ctx, **options)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - tic
    result.summary += f" Run time {seconds:.0f} s."
    write_result(layout.root, result)
    write_json(layout.timing, {"seconds": seconds})
    finish_run(layout, identity)
    log.info(
        "theory %s: %d/%d claims held (%.0f s)",
        resolved.experiment,
        sum(c.held for c in result.claims),
        len(result.claims),
        seconds,
    )
    return result


def run_all(
    out: str | Path, *, quick: bool = True, resume: bool = False, progress: bool = True
) -> str:
    """Every shipped theory config (reduced size by default) and one combined ``report.md``;
    ``out`` must be empty unless ``resume`` (which skips the finished experiments)."""
    layout = RunLayout(Path(out))
    existing = inspect_output(layout, kind=RunKind.THEORY_ALL, resume=resume)
    configs = shipped_theory_configs()
    names = [n for n in ORDER if n in configs] + [n for n in configs if n not in ORDER]
    loaded = {name: load_theory_config(configs[name]) for name in names}
    values = {
        "experiments": {
            name: c.resolved(quick).model_dump(exclude={"quick"}) for name, c in loaded.items()
        },
        "quick": quick,
    }
    identity = RunIdentity(RunKind.THEORY_ALL, values)
    open_run(layout, identity, existing, yaml.safe_dump(values, sort_keys=False))
    tic = time.perf_counter()
    results: dict[str, ExperimentResult] = {}
    for name in names:
        folder = layout.theory_experiment(name).root
        if resume and (folder / CLAIMS_NAME).is_file():
            results[name] = read_result(folder)
            continue
        results[name] = run_theory(
            loaded[name], folder, quick=quick, resume=resume, progress=progress
        )
    seconds = time.perf_counter() - tic
    report = combined_report(results, quick, seconds)
    write_text(layout.root / REPORT_NAME, report)
    finish_run(layout, identity)
    return report


def combined_report(results: dict[str, ExperimentResult], quick: bool, seconds: float) -> str:
    held = sum(c.held for r in results.values() for c in r.claims)
    total = sum(len(r.claims) for r in results.values())
    lines = [
        "# bayesdistill theory lab",
        "",
        f"{'Reduced-size' if quick else 'Full-size'} runs of {len(results)} experiments in {seconds:.0f} s; "
        f"{held} of {total} claims held. Each experiment's folder has its report.md, figures/ and metrics.jsonl.",
        "",
    ]
    for name, result in results.items():
        lines += [
            f"## {result.title}",
            "",
            f"[{name}/report.md]({name}/report.md) — {result.summary}",
            "",
            claims_table(result.claims),
            "",
        ]
        lines += [f"![{Path(f).stem}]({name}/{f})" for f in result.figures] + [""]
    return "\n".join(lines)

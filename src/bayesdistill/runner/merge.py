"""Several study folders, one table: merge compatible runs into one study folder.

Studies are compatible when they ran the same data and protocol: their configs agree on
everything that makes a run (`bayesdistill.runner.identity.run_config`: not the executor
nor the log options, which change where units ran and what was recorded besides, not what
they computed) but the seeds and the teacher kinds. The merged folder holds a config with every seed and
every teacher kind, the first folder's data.json, and per seed links to the source
pieces (teacher network, teacher kinds, students; a piece that several folders hold is
taken from the first); `bayesdistill.reports.write_reports` then writes one results table.
Runs of the same seed in different folders must agree on what they share (the same
deterministic teacher network), which holds when they ran the same config with the same
package versions; merging checks the teacher networks' weights where two folders have one.

Links are symbolic, so the merged folder stays small; moving the sources breaks it (copy
with ``cp -rL`` to keep a self-contained folder).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bayesdistill.config.loading import dump_config, load_config
from bayesdistill.errors import ConfigError
from bayesdistill.io import read_json, write_json, write_text
from bayesdistill.layout import RunKind, RunLayout
from bayesdistill.reports import write_reports
from bayesdistill.runner.identity import (
    LATER_FACTS,
    RunIdentity,
    config_values,
    file_sha256,
    recorded_facts,
    run_differences,
)
from bayesdistill.runner.output import recorded_kind

IGNORED = ("seeds", "teachers")
"""Config keys that may differ between merged studies."""


def merge_studies(folders: Sequence[str | Path], out: str | Path) -> Path:
    """Merge the study folders ``folders`` into a new study folder ``out`` and write its
    reports; returns ``out``.

    Raises `ConfigError` when a folder is not a study, when two configs differ in anything
    but seeds and teacher kinds or two run.json files in a `LATER_FACTS` value (the
    teacher network's training seed stream: a folder recorded before it and a new one),
    naming the differences, when ``out`` is not empty, or when two folders hold different
    teacher networks for one seed.
    """
    if len(folders) < 2:
        raise ConfigError("merging needs at least two study folders")
    layouts = [RunLayout(Path(f)) for f in folders]
    configs = [_study_config(layout) for layout in layouts]
    facts = [recorded_facts(layout) for layout in layouts]
    first = _comparable(configs[0])
    for layout, config, own in zip(layouts[1:], configs[1:], facts[1:], strict=True):
        names = (f"'{layouts[0].root}'", f"'{layout.root}'")
        changed = run_differences(first, _comparable(config), names) + [
            f"{key} (run.json): {facts[0][key]!r} in {names[0]}, {value!r} in {names[1]}"
            for key, value in own.items()
            if value != facts[0][key]
        ]
        if changed:
            raise ConfigError(
                f"cannot merge '{layout.root}' with '{layouts[0].root}': their studies differ "
                f"in {'; '.join(changed)} (only seeds and teacher kinds may differ)"
            )
    target = RunLayout(Path(out))
    if target.root.exists() and any(target.root.iterdir()):
        raise ConfigError(f"--out '{target.root}' is not empty; choose a new folder to merge into")
    merged = _merged_config(configs)
    target.root.mkdir(parents=True, exist_ok=True)
    for seed in merged["seeds"]:
        _link_seed(
            seed,
            [layout for layout, c in zip(layouts, configs, strict=True) if seed in c["seeds"]],
            target,
        )
    config = load_config(merged)
    write_text(target.config, dump_config(config))
    write_json(target.data, read_json(layouts[0].data))
    write_json(
        target.root / "merged_from.json",
        {"folders": [str(layout.root.resolve()) for layout in layouts]},
    )
    recorded = {key: value for key, value in facts[0].items() if value != LATER_FACTS[key][0]}
    identity = RunIdentity(RunKind.STUDY, config_values(config), extra=recorded)
    write_json(target.identity, identity.record(finished=True))
    write_reports(target.root)
    return target.root


def _study_config(layout: RunLayout) -> dict[str, Any]:
    if not layout.root.is_dir():
        raise FileNotFoundError(f"study folder not found: '{layout.root}'")
    kind = recorded_kind(layout)
    if kind is not RunKind.STUDY:
        found = "no bayesdistill run" if kind is None else f"a {kind.value} run"
        raise ConfigError(f"'{layout.root}' is not a study folder: it holds {found}")
    return yaml.safe_load(layout.config.read_text(encoding="utf-8"))


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in IGNORED}


def _merged_config(configs: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(configs[0])
    merged["seeds"] = sorted({s for c in configs for s in c["seeds"]})
    kinds: list[Any] = []
    labels: set[str] = set()
    for config in configs:
        for kind in config["teachers"]:
            label = kind if isinstance(kind, str) else kind.get("label") or kind["name"]
            if label not in labels:
                labels.add(label)
                kinds.append(kind)
    merged["teachers"] = kinds
    return merged


def _link_seed(seed: int, sources: list[RunLayout], target: RunLayout) -> None:
    """Link the pieces of seed ``seed`` from ``sources`` (first wins) into ``target``."""
    networks = [
        s.seed(seed).network.network for s in sources if s.seed(seed).network.network.is_file()
    ]
    digests = {file_sha256(n) for n in networks}
    if len(digests) > 1:
        raise ConfigError(
            f"seed {seed}: the folders hold different teacher networks ({', '.join(str(n) for n in networks)}); "
            "they did not run the same config and package versions, so their students are not "
            "paired across folders"
        )
    pieces = target.seed(seed)
    for source in sources:
        src = source.seed(seed)
        candidates = [src.network.folder]
        if src.teachers.is_dir():
            candidates += sorted(p for p in src.teachers.iterdir() if p.is_dir())
        students = src.folder / "students"
        if students.is_dir():
            for path in sorted(students.iterdir()):
                if (path / "summary.json").is_file():
                    candidates.append(path)  # the one-hot student
                elif path.is_dir():
                    candidates += sorted(p for p in path.iterdir() if p.is_dir())
        for path in candidates:
            if not path.exists():
                continue
            link = pieces.folder / path.relative_to(src.folder)
            if link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path.resolve(), link, target_is_directory=True)

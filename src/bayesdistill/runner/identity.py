"""What made a run folder, checked before a run starts or resumes in it.

Every run folder holds ``run.json``: the command that made it, a hash of its resolved
config, the seed (teacher and distill runs; a study's seeds are in its config), the
teacher file's hash (distill runs) and a fingerprint of the data (dataset, split sizes,
a hash of every label and of the first inputs), and whether the run finished. ``--resume``
refuses a folder whose record differs from what the command would make, naming both
values; resuming a finished run does nothing and says so.

A run starts in two steps, so that a command that fails leaves nothing behind:
`bayesdistill.runner.output.inspect_output` (before any work: ``--out`` is usable, not a
file, empty unless resuming) and, once everything the run needs is validated, `open_run` (creates the folder, writes
config.yaml, run.json and environment.json). `finish_run` marks the record finished.

In a distributed run only rank 0 looks at the folder; every rank acts on its answer.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
import yaml

from bayesdistill import __version__
from bayesdistill.config.loading import dump_config
from bayesdistill.config.schema import ExperimentConfig
from bayesdistill.data import DataSplits
from bayesdistill.errors import ConfigError
from bayesdistill.io import (
    is_writer,
    rank0_answer,
    read_json,
    remove_stale_temporaries,
    write_json,
    write_text,
)
from bayesdistill.layout import RunKind, RunLayout
from bayesdistill.runner.common import TEACHER_INIT_STREAM, TEACHER_TRAIN_STREAM
from bayesdistill.runner.environment import environment_changes, environment_record
from bayesdistill.runner.output import IDENTITY_FORMAT, Existing, create_folder, read_record

log = logging.getLogger("bayesdistill")

IDENTITY_VERSION = 1
FINGERPRINT_INPUTS = 16
"""Training inputs hashed in a data fingerprint (with every label)."""
FINGERPRINT_DECIMALS = 3
"""Inputs are rounded to this many decimals before hashing, so that last-bit differences
of the standardisation between machines or library versions do not count as other data."""
HASH_CHUNK = 1 << 20


class RunState(str, Enum):
    """How `open_run` found the folder."""

    NEW = "new"
    """Nothing was there: the run starts from scratch."""
    RESUMED = "resumed"
    """An unfinished run of the same identity: it continues."""
    FINISHED = "finished"
    """A finished run of the same identity: nothing to do."""


@dataclass(frozen=True)
class RunIdentity:
    """What makes a run: compared field by field when it is resumed.

    Attributes:
        command: the command that made it.
        config: the resolved config as plain values (its hash is recorded).
        seed: the seed of a teacher or distill run (None for a study: seeds are in its config).
        teacher: ``{"path", "sha256"}`` of the teacher file a distill run learns from, or of
            the ``teacher.checkpoint`` a study or teacher run uses (`file_record`).
        data: `data_fingerprint` of the data.
    """

    command: RunKind
    config: Mapping[str, Any]
    seed: int | None = None
    teacher: Mapping[str, Any] | None = None
    data: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def config_sha256(self) -> str:
        return text_sha256(yaml.safe_dump(dict(self.config), sort_keys=True))

    def record(self, *, finished: bool = False) -> dict[str, Any]:
        return {
            "format": IDENTITY_FORMAT,
            "version": IDENTITY_VERSION,
            "command": self.command.value,
            "config_sha256": self.config_sha256,
            "seed": self.seed,
            "teacher": None if self.teacher is None else dict(self.teacher),
            "data": None if self.data is None else dict(self.data),
            **dict(self.extra),
            "bayesdistill": __version__,
            "finished": finished,
        }

    def differences(self, record: Mapping[str, Any], saved_config: Any) -> list[tuple[str, str]]:
        """What differs between ``record`` (a folder's run.json) and this identity:
        ``(field, detail)`` pairs whose detail names the folder's value and this command's."""
        out: list[tuple[str, str]] = []
        if record.get("command") != self.command.value:
            detail = f"'{record.get('command')}' made it, this is '{self.command.value}'"
            return [("command", detail)]
        if record.get("config_sha256") != self.config_sha256:
            changed = config_differences(saved_config, dict(self.config))
            detail = "; ".join(changed) if changed else "its config.yaml was edited"
            out.append(("config", detail))
        if record.get("seed") != self.seed:
            out.append(("seed", f"{record.get('seed')} in the folder, {self.seed} here"))
        saved_teacher = record.get("teacher") or {}
        teacher = self.teacher or {}
        if saved_teacher.get("sha256") != teacher.get("sha256"):
            out.append(
                (
                    "teacher",
                    f"'{saved_teacher.get('path')}' (sha256 {_short(saved_teacher.get('sha256'))})"
                    f" in the folder, '{teacher.get('path')}' "
                    f"(sha256 {_short(teacher.get('sha256'))}) here",
                )
            )
        saved_data = record.get("data") or {}
        changed_data = [
            f"{key}: {saved_data.get(key)!r} in the folder, {value!r} here"
            for key, value in (self.data or {}).items()
            if saved_data.get(key) != value
        ]
        if changed_data:
            out.append(("data", "; ".join(changed_data)))
        for key, value in self.extra.items():
            if record.get(key) != value:
                out.append((key, f"{record.get(key)!r} in the folder, {value!r} here"))
        return out


def _short(digest: Any) -> str:
    return "none" if not digest else str(digest)[:12]


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: str | os.PathLike[str] | None) -> dict[str, str] | None:
    """``{"path", "sha256"}`` of a file a run reads (its resolved path and its bytes' hash), so
    that resuming with another file under the same name is refused; None for no file."""
    if path is None:
        return None
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}


def data_fingerprint(splits: DataSplits) -> dict[str, Any]:
    """Dataset name, shape, split sizes, a hash of every label (train, val, test in order)
    and of the first `FINGERPRINT_INPUTS` training inputs (rounded, see
    `FINGERPRINT_DECIMALS`): what tells two datasets apart without hashing all inputs."""
    labels = hashlib.sha256()
    for part in (splits.train, splits.val, splits.test):
        labels.update(part.y.detach().cpu().to(torch.int64).numpy().tobytes())
    inputs = _first_inputs(splits.train, FINGERPRINT_INPUTS)
    rounded = torch.round(inputs.detach().cpu().double(), decimals=FINGERPRINT_DECIMALS)
    rounded = rounded + 0.0  # -0.0 and 0.0 hash alike
    return {
        "dataset": splits.name,
        "num_classes": splits.num_classes,
        "input_shape": list(splits.input_shape),
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_test": len(splits.test),
        "labels_sha256": labels.hexdigest(),
        "inputs_sha256": hashlib.sha256(rounded.numpy().tobytes()).hexdigest(),
    }


def _first_inputs(data: Any, count: int) -> torch.Tensor:
    count = min(count, len(data))
    x = getattr(data, "x", None)
    if isinstance(x, torch.Tensor):
        return x[:count]
    return torch.stack([torch.as_tensor(data.dataset[i][0]) for i in range(count)])


LATER_OPTIONS: dict[tuple[str, str], Any] = {("runtime", "samples_per_pass"): 1}
"""Options added after runs were first recorded, each with the value that does what runs
did before it existed: left out of a run's identity while they hold that value, so that
folders recorded before the option resume (and a value other than that one is refused)."""
NOT_COMPUTED = (("runtime", "executor"), ("log",))
"""Config sections that change where units run and what is recorded besides, not what
they compute: no part of a run's identity."""


def run_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """What makes a run, of a config as plain values (a config.yaml's): everything but the
    `NOT_COMPUTED` sections and the `LATER_OPTIONS` that hold their old behaviour. Runs
    whose configs give the same `run_config` compute the same: the one rule behind a run's
    identity (studies, single runs) and merging (`run_differences`)."""
    out = copy.deepcopy(dict(values))
    for *sections, key in NOT_COMPUTED:
        part = out
        for section in sections:
            part = part.get(section) or {}
        part.pop(key, None)
    return without_later_defaults(out)


def config_values(config: ExperimentConfig) -> dict[str, Any]:
    """`run_config` of a resolved config (what its config.yaml holds)."""
    return run_config(yaml.safe_load(dump_config(config)))


def without_later_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (a config as plain values) without the `LATER_OPTIONS` that hold their old
    behaviour, in place; returned for convenience."""
    for (section, key), old in LATER_OPTIONS.items():
        part = values.get(section, {})
        if part.get(key, old) == old:
            part.pop(key, None)
    return values


def config_differences(saved: Any, new: Any, prefix: str = "", limit: int = 5) -> list[str]:
    """``key: <saved> in the folder, <new> here`` for the first ``limit`` differing keys.

    Only the keys of ``new`` (an identity's config) count: a section left out of a run's
    identity (``runtime.executor``: where units run, not what they compute) may differ. A
    `LATER_OPTIONS` key that ``new`` leaves out (it holds the old behaviour) counts with
    that value when ``saved`` has it."""
    return _differences(saved, new, prefix, limit, ("in the folder", "here"), both=False)


def run_differences(
    first: Mapping[str, Any], second: Mapping[str, Any], names: tuple[str, str], limit: int = 5
) -> list[str]:
    """``key: <first> in <names[0]>, <second> in <names[1]>`` for the first ``limit`` keys
    where the `run_config` of two configs (plain values) differ, looked at both ways: the
    same answer whichever comes first."""
    a, b = run_config(first), run_config(second)
    return _differences(a, b, "", limit, (f"in {names[0]}", f"in {names[1]}"), both=True)


def _differences(
    a: Any, b: Any, prefix: str, limit: int, names: tuple[str, str], *, both: bool
) -> list[str]:
    """The keys of ``b`` (and of ``a`` too when ``both``) where ``a`` and ``b`` differ, a
    `LATER_OPTIONS` key one side leaves out counting with its old value."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            later = {key: old for (section, key), old in LATER_OPTIONS.items() if section == path}
            b = {**{k: v for k, v in later.items() if k in a}, **b}
            a = {**{k: v for k, v in later.items() if k in b}, **a}
            keys = list(b) + [k for k in a if k not in b] if both else list(b)
            for key in keys:
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}.{i}")
        elif a != b:
            out.append(f"{path or '(top level)'}: {a!r} {names[0]}, {b!r} {names[1]}")

    walk(a, b, prefix)
    return out


TEACHER_TRAIN_STREAM_FACT = "teacher_train_stream"
LATER_FACTS: dict[str, tuple[Any, Any]] = {
    TEACHER_TRAIN_STREAM_FACT: (TEACHER_INIT_STREAM, TEACHER_TRAIN_STREAM),
}
"""Facts of a run recorded in run.json since a change to what runs compute, each as (what a
record without it means: what runs did before, what new runs record). A folder recorded
before the change keeps the old value when resumed, so it gives the results it gave.
``teacher_train_stream``: the seed stream of the teacher network's training."""


def run_facts(existing: Existing) -> dict[str, Any]:
    """What a run in a folder that held ``existing`` records of the `LATER_FACTS`: a new
    run, every new value; a recorded run, the ones its record holds (it keeps the others'
    old values, and its record stays as it was)."""
    if existing.record is None and existing.config is None:
        return {key: new for key, (_, new) in LATER_FACTS.items()}
    record = existing.record or {}
    return {key: record[key] for key in LATER_FACTS if key in record}


def fact(record: Mapping[str, Any] | None, key: str) -> Any:
    """The value of `LATER_FACTS` ``key`` in a run record (or `run_facts`): the old one when
    it lacks it (or there is no record: a folder from before run.json)."""
    return (record or {}).get(key, LATER_FACTS[key][0])


def recorded_facts(layout: RunLayout) -> dict[str, Any]:
    """Every `LATER_FACTS` value of the run recorded in ``layout`` (see `fact`)."""
    record = read_record(layout) if layout.identity.is_file() else None
    return {key: fact(record, key) for key in LATER_FACTS}


def open_run(
    layout: RunLayout,
    identity: RunIdentity,
    existing: Existing,
    config_text: str,
    *,
    device: torch.device | None = None,
    outputs: Sequence[Path] = (),
) -> RunState:
    """Create (or reopen) the run folder once everything the run needs is validated.

    ``existing`` is what `inspect_output` found. A folder whose record (or, written before
    records existed, whose config) differs from ``identity`` is refused, naming each
    difference. A finished run whose ``outputs`` all exist is left untouched
    (`RunState.FINISHED`). Otherwise the folder is created, stale temporaries are removed
    and config.yaml, run.json and environment.json are written.
    """
    root = layout.root
    state = RunState.NEW
    if existing.record is not None:
        changed = identity.differences(existing.record, existing.config)
        if changed:
            fields = " and ".join(name for name, _ in changed)
            details = "; ".join(f"{name}: {detail}" for name, detail in changed)
            raise ConfigError(
                f"cannot resume '{root}': it holds a run of another {fields} ({details}). "
                f"Resume with what made it (see {layout.config} and {layout.identity}), or "
                "choose another --out folder"
            )
        done = bool(existing.record.get("finished"))
        if done and rank0_answer(all(Path(p).exists() for p in outputs)):
            return RunState.FINISHED
        state = RunState.RESUMED
    elif existing.config is not None:  # a run folder from before run.json
        changed = config_differences(existing.config, dict(identity.config))
        if changed:
            raise ConfigError(
                f"cannot resume '{root}' with a different config ({'; '.join(changed)}); its "
                f"config is {layout.config}. Resume with that config, or choose another --out "
                "folder"
            )
        state = RunState.RESUMED
    create_folder(root)
    remove_stale_temporaries(root)
    write_text(layout.config, config_text)
    write_json(layout.identity, identity.record(finished=False))
    _record_environment(layout, device, resumed=state is RunState.RESUMED)
    return state


def _record_environment(layout: RunLayout, device: torch.device | None, *, resumed: bool) -> None:
    """environment.json: the environment that started the run; a resumed run adds its
    own under ``resumed_in`` when it differs (other versions can change the numbers).
    Decided on rank 0: every rank then makes the same writes (each ends with a barrier)."""
    payload = rank0_answer(_environment_payload(layout, device, resumed) if is_writer() else None)
    if payload is not None:
        write_json(layout.environment, payload)


def _environment_payload(
    layout: RunLayout, device: torch.device | None, resumed: bool
) -> dict[str, Any] | None:
    current = environment_record(device)
    if not (resumed and layout.environment.is_file()):
        return current
    try:
        saved = read_json(layout.environment)
    except ValueError:
        return current
    if not isinstance(saved, dict):
        return current
    changes = environment_changes(saved, current)
    if not changes:
        return None
    log.warning(
        "resuming '%s' in another environment (%s); the numbers may differ from an "
        "uninterrupted run",
        layout.root,
        "; ".join(changes),
    )
    resumed_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    saved.setdefault("resumed_in", []).append({**current, "resumed_at": resumed_at})
    return saved


def finish_run(layout: RunLayout, identity: RunIdentity) -> None:
    """Mark the run finished: a later ``--resume`` says so and does nothing."""
    write_json(layout.identity, identity.record(finished=True))

"""The output folder of a run, looked at before any work: can it hold the run?

`inspect_output` checks ``--out`` before a run does anything: it is (or can become) a
folder we may write to, is empty unless resuming, and holds a run of the same kind if it
holds one; it answers with what the folder holds (`Existing`: its run record and config),
which `bayesdistill.runner.identity.open_run` compares with the new run's identity before
it creates the folder (`create_folder`). In a distributed run only rank 0 looks at the
folder; every rank acts on its answer.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bayesdistill.errors import BayesDistillError, ConfigError
from bayesdistill.io import is_writer, rank0_answer, read_json
from bayesdistill.layout import RunKind, RunLayout

IDENTITY_FORMAT = "bayesdistill.run"
"""The ``format`` of a run record (run.json)."""


class OutputFolderError(BayesDistillError, OSError):
    """``--out`` cannot hold the run: it is a file, lies under a file, or cannot be created."""


@dataclass(frozen=True)
class Existing:
    """What ``--out`` held when the command started (rank 0's view)."""

    record: dict[str, Any] | None
    config: Any
    """The folder's config.yaml, parsed (None when it has none)."""
    kind: RunKind | None
    """What the folder holds (from run.json, or guessed from its files)."""
    empty: bool


def inspect_output(layout: RunLayout, *, kind: RunKind, resume: bool) -> Existing:
    """Check, before any work, that ``layout.root`` can hold a ``kind`` run: it is (or can
    become) a folder, is empty unless ``resume``, and holds a ``kind`` run if it holds one.

    Raises:
        OutputFolderError: ``--out`` is a file, lies under a file, or its nearest existing
            folder cannot be written to.
        ConfigError: it holds a run (or other files) and ``resume`` is not set, or it holds
            another kind of run.
    """
    found = rank0_answer(_look(layout) if is_writer() else None)
    if isinstance(found, BaseException):
        raise found
    existing: Existing = found
    root = layout.root
    if existing.kind is None and existing.config is not None:  # a bare config.yaml
        if not resume:
            raise ConfigError(
                f"'{root}' already holds a run; pass --resume to continue it, or choose "
                "another --out folder"
            )
    elif existing.kind is not None:
        if not resume:
            raise ConfigError(
                f"'{root}' already holds a {existing.kind.value} run; pass --resume to continue "
                "it, or choose another --out folder"
            )
        if existing.kind is not kind:
            raise ConfigError(
                f"cannot resume '{root}' with `{kind.value}`: it holds a "
                f"{existing.kind.value} run; choose another --out folder"
            )
    elif not existing.empty:
        raise ConfigError(
            f"output folder '{root}' is not empty and holds no bayesdistill run; choose "
            "another --out folder"
        )
    return existing


def _look(layout: RunLayout) -> Existing | BaseException:
    """What the folder holds, or the error to raise (computed on rank 0 only)."""
    root = layout.root
    try:
        if root.exists() and not root.is_dir():
            return OutputFolderError(
                f"--out '{root}' is a file, not a folder; choose a folder (new or empty) for "
                "the run"
            )
        if not root.exists():
            return _check_creatable(root)
        empty = not any(root.iterdir())
        if not os.access(root, os.W_OK | os.X_OK):
            return OutputFolderError(
                f"cannot write to --out '{root}': permission denied; choose a folder you may "
                "write to"
            )
        record = read_record(layout) if layout.identity.is_file() else None
        config = read_config(layout) if layout.config.is_file() else None
    except OSError as exc:
        return OutputFolderError(f"cannot use --out '{root}': {exc.strerror or exc}")
    except ConfigError as exc:
        return exc
    try:
        kind = recorded_kind(layout) if record is not None or config is not None else None
    except ConfigError as exc:
        return exc
    return Existing(record, config, kind, empty)


def _check_creatable(root: Path) -> Existing | OutputFolderError:
    """The folder does not exist: its nearest existing ancestor must be a writable folder."""
    parent = root.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return OutputFolderError(
            f"cannot create --out '{root}': '{parent}' is a file, not a folder; choose a path "
            "under a folder"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        return OutputFolderError(
            f"cannot create --out '{root}': permission denied in '{parent}'; choose a folder "
            "you may write to"
        )
    return Existing(None, None, None, True)


def recorded_kind(layout: RunLayout) -> RunKind | None:
    """What kind of run the folder holds: its run.json's command, or, for a folder written
    before run.json existed, a guess from its files; None when it holds no run."""
    if not layout.identity.is_file():
        return layout.guess_kind()
    command = read_record(layout).get("command")
    try:
        return RunKind(command)
    except ValueError:
        raise ConfigError(
            f"'{layout.identity}' names an unknown command {command!r}; it was not written by "
            "this version of bayesdistill"
        ) from None


def read_record(layout: RunLayout) -> dict[str, Any]:
    """The run record (run.json) of ``layout``; `ConfigError` when it is not one."""
    try:
        record = read_json(layout.identity)
    except ValueError as exc:
        raise ConfigError(
            f"'{layout.identity}' is not valid JSON ({exc}); it records what made the run in "
            f"'{layout.root}'. Restore it, or start the run in another --out folder"
        ) from None
    if not isinstance(record, dict) or record.get("format") != IDENTITY_FORMAT:
        raise ConfigError(
            f"'{layout.identity}' is not a bayesdistill run record; start the run in another "
            "--out folder"
        )
    return record


def read_config(layout: RunLayout) -> Any:
    """The config.yaml of ``layout``, parsed (not validated)."""
    try:
        return yaml.safe_load(layout.config.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"'{layout.config}' is not valid YAML: {exc}") from None


def create_folder(root: Path) -> None:
    """Create the run folder ``root`` (and its parents), or say why it cannot be."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM):
            reason += "; choose a folder you may write to"
        raise OutputFolderError(f"cannot create --out '{root}': {reason}") from exc

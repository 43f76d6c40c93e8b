"""Saved teacher files: which class reads a file of each kind, and `load_teacher`.

A file written by ``teacher.save(path)`` names its teacher's ``kind``. The class that reads
it back is found through the teacher registry (`TEACHERS`: each entry's ``saves`` tag), or
is one of the wrappers, which hold teachers of any kind (temperature scaling on top,
cross-fitting), are not kinds of their own and register themselves by kind
(`bayesdistill.teachers.base.wrapper_classes`). So this module imports no concrete
teacher; composite teachers (ensembles and the wrappers) rebuild their parts with
`teacher_from_payload`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bayesdistill.errors import CheckpointError
from bayesdistill.io import load_torch
from bayesdistill.teachers.base import TEACHER_FORMAT, SavableTeacher, wrapper_classes
from bayesdistill.teachers.context import TEACHERS


def saved_kinds() -> dict[str, type[SavableTeacher]]:
    """``kind`` → class, for every kind a saved teacher file may name: the ``saves`` class
    of each `TEACHERS` entry (under the entry's name), and the wrappers."""
    kinds: dict[str, type[SavableTeacher]] = {
        name: TEACHERS.entry(name).tags["saves"] for name in TEACHERS
    }
    return kinds | {cls.kind: cls for cls in wrapper_classes()}


def teacher_from_payload(kind: object, payload: dict[str, Any], what: str) -> SavableTeacher:
    """Rebuild a teacher of ``kind`` from its payload; `CheckpointError` for an unknown kind
    (``what`` names where it was found)."""
    classes = saved_kinds()
    if kind not in classes:
        raise CheckpointError(
            f"{what} has unknown kind {kind!r}; known kinds: {', '.join(sorted(classes))}"
        )
    return classes[kind].from_payload(payload)  # type: ignore[index]


def load_teacher(path: str | Path, device: torch.device | str = "cpu") -> SavableTeacher:
    """Reload a teacher written by ``teacher.save(path)``; no code is executed.

    Raises `FileNotFoundError` for a missing file and `CheckpointError` for a truncated,
    corrupt or foreign one.
    """
    state = load_torch(path, what="teacher", expected_format=TEACHER_FORMAT)
    kind = state.get("kind")
    try:
        teacher = teacher_from_payload(kind, state["payload"], f"teacher file '{path}'")
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"teacher file '{path}' (kind '{kind}') is incomplete or inconsistent: {exc}"
        ) from exc
    return teacher.to(device)

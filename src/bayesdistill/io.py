"""Atomic file output and safe checkpoint loading.

Nothing bayesdistill writes is ever half-written: every file is first written to a
temporary sibling (``.<name>.<random>.tmp``) in the same directory, flushed to disk and
then moved over the target with `os.replace`, which is atomic on POSIX and Windows. A run
killed mid-write leaves at worst a stale ``*.tmp`` sibling, which `remove_stale_temporaries`
deletes when the run resumes; the target is either the old complete file or the new one.

Files get the mode a plain ``open(path, "w")`` gives a new file, ``0o666`` minus the
user's umask (0o644 under the usual umask 0o022, 0o600 under 0o077), and folders
``0o777`` minus the umask (``Path.mkdir``). The temporary is created with
``os.open(..., 0o666)``, so the kernel applies the umask (and a folder's default ACL)
exactly as for ``open``; `os.replace` keeps that mode. Nothing reads the umask: reading it
means setting it (``os.umask(0)`` then restoring it), which changes it for every thread of
the process in between, and no lock of ours can stop another library's thread from
creating a world-writable file in that window. (``tempfile.mkstemp``, used before, creates
0o600 files whatever the umask, so results were unreadable to colleagues.) A rewrite makes
a new file: it gets the umask's mode, not the mode of the file it replaces.

In a distributed run (several processes launched by ``torchrun``) every process runs the
same code and calls the same writes, but only rank 0 writes files: the others write to
``os.devnull``. Each write ends with a barrier, so no process reads a file before rank 0
has finished writing it (a shared file system is assumed).

Checkpoints are loaded with ``torch.load(..., weights_only=True)``: loading never executes
code from the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

from bayesdistill.errors import CheckpointError

TEMP_SUFFIX = ".tmp"

NEW_FILE_MODE = 0o666
"""Mode requested for a new file, as `open` requests it; the kernel removes the umask's bits."""

TEMP_NAME_ATTEMPTS = 100
"""Random temporary names tried before giving up (a clash needs 2⁻⁶⁴ luck or a bug)."""


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; replace ``path`` on success only.

    The file ends with mode ``0o666 & ~umask``, as a new file made by ``open`` (see the
    module docstring). On any exception, ``KeyboardInterrupt`` included, the temporary is
    deleted and ``path`` keeps its old content.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', got {mode!r}")
    encoding = {"encoding": "utf-8"} if mode == "w" else {}
    if not is_writer():
        with open(os.devnull, mode, **encoding) as handle:
            yield handle
        _barrier()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = _create_temporary(target)
    try:
        with os.fdopen(fd, mode, **encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise
    _barrier()


def is_writer() -> bool:
    """Whether this process writes files: always, except ranks ≠ 0 of a distributed run."""
    return not _distributed() or torch.distributed.get_rank() == 0


def _distributed() -> bool:
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def files_exist(*paths: str | os.PathLike[str]) -> bool:
    """Whether every path is a file. In a distributed run, rank 0's answer on every rank:
    code that skips work when its output exists must take the same branch on all ranks,
    though rank 0 may already have written the file another rank is looking for."""
    return bool(rank0_answer(all(Path(p).is_file() for p in paths)))


def rank0_answer(value: Any) -> Any:
    """``value`` as rank 0 computed it, on every rank of a distributed run (``value`` itself
    otherwise): decisions about files that rank 0 alone writes must be taken on its view.
    ``value`` must be picklable; every rank must call this at the same point."""
    if _distributed():
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        value = box[0]
    return value


def _barrier() -> None:
    if _distributed():
        torch.distributed.barrier()


def _create_temporary(target: Path) -> tuple[int, Path]:
    """Create and open ``.<name>.<random>.tmp`` next to ``target``, as `open` would create it.

    ``O_EXCL`` makes the creation fail rather than reuse an existing file (a name taken
    by another writer is skipped); mode `NEW_FILE_MODE` lets the kernel apply the umask.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(TEMP_NAME_ATTEMPTS):
        candidate = target.parent / _temp_name(target)
        try:
            return os.open(candidate, flags, NEW_FILE_MODE), candidate
        except FileExistsError:
            continue
    raise FileExistsError(
        errno.EEXIST,
        f"no unused temporary name next to '{target}' after {TEMP_NAME_ATTEMPTS} attempts",
    )


def _temp_name(target: Path) -> str:
    return f".{target.name}.{secrets.token_hex(8)}{TEMP_SUFFIX}"


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN and inf become null: valid JSON)."""
    text = json.dumps(
        _finite(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False
    )
    write_text(path, text + "\n")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def save_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically ``torch.save`` an object made of tensors and plain Python values."""
    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def save_figure(path: str | os.PathLike[str], figure: Any, **savefig_kwargs: Any) -> None:
    """Atomically save a matplotlib figure; the format is taken from the suffix."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format=fmt, **savefig_kwargs)


def load_torch(
    path: str | os.PathLike[str],
    *,
    what: str = "checkpoint",
    map_location: str | torch.device | None = "cpu",
    expected_format: str | None = None,
) -> Any:
    """Load a file written by `save_torch` without executing code from it.

    Raises `FileNotFoundError` when the file is missing and `CheckpointError` (naming the
    file and how to fix it) when it is truncated, corrupt, not a torch file, or of another
    ``format`` than ``expected_format``.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{what} '{path}' is a folder, not a file; give the file's path")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"cannot read {what} '{path}': the file is empty (0 bytes), as a copy or a save "
            "that was cut short leaves it. Re-create it (for a training checkpoint: rerun "
            "without --resume)."
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        detail = type(exc).__name__
        first_line = next(iter(str(exc).splitlines()), "").strip()
        if first_line:
            detail += f": {first_line[:200]}"
        raise CheckpointError(
            f"cannot read {what} '{path}': the file is truncated, corrupt or not a "
            f"bayesdistill {what} ({detail}). "
            "Delete it and re-create it (for a training checkpoint: rerun without --resume)."
        ) from exc
    if expected_format is not None:
        found = obj.get("format") if isinstance(obj, dict) else None
        if found != expected_format:
            raise CheckpointError(
                f"'{path}' is not a {what}: expected format '{expected_format}', found {found!r}."
            )
    return obj


class JsonLines:
    """An append-only JSON-lines log (one dict per line), e.g. per-epoch metrics.

    Appends are flushed and fsynced line by line. A kill can leave at most one partial
    last line; `read` ignores it and `truncate` rewrites the file atomically.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        if not is_writer():
            _barrier()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(_finite(record), sort_keys=True, default=_json_default)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        _barrier()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break  # a partial line left by a kill
                records.append(json.loads(line))
        return records

    def truncate(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Keep only the complete records for which ``keep(record)`` is true."""
        kept = [r for r in self.read() if keep(r)]
        lines = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in kept)
        write_text(self.path, lines)


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete ``.*.tmp`` files that a killed run left under ``directory``; return them.

    In a distributed run rank 0 deletes them (the others might delete its temporaries in
    flight) and every rank waits for it."""
    directory = Path(directory)
    stale: list[Path] = []
    if is_writer() and directory.is_dir():
        stale = [p for p in directory.rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
    _barrier()
    return stale


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")

"""Atomic writes: the user's umask decides the mode, and a failed write changes nothing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bayesdistill import io
from bayesdistill.errors import CheckpointError
from bayesdistill.io import (
    JsonLines,
    atomic_open,
    load_torch,
    read_json,
    remove_stale_temporaries,
    save_torch,
    write_json,
    write_text,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def umask():
    """Set the process umask for one test; the old one is restored afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(io.TEMP_SUFFIX))


def _write_bytes(path: Path) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(b"\x00\x01")


def _append_then_truncate(path: Path) -> None:
    log = JsonLines(path)
    log.append({"epoch": 1})
    log.append({"epoch": 2})
    log.truncate(lambda r: r["epoch"] < 2)


WRITERS = {
    "write_text": lambda path: write_text(path, "hello\n"),
    "write_json": lambda path: write_json(path, {"a": 1.0}),
    "save_torch": lambda path: save_torch(path, {"w": torch.zeros(2)}),
    "atomic_open_wb": _write_bytes,
    "jsonlines_append": lambda path: JsonLines(path).append({"epoch": 1}),
    "jsonlines_truncate": _append_then_truncate,
}


@posix_only
@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_of_a_plain_open(tmp_path, umask, writer, mask, expected):
    umask(mask)
    path = tmp_path / "out.dat"
    WRITERS[writer](path)
    assert _mode(path) == expected, oct(_mode(path))
    reference = tmp_path / "plain.dat"
    with open(reference, "w") as handle:
        handle.write("x")
    assert _mode(path) == _mode(reference)
    assert _temporaries(tmp_path) == []


@posix_only
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o755), (0o077, 0o700)])
def test_folders_made_for_a_file_get_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    write_json(tmp_path / "run" / "seed0" / "metrics.json", {})
    JsonLines(tmp_path / "log" / "history.jsonl").append({})
    for folder in ("run", "run/seed0", "log"):
        assert _mode(tmp_path / folder) == expected, folder


@posix_only
def test_a_rewrite_of_an_old_private_file_gets_the_umask_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "results.json"
    path.write_text("{}")
    path.chmod(0o600)  # as earlier versions, via mkstemp, left every file
    write_json(path, {"a": 1})
    assert _mode(path) == 0o644


@posix_only
def test_writing_leaves_the_process_umask_alone(tmp_path, umask):
    umask(0o027)
    write_text(tmp_path / "a.txt", "a")
    assert umask(0o027) == 0o027
    assert _mode(tmp_path / "a.txt") == 0o640


# --- atomicity ----------------------------------------------------------------------------


class BoomError(Exception):
    pass


@pytest.mark.parametrize("error", [BoomError, KeyboardInterrupt])
@pytest.mark.parametrize("mode", ["w", "wb"])
def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, error, mode):
    path = tmp_path / "results.json"
    write_json(path, {"old": True})
    with pytest.raises(error), atomic_open(path, mode) as handle:
        handle.write("partial" if mode == "w" else b"partial")
        handle.flush()
        assert len(_temporaries(tmp_path)) == 1  # the new content goes elsewhere
        raise error()
    assert read_json(path) == {"old": True}
    assert _temporaries(tmp_path) == []


def test_a_failure_inside_torch_save_leaves_the_old_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_torch(path, {"format": "ckpt", "step": 1})
    with pytest.raises(Exception, match="pickle|local object"):
        save_torch(path, {"format": "ckpt", "step": 2, "fn": lambda: None})
    assert load_torch(path, expected_format="ckpt")["step"] == 1
    assert _temporaries(tmp_path) == []


def test_a_failed_replace_removes_the_temporary(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("x")
    with pytest.raises(OSError):
        write_text(target, "text")
    assert (target / "inside").read_text() == "x"
    assert _temporaries(tmp_path) == []


def test_a_killed_writer_leaves_the_old_file_and_a_stale_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"epoch": 1})
    script = textwrap.dedent(
        f"""
        import os
        from bayesdistill.io import atomic_open
        with atomic_open({str(path)!r}) as handle:
            handle.write('{{"epoch": 2, "trunc')
            handle.flush()
            os._exit(9)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == 9
    assert read_json(path) == {"epoch": 1}
    stale = _temporaries(tmp_path)
    assert len(stale) == 1 and stale[0].startswith(".metrics.json.")
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == stale
    assert _temporaries(tmp_path) == []


def test_a_temporary_name_in_use_is_skipped_not_reused(tmp_path, monkeypatch):
    taken = tmp_path / ".out.txt.taken.tmp"
    taken.write_text("another writer's")
    names = iter([taken.name, ".out.txt.free.tmp"])
    monkeypatch.setattr(io, "_temp_name", lambda target: next(names))
    write_text(tmp_path / "out.txt", "mine")
    assert (tmp_path / "out.txt").read_text() == "mine"
    assert taken.read_text() == "another writer's"


def test_no_free_temporary_name_is_an_error_naming_the_target(tmp_path, monkeypatch):
    taken = tmp_path / ".out.txt.taken.tmp"
    taken.write_text("x")
    monkeypatch.setattr(io, "_temp_name", lambda target: taken.name)
    with pytest.raises(FileExistsError, match=r"no unused temporary name next to .*out\.txt"):
        write_text(tmp_path / "out.txt", "mine")
    assert not (tmp_path / "out.txt").exists()


def test_only_write_modes_are_allowed(tmp_path):
    with pytest.raises(ValueError, match="modes 'w' and 'wb', got 'a'"):
        atomic_open(tmp_path / "x", "a").__enter__()


def test_loading_an_empty_file_names_it_and_the_problem(tmp_path):
    empty = tmp_path / "teacher.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"'.*teacher.pt': the file is empty \(0 bytes\)"):
        io.load_torch(empty, what="teacher")
    with pytest.raises(CheckpointError, match="is a folder, not a file"):
        io.load_torch(tmp_path, what="teacher")


@pytest.mark.parametrize("error", [EOFError(), RuntimeError(""), ValueError("\n\n")])
def test_a_load_error_without_a_message_still_gives_a_clear_one(tmp_path, monkeypatch, error):
    path = tmp_path / "x.pt"
    path.write_bytes(b"not a torch file")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(io.torch, "load", fail)
    with pytest.raises(CheckpointError, match=rf"truncated, corrupt .*\({type(error).__name__}\)"):
        io.load_torch(path, what="checkpoint")


def test_rank0_answer_is_the_value_itself_in_one_process():
    assert io.rank0_answer({"a": 1}) == {"a": 1}

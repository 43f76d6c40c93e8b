"""How `bayesdistill.cli.main.main` ends: a user's error is one line and exit status 2; a
bug keeps its traceback (nothing is swallowed)."""

from __future__ import annotations

import errno

import pytest

from bayesdistill.cli import main as cli
from bayesdistill.errors import ConfigError


def _ending(monkeypatch, exc: BaseException):
    """Run ``main()`` with a command that raises ``exc``; its SystemExit code."""

    def command(**_):
        raise exc

    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(SystemExit) as ended:
        cli.main()
    return ended.value.code


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (ConfigError("bad key"), "error: bad key"),
        (FileNotFoundError("config file not found: 'x.yaml'"), "config file not found"),
        (
            PermissionError(errno.EACCES, "Permission denied", "/data/run"),
            "error: '/data/run': permission denied; choose a path you may write to",
        ),
        (
            NotADirectoryError(errno.ENOTDIR, "Not a directory", "a/b"),
            "error: 'a/b': a part of this path is a file, not a folder",
        ),
        (
            IsADirectoryError(errno.EISDIR, "Is a directory", "runs"),
            "error: 'runs': this is a folder, not a file",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "runs/x.pt"),
            "error: 'runs/x.pt': no space left on the device",
        ),
        (
            OSError(errno.EXDEV, "Invalid cross-device link", "a.tmp", None, "b"),
            "error: 'a.tmp' -> 'b': Invalid cross-device link",
        ),
        (
            FloatingPointError("loss became nan at epoch 0; lower the learning rate"),
            "error: loss became nan at epoch 0; lower the learning rate",
        ),
        (
            RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"),
            "error: CUDA out of memory. Tried to allocate 2.00 GiB; lower the batch size",
        ),
    ],
)
def test_user_errors_are_one_line_and_exit_2(monkeypatch, capsys, exc, message):
    assert _ending(monkeypatch, exc) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1, err


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("boom"),
        ValueError("a bug"),
        KeyError("x"),
        OSError("an OSError that names no file and no known problem"),
    ],
)
def test_a_bug_keeps_its_traceback(monkeypatch, exc):
    def command(**_):
        raise exc

    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(type(exc)):
        cli.main()

"""What an error from outside bayesdistill means for a user: OS errors on files and folders,
running out of memory. `bayesdistill.cli.main.main` turns these into one ``error:`` line."""

from __future__ import annotations

import errno
import sys

OS_ERROR_HINTS = {
    errno.EACCES: "permission denied; choose a path you may write to, or change its permissions",
    errno.EPERM: "operation not permitted; choose a path you may write to",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "this is a folder, not a file",
    errno.ENOSPC: "no space left on the device; free some space or choose another disk",
    errno.EROFS: "the file system is read-only; choose a path on a writable disk",
    getattr(
        errno, "EDQUOT", errno.ENOSPC
    ): "disk quota exceeded; free some space or choose another disk",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.EEXIST: "it already exists",
    errno.ENOENT: "no such file or folder",
}
"""What an OS error on a path means for a user (by errno)."""


def os_error_message(exc: OSError) -> str | None:
    """``'<path>': <problem>`` for an OS error on a file or folder (None when the error
    names no path and no known problem: a bug, which keeps its traceback)."""
    problem = OS_ERROR_HINTS.get(exc.errno or -1) or exc.strerror
    if exc.filename is None:
        return None if exc.errno not in OS_ERROR_HINTS else f"{problem} ({exc})"
    where = f"'{exc.filename}'"
    if exc.filename2 is not None:
        where += f" -> '{exc.filename2}'"
    return f"{where}: {problem or exc}"


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's CUDA/MPS out-of-memory errors, without importing torch."""
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return (isinstance(oom, type) and isinstance(exc, oom)) or "out of memory" in str(exc)

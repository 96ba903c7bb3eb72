"""What writing the workbench's own files needs: errors a user can act on, and durable renames."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from workbench.core.errors import DiskFullError, WorkbenchError


def disk_error(exc: OSError, where: Path | str, retry: str = "run again") -> WorkbenchError:
    """Ours for a failed write of `where`: a full disk says so (and what to do after freeing
    space: `retry`), anything else names the cause."""
    if exc.errno == errno.ENOSPC:
        return DiskFullError(f"disk full while writing {where}; free some space and {retry}")
    return WorkbenchError(f"cannot write {where}: {exc.strerror or exc}")


def write_new_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` into a file that must not exist yet (O_EXCL: a leftover or a rival's is
    never written into), on disk before it is linked or renamed into place."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries, so a rename into it survives a crash, not only its file's bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

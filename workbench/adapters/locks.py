"""Advisory file locks between processes (and threads) on one workspace.

`flock` locks belong to an open file description, so two opens in one process exclude each
other too: the TUI's threads and a CLI command are kept apart the same way.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from workbench.core.errors import WorkbenchError


class LockBusy(WorkbenchError):
    """Someone else holds the lock (and we were not willing to wait longer)."""


@contextmanager
def file_lock(path: Path, timeout_s: float | None = None, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on `path`; wait up to `timeout_s` (None: forever, 0: not at all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise LockBusy(f"{what or path} is busy: another workbench process holds {path}") from None
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.1)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

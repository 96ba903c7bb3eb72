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
from typing import Callable, Iterator

from workbench.core.errors import WorkbenchError


class LockBusy(WorkbenchError):
    """Someone else holds the lock (and we were not willing to wait longer)."""


def acquire_flock(fd: int, operation: int, timeout_s: float | None, busy: Callable[[], Exception],
                  on_wait: Callable[[], None] | None = None, max_delay_s: float = 0.1) -> None:
    """Take the flock `operation` (LOCK_EX or LOCK_SH) on `fd`, retrying with a growing,
    jittered delay for up to `timeout_s` (None: as long as it takes, 0: once); raise `busy()`
    when the time is up. `on_wait` is called once, the first time the lock is not free."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    delay, told = 0.005, False
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if not told and on_wait is not None:
            on_wait()
            told = True
        if deadline is not None and time.monotonic() + delay > deadline:
            raise busy()
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, max_delay_s)


@contextmanager
def file_lock(path: Path, timeout_s: float | None = None, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on `path`; wait up to `timeout_s` (None: forever, 0: not at all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        acquire_flock(fd, fcntl.LOCK_EX, timeout_s,
                      lambda: LockBusy(f"{what or path} is busy: another workbench process holds {path}"))
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

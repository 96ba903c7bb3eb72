"""The workspace's gc lock, `.workbench/gc.lock`: whatever creates or reuses stored state
holds it shared, `workbench gc` holds it exclusive while it decides and deletes.

Holders, shared: a run, from its snapshot until it is recorded and registered
(services/session.py), and taking a snapshot anywhere (adapters/snapshots.py: a drift check's
scoring takes one outside a run). Shared holders never wait for each other, only for a gc in
progress, which holds it for seconds. gc waits for runs in progress to finish, up to its
`--wait`. `flock` locks belong to the open file, so threads of one process (the TUI's runs)
each hold their own, and a process that dies lets go of its own.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from workbench.adapters.locks import LockBusy, acquire_flock

LOCK_NAME = "gc.lock"


@contextmanager
def gc_lock(state_dir: Path, exclusive: bool, timeout_s: float | None = None,
            on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the workspace's gc lock, shared or exclusive; wait up to `timeout_s` (None:
    as long as it takes). `on_wait` is called once if the lock is not free at once."""
    path = state_dir / LOCK_NAME
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LockBusy(f"cannot open the workspace's gc lock {path}: {exc.strerror}") from None
    try:
        who = "runs are in progress on this workspace" if exclusive else "workbench gc is deleting"
        acquire_flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, timeout_s,
                      lambda: LockBusy(f"{who} (they hold {path}); waited {timeout_s:g} s"), on_wait, max_delay_s=0.2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

"""Who watches a project: one process at a time, across every workbench on the workspace.

Two watchers of one project (two `workbench watch`, or a watch and the TUI) would each run every
change. The process that watches a project holds an exclusive `flock` on a file in the state
folder (`watch/<project>.lock`) for as long as it watches; the kernel lets go of it when that
process ends, however it ends (SIGKILL included), so a waiting process can take over. The holder
writes its pid and what it is into the file, so the others can say who watches.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WatchHolder:
    """The process that watches a project."""

    pid: int
    what: str
    """e.g. "workbench watch" or "workbench TUI"."""


def lease_path(state_dir: Path, project: str) -> Path:
    # Names are free text in the manifest: keep them readable, but unique and safe as a file name.
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", project)[:60]
    digest = hashlib.sha256(project.encode()).hexdigest()[:8]
    return Path(state_dir) / "watch" / f"{safe}-{digest}.lock"


class WatchLease:
    """An exclusive claim on watching one project. `try_acquire` never blocks. Not thread-safe:
    one project's scheduler thread drives it."""

    def __init__(self, state_dir: Path, project: str, what: str):
        self.path = lease_path(state_dir, project)
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": self.what}).encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)  # under the lock: a reader never sees a stale holder
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def holder(self) -> WatchHolder | None:
        """Who holds it now, as far as the file says (None: nobody, or not written yet)."""
        try:
            data = json.loads(self.path.read_text() or "null")
            return WatchHolder(int(data["pid"]), str(data["what"])) if data else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

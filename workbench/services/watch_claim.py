"""One watcher per project across processes: the claim a project's scheduler holds while it
watches, and what it shows while another process holds it.

Two processes watching one project (two `workbench watch`, a watch and the TUI) would each run
every change. The scheduler that wants to watch a project first claims it (a `flock` lease in
the state folder, adapters/watch_lease.py). If another process holds it, this one says so once
(WatchedElsewhere: "watched by pid N (workbench watch)"), runs none of its changes, reports the
runs that process records (RunRecordedElsewhere), and tries again every second: when the holder
ends, however it ends, the lease is free and this process takes over.
"""

from __future__ import annotations

import os
import time

from workbench.adapters.watch_lease import WatchHolder, WatchLease
from workbench.core.errors import WorkbenchError
from workbench.core.events import RunEvent, RunRecordedElsewhere, WatchedElsewhere
from workbench.services.session import WorkbenchSession

POLL_S = 1.0
"""How often a process waiting for a project's claim tries again."""
RECENT_RUNS = 20


class WatchClaim:
    """Driven by one project's scheduler thread (not thread-safe)."""

    def __init__(self, session: WorkbenchSession, project: str, who: str):
        self.session = session
        self.project = project
        self.lease = WatchLease(session.workspace.ensure_state_dir(), project, who)
        self.waiting = False
        """Wanted, but another process holds it."""
        self.holder: WatchHolder | None = None
        """That process, once its lease file names it."""
        self.next_poll = 0.0
        self._newest_before: int | None = None
        self._reported: set[int] = set()
        self._lineage_seen: tuple | None = None

    @property
    def held(self) -> bool:
        return self.lease.held

    def claim(self) -> tuple[bool, list[RunEvent]]:
        """Try to become the project's watcher: (True, []) when this process now holds the
        claim; (False, events to show) while another does."""
        if self.lease.try_acquire():
            self.waiting, self.holder, self._newest_before = False, None, None
            self._reported.clear()
            return True, []
        self.waiting = True
        self.next_poll = time.monotonic() + POLL_S
        events: list[RunEvent] = []
        holder = self.lease.holder()
        if holder is not None and holder != self.holder:  # once, and again only if it changes hands
            self.holder = holder
            events.append(WatchedElsewhere(self.project, holder.pid, holder.what))
        events += self._runs_recorded_elsewhere()
        return False, events

    def release(self) -> None:
        self.lease.release()
        self.waiting = False

    def _runs_recorded_elsewhere(self) -> list[RunEvent]:
        """Runs of the project finished since this process started waiting. The store is read
        only when its files changed (a stat each poll), so waiting costs the holder nothing."""
        lineage = self.session.workspace.lineage_path
        seen = tuple(_stat(path) for path in (lineage, lineage.with_name(lineage.name + ".wal")))
        if seen == self._lineage_seen:
            return []
        try:
            runs = self.session.store.list_runs(self.project, limit=RECENT_RUNS)
        except WorkbenchError:
            return []  # busy or unreadable this time: the next poll tries again
        self._lineage_seen = seen
        if self._newest_before is None:  # what was recorded before we waited is not news
            self._newest_before = max((run.id for run in runs), default=0)
            return []
        fresh = [run for run in reversed(runs)
                 if run.id > self._newest_before and str(run.status) != "running" and run.id not in self._reported]
        self._reported.update(run.id for run in fresh)
        pid = self.holder.pid if self.holder else 0
        return [RunRecordedElsewhere(self.project, run, pid) for run in fresh]


def _stat(path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size

"""Watch mode: every change reruns exactly what it affects, and a newer change supersedes a run.

Per watched project there is one scheduler thread (services/watch_scheduler.py). File events
from the watcher land in an inbox (the watcher's thread only appends); the scheduler folds them
into one change once the quiet period passes (core/changes.py), hashes the changed files that
some stage reads, drops the change when no content changed, and asks for a run of the affected
stages and everything downstream. Runs execute one at a time per project on a thread of their
own (services/watch_runs.py), so the scheduler keeps listening: a change (or `run_now`) that
arrives during a run cancels it as superseded (its container or process is stopped), and the
next run covers both what the cancelled run was going to redo and the new change. Manual and
watch runs of one project never overlap.

Events: everything (run events and the watch events of core/events.py) is delivered to
`on_event` from the service's background threads, never from the caller's. The service holds
none of its locks while it calls `on_event`, so the sink may block: a Textual app can use
`app.call_from_thread(...)` or `post_message`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from workbench.adapters.watch_lease import WatchHolder
from workbench.core.errors import WorkbenchError
from workbench.core.events import EventSink, RunEvent
from workbench.core.model import Trigger
from workbench.core.ports import FileWatcher, FileWatcherFactory
from workbench.services.session import WorkbenchSession
from workbench.services.watch_scheduler import ProjectScheduler

log = logging.getLogger(__name__)


def _watchdog_watcher(root: str, sink, on_error) -> FileWatcher:
    from workbench.adapters.watcher import WatchdogWatcher

    return WatchdogWatcher(root, sink, on_error)


class WatchService:
    """Watches projects and reruns what each change affects. Every method may be called from any
    thread; see the module docstring for how events are delivered."""

    def __init__(self, session: WorkbenchSession, on_event: EventSink, *, debounce_ms: int | None = None,
                 watcher_factory: FileWatcherFactory | None = None, who: str = "workbench"):
        self.session = session
        self.on_event = on_event
        self.debounce_ms = debounce_ms
        """Quiet period for every project; None: each manifest's `watch.debounce_ms`."""
        self._watcher_factory = watcher_factory or _watchdog_watcher
        self.who = who
        """What this process is, as other processes are told ("workbench watch", "workbench TUI")."""
        self._lock = threading.Lock()
        self._projects: dict[str, ProjectScheduler] = {}
        self._closed = False

    # -- the API the CLI and the TUI use -------------------------------------------------------

    def watch(self, project: str) -> None:
        """Start watching a project (a no-op if it is watched). Raises WorkbenchError when the
        project or its manifest is invalid or its folder cannot be watched. WatchStarted follows
        once its starting hashes are taken; changes from then on rerun what they affect.

        One process watches a project at a time (services/watch_claim.py): if another does,
        WatchedElsewhere follows instead, this process runs none of the project's changes, and
        it takes over (WatchStarted) within a second or so of that process ending."""
        self._scheduler(project, create=True).attach()

    def unwatch(self, project: str) -> None:
        """Stop watching; a run in flight finishes (use cancel to stop it)."""
        scheduler = self._scheduler(project)
        if scheduler is not None:
            scheduler.detach()

    def is_watching(self, project: str) -> bool:
        scheduler = self._scheduler(project)
        return scheduler is not None and scheduler.watching

    def watched(self) -> list[str]:
        with self._lock:
            return sorted(name for name, s in self._projects.items() if s.watching)

    def watched_elsewhere(self, project: str) -> WatchHolder | None:
        """The process (pid, what it is) that watches a project this service was asked to watch,
        while this one waits to take over; None when this process watches it, or nobody does."""
        scheduler = self._scheduler(project)
        return scheduler.watched_elsewhere if scheduler is not None else None

    def run_now(self, project: str, stages: list[str] | None = None, trigger: Trigger = Trigger.MANUAL) -> None:
        """Queue a run (of `stages` and what they depend on; all stages if None) through the
        project's scheduler: it supersedes a run in flight, and never overlaps one."""
        self._scheduler(project, create=True).request_now(stages, trigger)

    def cancel(self, project: str) -> bool:
        """Cancel the run in flight (recorded as cancelled) and any queued one; False if none."""
        scheduler = self._scheduler(project)
        return scheduler is not None and scheduler.cancel()

    def busy(self, project: str) -> bool:
        """True while a run is in flight or queued."""
        scheduler = self._scheduler(project)
        return scheduler is not None and scheduler.busy

    def close(self) -> None:
        """Stop every watcher, cancel runs in flight and wait until they are recorded (none is
        left marked running). Idempotent."""
        with self._lock:
            self._closed = True
            schedulers = list(self._projects.values())
        for scheduler in schedulers:  # cancel them all first, so they stop in parallel
            scheduler.begin_stop()
        for scheduler in schedulers:
            scheduler.join()

    # -- helpers -----------------------------------------------------------------------------

    def _scheduler(self, project: str, create: bool = False) -> ProjectScheduler | None:
        with self._lock:
            found = self._find(project)
            if found is not None or not create:
                return found
            if self._closed:
                raise WorkbenchError("the watch service is closed")
        ref = self.session.project(project)  # raises on an unknown project or a broken manifest
        # Made here, on the caller's thread, so that scheduler threads never race to make them.
        self.session.store
        self.session.runner
        with self._lock:
            if self._closed:
                raise WorkbenchError("the watch service is closed")
            found = self._find(ref.name) or self._find(str(ref.path))
            if found is None:
                found = self._projects[ref.name] = ProjectScheduler(
                    ref, self.session, self._emit, self._watcher_factory, self.debounce_ms, self.who)
            return found

    def _find(self, project: str) -> ProjectScheduler | None:
        if project in self._projects:
            return self._projects[project]
        candidates = {Path(project).resolve(), (self.session.workspace.root / project).resolve()}
        for scheduler in self._projects.values():
            if scheduler.path.name == project or scheduler.path in candidates:
                return scheduler
        return None

    def _emit(self, event: RunEvent) -> None:
        try:
            self.on_event(event)
        except Exception:  # a broken sink must not stop watching
            log.exception("the watch event sink failed on %r", event)

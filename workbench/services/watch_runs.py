"""One watched project's runs: at most one in flight, and one wanted next.

A request (a change, a drift retrain, `run_now`) that arrives while a run is in flight cancels
that run as superseded (its container or process is stopped) and is merged with what the
cancelled run was going to redo; the run that replaces it is linked to it in the lineage store.
The project's scheduler thread drives the queue (`reap`, then `dispatch`); each run executes on
a thread of its own and wakes the scheduler when it is over, so the scheduler keeps listening.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workbench.core.changes import RunRequest
from workbench.core.errors import ManifestError, WorkbenchError
from workbench.core.events import (
    EventSink, ManifestInvalid, RunEvent, RunFinished, RunStarted, RunSuperseded, WatchError,
)
from workbench.core.manifest import Manifest
from workbench.core.model import RunRecord, RunStatus, Trigger
from workbench.core.ports import CancelToken
from workbench.services.drift_watch import BatchWatch
from workbench.services.session import WorkbenchSession

log = logging.getLogger(__name__)

SUPERSEDED_BY_CHANGE = "superseded by a newer change"
SUPERSEDED_BY_MANUAL = "superseded by a manual run"
CANCELLED_BY_USER = "cancelled by the user"
WATCH_STOPPED = "cancelled: the watcher stopped"
APP_CLOSED = "cancelled: the TUI was closed"
"""A manual run (only the TUI asks for one through the queue, with `r`) stopped by closing the
service: no watcher was involved, the project may not even be watched."""


@dataclass
class _ActiveRun:
    request: RunRequest
    token: CancelToken
    supersedes: int | None
    """The run this one replaces, linked once this one has an id."""
    thread: threading.Thread | None = None
    run_id: int | None = None
    record: RunRecord | None = None
    recorded: bool = False
    """Its outcome is written (RunFinished went out): too late to supersede it."""
    done: bool = False


class RunQueue:
    """The wanted and the active run of one project. Every method may be called from any thread;
    `_lock` guards the run state, and no event is emitted while it is held."""

    def __init__(self, session: WorkbenchSession, project: str, path: Path, emit: EventSink,
                 wake: Callable[[], None], batches: Callable[[], BatchWatch | None]):
        self.session = session
        self.name = project
        self.path = path
        self._emit = emit
        self._wake = wake
        """Wakes the scheduler thread (a run is over)."""
        self._batches = batches
        """The project's batch watch as it is now (a retrain run reports to it), or None."""
        self._lock = threading.Lock()
        self._wanted: RunRequest | None = None
        self._active: _ActiveRun | None = None
        self._supersedes: int | None = None
        self._stopping = False

    @property
    def busy(self) -> bool:
        """A run is in flight or wanted."""
        with self._lock:
            return self._active is not None or self._wanted is not None

    @property
    def stopping(self) -> bool:
        return self._stopping

    def request(self, request: RunRequest) -> None:
        """Want a run; merged with one already wanted. Ignored once the queue stops."""
        with self._lock:
            if not self._stopping:
                self._wanted = request if self._wanted is None else self._wanted.merged_with(request)

    def cancel(self) -> bool:
        """Cancel the run in flight (recorded as cancelled) and the wanted one; False if none."""
        with self._lock:
            active = self._active
            if active is not None and (active.done or active.recorded):
                active = None  # already over
            had = active is not None or self._wanted is not None
            self._wanted = None
            self._supersedes = None
            if active is not None:
                active.token.cancel(CANCELLED_BY_USER)
        return had

    def stop(self) -> None:
        """Take no more requests and cancel the run in flight; `wait` joins it."""
        with self._lock:
            self._stopping = True
            self._wanted = None
            active = self._active
            if active is not None and not active.done:
                active.token.cancel(APP_CLOSED if active.request.trigger is Trigger.MANUAL else WATCH_STOPPED)

    def wait(self) -> None:
        """Until the run in flight (if any) is recorded and its thread ended."""
        active = self._active
        if active is not None and active.thread is not None:
            active.thread.join()

    def reap(self) -> None:
        """Clear a finished run, passing the superseded link on to the run wanted next."""
        with self._lock:
            active = self._active
            if active is None or not active.done:
                return
            self._active = None
            record = active.record
            if self._wanted is not None:
                if record is not None and record.status is RunStatus.SUPERSEDED:
                    self._supersedes = record.id
                elif active.run_id is None and active.supersedes is not None:
                    self._supersedes = active.supersedes  # this one never started: pass the link on
        if active.thread is not None:
            active.thread.join()

    def dispatch(self, manifest: Manifest) -> None:
        """Start the wanted run, or supersede the one in flight so it can start next."""
        with self._lock:
            wanted, active = self._wanted, self._active
            if wanted is None or self._stopping:
                return
            if active is not None and active.recorded:
                return  # over but for its thread; the wanted run starts when it is reaped
            if active is None:
                self._wanted = None
                active = self._active = _ActiveRun(wanted, CancelToken(), self._supersedes)
                self._supersedes = None
                active.thread = threading.Thread(target=self._run, args=(active, wanted.targets(manifest)),
                                                 name=f"run-{self.name}", daemon=True)
                active.thread.start()
            elif not active.token.cancelled:
                reason = SUPERSEDED_BY_MANUAL if wanted.trigger is Trigger.MANUAL else SUPERSEDED_BY_CHANGE
                active.token.cancel(reason, superseded=True)
                self._wanted = active.request.merged_with(wanted)

    def _run(self, active: _ActiveRun, targets: list[str] | None) -> None:
        """On the run's own thread: one pipeline run, its events passed on as they come."""
        emit = self._emit

        def on_event(event: RunEvent) -> None:
            if isinstance(event, RunStarted):
                active.run_id = event.run_id
                batches = self._batches()
                if batches is not None and active.request.overrides:
                    batches.started(active.request, event.run_id)
                if active.supersedes is not None:
                    try:
                        self.session.store.set_superseded_by(active.supersedes, event.run_id)
                    except WorkbenchError as exc:
                        emit(WatchError(self.name, f"could not link run {active.supersedes} to run "
                                                   f"{event.run_id}: {exc}"))
                    emit(RunSuperseded(self.name, active.supersedes, event.run_id))
            elif isinstance(event, RunFinished):
                active.recorded = True
            emit(event)

        request = active.request
        try:
            active.record = self.session.run(
                str(self.path), stages=targets, trigger=request.trigger,
                changed_paths=list(request.changed_paths), cancel=active.token, on_event=on_event,
                overrides={rel: Path(file) for rel, file in request.overrides} or None)
            batches = self._batches()
            retrained = batches.finished(request, active.record) if batches and request.overrides else None
            if retrained is not None:
                emit(retrained)
        except ManifestError as exc:
            emit(ManifestInvalid(self.name, str(exc)))
        except WorkbenchError as exc:
            emit(WatchError(self.name, f"the run could not start: {exc}"))
        except Exception as exc:  # recorded as failed by the pipeline; say so, keep watching
            log.exception("a run of %s failed", self.name)
            emit(WatchError(self.name, f"internal error in a run: {exc!r}"))
        finally:
            active.done = True
            self._wake()

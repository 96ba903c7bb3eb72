"""Watch mode: every change reruns exactly what it affects, and a newer change supersedes a run.

Per watched project there is one scheduler thread. File events from the watcher land in an
inbox (the watcher's thread only appends); the scheduler folds them into one change once the
quiet period passes (core/changes.py), hashes the changed files that some stage reads, drops
the change when no content changed, and asks for a run of the affected stages and everything
downstream. Runs execute one at a time per project on a thread of their own, so the scheduler
keeps listening: a change (or `run_now`) that arrives during a run cancels it as superseded
(its container or process is stopped), and the next run covers both what the cancelled run was
going to redo and the new change. Manual and watch runs of one project never overlap.

Events: everything (run events and the watch events of core/events.py) is delivered to
`on_event` from the service's background threads, never from the caller's. The service holds
none of its locks while it calls `on_event`, so the sink may block: a Textual app can use
`app.call_from_thread(...)` or `post_message`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from workbench.adapters.files import StatHasher, read_hash_cache, scan_project
from workbench.core.changes import (
    ChangeSet, Debouncer, RunRequest, affected_stages, content_changed, stage_inputs_matcher,
)
from workbench.core.errors import ManifestError, WorkbenchError
from workbench.core.events import (
    ChangeDetected, ChangeIgnored, EventSink, ManifestInvalid, ManifestReloaded, RunEvent, RunFinished,
    RunStarted, RunSuperseded, WatchError, WatchStarted, WatchStopped,
)
from workbench.core.manifest import MANIFEST_NAME, Manifest
from workbench.core.model import RunRecord, RunStatus, Trigger
from workbench.core.ports import CancelToken, FileWatcher, FileWatcherFactory
from workbench.services.drift_watch import BatchWatch
from workbench.services.session import WorkbenchSession
from workbench.services.workspace import ProjectRef, load_manifest

log = logging.getLogger(__name__)

HEALTH_CHECK_S = 2.0
"""How often a watched project checks that its folder and watcher are still there."""
SUPERSEDED_BY_CHANGE = "superseded by a newer change"
SUPERSEDED_BY_MANUAL = "superseded by a manual run"
CANCELLED_BY_USER = "cancelled by the user"
WATCH_STOPPED = "cancelled: the watcher stopped"


def _watchdog_watcher(root: str, sink, on_error) -> FileWatcher:
    from workbench.adapters.watcher import WatchdogWatcher

    return WatchdogWatcher(root, sink, on_error)


class WatchService:
    """Watches projects and reruns what each change affects. Every method may be called from any
    thread; see the module docstring for how events are delivered."""

    def __init__(self, session: WorkbenchSession, on_event: EventSink, *, debounce_ms: int | None = None,
                 watcher_factory: FileWatcherFactory | None = None):
        self.session = session
        self.on_event = on_event
        self.debounce_ms = debounce_ms
        """Quiet period for every project; None: each manifest's `watch.debounce_ms`."""
        self._watcher_factory = watcher_factory or _watchdog_watcher
        self._lock = threading.Lock()
        self._projects: dict[str, _ProjectScheduler] = {}
        self._closed = False

    # -- the API the CLI and the TUI use -------------------------------------------------------

    def watch(self, project: str) -> None:
        """Start watching a project (a no-op if it is watched). Raises WorkbenchError when the
        project or its manifest is invalid or its folder cannot be watched. WatchStarted follows
        once its starting hashes are taken; changes from then on rerun what they affect."""
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

    def _scheduler(self, project: str, create: bool = False) -> "_ProjectScheduler | None":
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
                found = self._projects[ref.name] = _ProjectScheduler(self, ref)
            return found

    def _find(self, project: str) -> "_ProjectScheduler | None":
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


class _ProjectScheduler:
    """One project's watcher state and run queue, driven by one thread.

    Two locks, always taken in this order: `_state_lock` guards the watch state (watcher,
    debouncer, hashes, manifest), `_lock` the run state (wanted, active). Events are queued in
    `_outbox` under the locks and delivered after they are released.
    """

    def __init__(self, service: WatchService, ref: ProjectRef):
        self.service = service
        self.session = service.session
        self.name = ref.name
        self.path = ref.path
        self.manifest: Manifest = ref.manifest
        self._state_lock = threading.RLock()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._outbox: deque[RunEvent] = deque()

        # watch state
        self._inbox: deque[tuple[str, str, bool, float]] = deque()
        self._armed = False
        self._watcher: FileWatcher | None = None
        self._debouncer: Debouncer | None = None
        self._baseline: dict[str, str] | None = None
        """sha256 of every file some stage reads, as last seen; None until taken."""
        self._hasher = StatHasher()
        self._reads = stage_inputs_matcher(self.manifest)
        self._batches: BatchWatch | None = None
        """The incoming folder's batches (drift checks), when the manifest names one."""
        self._manifest_error: str | None = None
        self._watch_problem: str | None = None
        self._next_health_check = 0.0

        # run state
        self._wanted: RunRequest | None = None
        self._active: _ActiveRun | None = None
        self._supersedes: int | None = None
        self._stopping = False

        self._thread = threading.Thread(target=self._loop, name=f"watch-{self.name}", daemon=True)
        self._thread.start()

    # -- called from other threads ------------------------------------------------------------

    @property
    def watching(self) -> bool:
        return self._watcher is not None

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._active is not None or self._wanted is not None

    def attach(self) -> None:
        with self._state_lock:
            if self._watcher is not None:
                return
            self._inbox.clear()
            self._armed = False
            self._watch_problem = None
            watcher = self.service._watcher_factory(str(self.path), self._on_file_event, self._on_watch_error)
            watcher.start()  # raises WorkbenchError: nothing changed yet
            self._watcher = watcher
            self._debouncer = Debouncer(self._quiet_s(), self.manifest.ignores)
            self._hasher = StatHasher(read_hash_cache(self.session.workspace.state_dir))
            self._baseline = None  # taken on the scheduler thread, then WatchStarted
            self._batches = BatchWatch.for_manifest(self.session, self.manifest, self._quiet_s())
        self._wake.set()

    def detach(self, reason: str = "") -> None:
        with self._state_lock:
            watcher, self._watcher = self._watcher, None
            self._debouncer = self._baseline = None
            self._inbox.clear()
        if watcher is not None:
            watcher.stop()
            self.service._emit(WatchStopped(self.name, reason))

    def request_now(self, stages: list[str] | None, trigger: Trigger) -> None:
        with self._state_lock:
            unknown = [s for s in stages or [] if s not in self.manifest.stages]
            if unknown:
                raise WorkbenchError(f"{self.name}: unknown stage {unknown[0]!r} "
                                     f"(stages: {', '.join(self.manifest.stage_order())})")
        self._request(RunRequest(frozenset(stages) if stages else None, Trigger(trigger)))
        self._wake.set()

    def cancel(self) -> bool:
        with self._lock:
            active = self._active
            if active is not None and (active.done or active.recorded):
                active = None  # already over
            had = active is not None or self._wanted is not None
            self._wanted = None
            self._supersedes = None
            if active is not None:
                active.token.cancel(CANCELLED_BY_USER)
        self._wake.set()
        return had

    def begin_stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wanted = None
            if self._active is not None and not self._active.done:
                self._active.token.cancel(WATCH_STOPPED)
        self.detach()
        self._wake.set()

    def join(self) -> None:
        self._thread.join()

    # -- watcher callbacks: on the watcher's threads, enqueue only -----------------------------

    def _on_file_event(self, path: str, kind: str, is_dir: bool) -> None:
        self._inbox.append((path, kind, is_dir, time.monotonic()))
        # Wake the scheduler for the first event only: it then sleeps until the quiet period
        # ends and picks up the rest of the burst in one go (a wake per event would cost more
        # than the events).
        if not self._armed:
            self._armed = True
            self._wake.set()

    def _on_watch_error(self, message: str) -> None:
        self._watch_problem = message
        self._wake.set()

    # -- the scheduler thread -----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._timeout())
            self._wake.clear()
            if self._stopping:
                break
            try:
                self._step()
            except Exception as exc:  # a bug must not end watching silently
                log.exception("watching %s failed", self.name)
                self._outbox.append(WatchError(self.name, f"internal error: {exc!r}"))
            self._flush()
        active = self._active
        if active is not None and active.thread is not None:
            active.thread.join()
        self._flush()

    def _timeout(self) -> float | None:
        with self._state_lock:
            if self._watcher is None or self._debouncer is None:
                return None
            deadline = self._next_health_check
            if self._debouncer.pending:
                deadline = min(deadline, self._debouncer.deadline())
            if self._batches is not None and self._batches.deadline() is not None:
                deadline = min(deadline, self._batches.deadline())
        return max(0.0, deadline - time.monotonic())

    def _flush(self) -> None:
        while self._outbox:
            self.service._emit(self._outbox.popleft())

    def _step(self) -> None:
        self._reap()
        problem = None
        with self._state_lock:
            if self._watcher is not None and self._debouncer is not None:
                problem = self._watch_step()
        self._flush()  # ChangeDetected goes out before the RunStarted it causes
        self._check_batches()
        if problem:
            self.service._emit(WatchError(self.name, problem))
            self.detach(problem)
        self._dispatch()

    def _watch_step(self) -> str | None:
        now = time.monotonic()
        if self._watch_problem or now >= self._next_health_check:
            problem = self._watch_problem or self._watcher.problem()
            if problem:
                return problem
            self._next_health_check = now + HEALTH_CHECK_S
        if self._baseline is None:
            self._baseline = self._take_baseline()
            self._outbox.append(WatchStarted(self.name))
            self._warm_up()
        self._drain()
        change = self._debouncer.due(time.monotonic())
        if change is not None:
            self._on_change(change)
        if not self._debouncer.pending:
            self._armed = False
            self._drain()  # what arrived while the flag was still up
        return None

    def _drain(self) -> None:
        feed, inbox, batches = self._debouncer.feed, self._inbox, self._batches
        while inbox:
            path, kind, is_dir, at = inbox.popleft()
            if batches is not None and batches.feed(path, kind, at, is_dir):
                continue  # new data in the incoming folder: a drift check, not a rerun
            feed(path, kind, at, is_dir)

    def _check_batches(self) -> None:
        """Drift checks of settled batches, outside the watch-state lock (a check reads files
        and may score the batch in a container); a retrain it decides is queued like a change."""
        batches = self._batches
        if batches is None:
            return
        for event, request in batches.check_due(self.name, str(self.path), time.monotonic()):
            self.service._emit(event)
            if request is not None:
                self._request(request)

    def _quiet_s(self) -> float:
        ms = self.service.debounce_ms if self.service.debounce_ms is not None else self.manifest.watch.debounce_ms
        return ms / 1000.0

    def _warm_up(self) -> None:
        """Start the project's warm worker ahead of the first change, off this thread: the
        first edit then costs a fork, not a container start and the imports."""
        warm_up = getattr(self.session.runner, "warm_up", None)
        if warm_up is None or self.manifest.environment.cold:
            return

        def start() -> None:
            try:
                warm_up(self.name, str(self.path), self.manifest.environment,
                        str(self.session.workspace.ensure_state_dir()), lambda _line: None)
            except WorkbenchError as exc:  # the first run starts it, or reports why it cannot
                log.info("warming up %s failed: %s", self.name, exc)

        threading.Thread(target=start, name=f"warm-{self.name}", daemon=True).start()

    def _take_baseline(self) -> dict[str, str]:
        """Hashes of every file some stage reads (a stat each when a snapshot hashed it before)."""
        ignored = self._debouncer.ignored
        baseline = {}
        for rel in scan_project(self.path, self.manifest.ignores):
            if self._reads(rel) and not ignored(rel):
                digest = self._hasher.digest(self.path / rel)
                if digest is not None:
                    baseline[rel] = digest
        return baseline

    def _files_under(self, folder: str) -> set[str]:
        prefix = folder + "/"
        found = {p for p in self._baseline if p.startswith(prefix)}
        if (self.path / folder).is_dir():
            found.update(prefix + rel for rel in scan_project(self.path / folder, ()))
        return found

    def _on_change(self, change: ChangeSet) -> None:
        paths = set(change.paths)
        for folder in change.folders:
            paths.update(self._files_under(folder))
        if change.rescan:  # the kernel dropped events: compare everything
            paths.update(scan_project(self.path, self.manifest.ignores))
            paths.update(self._baseline)
        ignored = self._debouncer.ignored
        read = [p for p in paths if self._reads(p) and not ignored(p)]
        current = {p: self._hasher.digest(self.path / p) for p in read}
        changed = content_changed(self._baseline, current)
        for path in changed:
            if current[path] is None:
                self._baseline.pop(path, None)
            else:
                self._baseline[path] = current[path]
        shown = tuple(p for p in change.paths if p not in change.folders) or change.paths
        if not changed:
            reason = "no stage reads it" if not read else "content unchanged"
            self._outbox.append(ChangeIgnored(self.name, shown, reason))
            return

        reloaded = reload_failed = False
        if MANIFEST_NAME in changed:
            reloaded = self._reload()
            reload_failed = not reloaded
            if reload_failed and changed == [MANIFEST_NAME]:
                return  # ManifestInvalid is out; nothing else changed
        manifest = self.manifest
        if reloaded:
            # What changed in the manifest is for the cache keys to sort out: run everything,
            # unchanged stages are reused.
            stages, request = manifest.stage_order(), RunRequest(None, Trigger.WATCH, tuple(changed))
        else:
            affected = affected_stages(manifest, [p for p in changed if p != MANIFEST_NAME])
            stages = [s for s in manifest.stage_order() if s in affected]
            request = RunRequest(frozenset(affected), Trigger.WATCH, tuple(changed))
        self._outbox.append(ChangeDetected(self.name, tuple(changed), tuple(stages)))
        if self._manifest_error is not None and not reload_failed:
            # Runs wait for a valid manifest (say so again); the fix runs everything anyway.
            self._outbox.append(ManifestInvalid(self.name, self._manifest_error))
        self._request(request)

    def _reload(self) -> bool:
        try:
            manifest, _ = load_manifest(self.path)
        except ManifestError as exc:
            self._manifest_error = str(exc)
            self._outbox.append(ManifestInvalid(self.name, str(exc)))
            return False
        self.manifest = manifest
        self._manifest_error = None
        self._reads = stage_inputs_matcher(manifest)
        self._debouncer.set_ignores(manifest.ignores)
        self._debouncer.quiet_s = self._quiet_s()
        self._baseline = self._take_baseline()  # what the stages read may be different now
        self._batches = BatchWatch.for_manifest(self.session, manifest, self._quiet_s())
        self._outbox.append(ManifestReloaded(self.name))
        return True

    # -- runs ---------------------------------------------------------------------------------

    def _request(self, request: RunRequest) -> None:
        with self._lock:
            if not self._stopping:
                self._wanted = request if self._wanted is None else self._wanted.merged_with(request)

    def _reap(self) -> None:
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

    def _dispatch(self) -> None:
        """Start the wanted run, or supersede the one in flight so it can start next."""
        with self._state_lock:
            held = self._manifest_error is not None
            manifest = self.manifest
        with self._lock:
            wanted, active = self._wanted, self._active
            if wanted is None or self._stopping or held:
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
        emit = self.service._emit

        def on_event(event: RunEvent) -> None:
            if isinstance(event, RunStarted):
                active.run_id = event.run_id
                if self._batches is not None and active.request.overrides:
                    self._batches.started(active.request, event.run_id)
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
            retrained = self._batches.finished(request, active.record) if self._batches and request.overrides else None
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
            self._wake.set()

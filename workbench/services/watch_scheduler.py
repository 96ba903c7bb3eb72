"""One watched project, driven by one scheduler thread: file events become changes, changes
become run requests, and the project's RunQueue runs them (workbench.services.watch_runs).

File events from the watcher land in an inbox (the watcher's thread only appends); the
scheduler folds them into one change once the quiet period passes (core/changes.py), hashes the
changed files that some stage reads, drops the change when no content changed, and asks for a
run of the affected stages and everything downstream. New files in the incoming data folder are
drift checks instead (services/drift_watch.py), whose retrains are requested like changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from workbench.adapters.hash_cache import StatHasher
from workbench.adapters.object_store import IngestingHasher
from workbench.adapters.project_survey import scan_project
from workbench.core.changes import (
    ChangeSet, Debouncer, RunRequest, affected_stages, content_changed, params_changed, stage_inputs_matcher,
)
from workbench.core.errors import ManifestError, WorkbenchError
from workbench.core.events import (
    ChangeDetected, ChangeIgnored, EventSink, ManifestInvalid, ManifestReloaded, RunEvent, WatchError, WatchStarted,
    WatchStopped,
)
from workbench.core.manifest import MANIFEST_NAME, Manifest
from workbench.core.model import Trigger
from workbench.core.ports import FileWatcher, FileWatcherFactory
from workbench.adapters.watch_lease import WatchHolder
from workbench.services.drift_watch import BatchWatch
from workbench.services.session import WorkbenchSession
from workbench.services.stage_params import key_params_files, resolve_params
from workbench.services.watch_claim import WatchClaim
from workbench.services.watch_runs import RunQueue
from workbench.services.workspace import ProjectRef, load_manifest

log = logging.getLogger(__name__)

HEALTH_CHECK_S = 2.0
"""How often a watched project checks that its folder and watcher are still there."""


class ProjectScheduler:
    """One project's watcher state and run queue, driven by one thread.

    Two locks, always taken in this order: `_state_lock` guards the watch state (watcher,
    debouncer, hashes, manifest), the run queue's own lock the run state. Events are queued in
    `_outbox` under the locks and delivered after they are released.
    """

    def __init__(self, ref: ProjectRef, session: WorkbenchSession, emit: EventSink,
                 watcher_factory: FileWatcherFactory, debounce_ms: int | None, who: str = "workbench"):
        self.session = session
        self.name = ref.name
        self.path = ref.path
        self.manifest: Manifest = ref.manifest
        self._emit = emit
        self._watcher_factory = watcher_factory
        self._debounce_ms = debounce_ms
        """Quiet period; None: the manifest's `watch.debounce_ms`."""
        self._state_lock = threading.RLock()
        self._wake = threading.Event()
        self._outbox: deque[RunEvent] = deque()

        # watch state
        self._inbox: deque[tuple[str, str, bool, float]] = deque()
        self._armed = False
        self._watcher: FileWatcher | None = None
        self._debouncer: Debouncer | None = None
        self._baseline: dict[str, str] | None = None
        """sha256 of every file some stage reads, as last seen; None until taken."""
        self._hasher: StatHasher | IngestingHasher = StatHasher()
        self._params_files = key_params_files(self.manifest)
        """The files stages read params keys of: an edit reruns only the stages whose keys changed."""
        self._param_values: dict = {}
        """Each stage's resolved params keys, as last seen (workbench.core.params_keys.StageParams)."""
        self._reads = stage_inputs_matcher(self.manifest, self._params_files)
        self._batches: BatchWatch | None = None
        """The incoming folder's batches (drift checks), when the manifest names one."""
        self._manifest_error: str | None = None
        self._watch_problem: str | None = None
        self._next_health_check = 0.0
        self._claim = WatchClaim(session, self.name, who)
        """This process's claim to watch the project: one watcher per project across processes."""

        self._runs = RunQueue(session, self.name, self.path, emit, self._wake.set, lambda: self._batches)

        self._thread = threading.Thread(target=self._loop, name=f"watch-{self.name}", daemon=True)
        self._thread.start()

    # -- called from other threads ------------------------------------------------------------

    @property
    def watching(self) -> bool:
        return self._watcher is not None

    @property
    def busy(self) -> bool:
        return self._runs.busy

    @property
    def watched_elsewhere(self) -> WatchHolder | None:
        """The process that watches the project while this one waits to take over, if any."""
        claim = self._claim
        return (claim.holder or WatchHolder(0, "another workbench")) if claim.waiting else None

    def attach(self) -> None:
        with self._state_lock:
            if self._watcher is not None or self._claim.waiting:
                return
            acquired, events = self._claim.claim()
            self._outbox.extend(events)
            if acquired:
                self._start_watching()
        self._wake.set()

    def _start_watching(self) -> None:
        """Under the state lock, holding the claim. Raises WorkbenchError (the claim let go)."""
        try:
            self._inbox.clear()
            self._armed = False
            self._watch_problem = None
            watcher = self._watcher_factory(str(self.path), self._on_file_event, self._on_watch_error)
            watcher.start()  # raises WorkbenchError: nothing changed yet
        except WorkbenchError:
            self._claim.release()
            raise
        self._watcher = watcher
        self._debouncer = Debouncer(self._quiet_s(), self.manifest.ignores)
        # A changed file is copied into the object store as it is hashed: the run it starts
        # then reads nothing again (a 1 GB data file is read once from edit to stage start).
        self._hasher = IngestingHasher(self.session.workspace.ensure_state_dir())
        self._baseline = None  # taken on the scheduler thread, then WatchStarted
        self._batches = BatchWatch.for_manifest(self.session, self.manifest, self._quiet_s())

    def detach(self, reason: str = "") -> None:
        with self._state_lock:
            watcher, self._watcher = self._watcher, None
            self._debouncer = self._baseline = None
            self._inbox.clear()
            self._claim.release()
        if watcher is not None:
            watcher.stop()
            self._emit(WatchStopped(self.name, reason))

    def request_now(self, stages: list[str] | None, trigger: Trigger) -> None:
        with self._state_lock:
            unknown = [s for s in stages or [] if s not in self.manifest.stages]
            if unknown:
                raise WorkbenchError(f"{self.name}: unknown stage {unknown[0]!r} "
                                     f"(stages: {', '.join(self.manifest.stage_order())})")
        self._runs.request(RunRequest(frozenset(stages) if stages else None, Trigger(trigger)))
        self._wake.set()

    def cancel(self) -> bool:
        had = self._runs.cancel()
        self._wake.set()
        return had

    def begin_stop(self) -> None:
        self._runs.stop()
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
            if self._runs.stopping:
                break
            try:
                self._step()
            except Exception as exc:  # a bug must not end watching silently
                log.exception("watching %s failed", self.name)
                self._outbox.append(WatchError(self.name, f"internal error: {exc!r}"))
            self._flush()
        self._runs.wait()
        self._flush()

    def _timeout(self) -> float | None:
        with self._state_lock:
            if self._claim.waiting:
                return max(0.0, self._claim.next_poll - time.monotonic())
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
            self._emit(self._outbox.popleft())

    def _step(self) -> None:
        self._runs.reap()
        problem = None
        with self._state_lock:
            if self._claim.waiting and time.monotonic() >= self._claim.next_poll:
                problem = self._take_over()
            if self._watcher is not None and self._debouncer is not None:
                problem = self._watch_step()
        self._flush()  # ChangeDetected goes out before the RunStarted it causes
        self._check_batches()
        if problem:
            self._emit(WatchError(self.name, problem))
            self.detach(problem)
        self._dispatch()

    def _take_over(self) -> str | None:
        """While another process watches: report its runs; once it is gone, watch from here."""
        acquired, events = self._claim.claim()
        self._outbox.extend(events)
        if not acquired:
            return None
        try:
            self._start_watching()
        except WorkbenchError as exc:
            return str(exc)
        # The process that watched may have stopped mid-run (its run recorded cancelled): the
        # change it was running is still to be run, and this process watches now.
        try:
            newest = next(iter(self.session.store.list_runs(self.name, limit=1)), None)
        except WorkbenchError:
            newest = None
        if newest is not None and newest.trigger == str(Trigger.WATCH) and \
                str(newest.status) in ("cancelled", "interrupted"):
            self._runs.request(RunRequest(None, Trigger.WATCH, ()))
        return None

    def _dispatch(self) -> None:
        with self._state_lock:
            held = self._manifest_error is not None
            manifest = self.manifest
        if not held:  # runs wait for a valid manifest
            self._runs.dispatch(manifest)

    def _watch_step(self) -> str | None:
        now = time.monotonic()
        if self._watch_problem or now >= self._next_health_check:
            problem = self._watch_problem or self._watcher.problem()
            if problem:
                return problem
            self._next_health_check = now + HEALTH_CHECK_S
        if self._baseline is None:
            self._baseline = self._take_baseline()
            self._param_values = self._read_param_values()
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
        for event, request in batches.check_due(self.name, str(self.path), time.monotonic(), self._emit):
            self._emit(event)
            if request is not None:
                self._runs.request(request)

    def _quiet_s(self) -> float:
        ms = self._debounce_ms if self._debounce_ms is not None else self.manifest.watch.debounce_ms
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
        for rel in scan_project(self.path, self.manifest.ignores, self.manifest.external_links):
            if self._reads(rel) and not ignored(rel):
                digest = self._hasher.digest(self.path / rel)
                if digest is not None:
                    baseline[rel] = digest
        self._hasher.save()
        return baseline

    def _read_param_values(self) -> dict:
        """Each stage's params keys as the project holds them now; a key that cannot be read is
        its problem, so fixing it (or breaking it) counts as a change of that stage's keys."""
        if not self._params_files:
            return {}
        return resolve_params(self.manifest, self.path)

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
            paths.update(scan_project(self.path, self.manifest.ignores, self.manifest.external_links))
            paths.update(self._baseline)
        ignored = self._debouncer.ignored
        read = [p for p in paths if self._reads(p) and not ignored(p)]
        current = {p: self._hasher.digest(self.path / p) for p in read}
        self._hasher.save()  # before the run this change starts reads the cache
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
        keys_changed: set[str] = set()
        if not reloaded and any(p in self._params_files for p in changed):
            current_values = self._read_param_values()
            keys_changed = params_changed(self._param_values, current_values)
            self._param_values = current_values
        if reloaded:
            # What changed in the manifest is for the cache keys to sort out: run everything,
            # unchanged stages are reused.
            stages, request = manifest.stage_order(), RunRequest(None, Trigger.WATCH, tuple(changed))
        else:
            affected = affected_stages(manifest, [p for p in changed if p != MANIFEST_NAME], keys_changed)
            if not affected and not reload_failed:
                # A params file edited where no stage's keys are (nor does a stage list it whole).
                self._outbox.append(ChangeIgnored(self.name, shown, "no params key a stage reads changed"))
                return
            stages = [s for s in manifest.stage_order() if s in affected]
            request = RunRequest(frozenset(affected), Trigger.WATCH, tuple(changed))
        self._outbox.append(ChangeDetected(self.name, tuple(changed), tuple(stages)))
        if self._manifest_error is not None and not reload_failed:
            # Runs wait for a valid manifest (say so again); the fix runs everything anyway.
            self._outbox.append(ManifestInvalid(self.name, self._manifest_error))
        self._runs.request(request)

    def _reload(self) -> bool:
        try:
            manifest, _ = load_manifest(self.path)
        except ManifestError as exc:
            self._manifest_error = str(exc)
            self._outbox.append(ManifestInvalid(self.name, str(exc)))
            return False
        self.manifest = manifest
        self._manifest_error = None
        self._params_files = key_params_files(manifest)
        self._reads = stage_inputs_matcher(manifest, self._params_files)
        self._param_values = self._read_param_values()
        self._debouncer.set_ignores(manifest.ignores)
        self._debouncer.quiet_s = self._quiet_s()
        self._baseline = self._take_baseline()  # what the stages read may be different now
        self._batches = BatchWatch.for_manifest(self.session, manifest, self._quiet_s())
        self._outbox.append(ManifestReloaded(self.name))
        return True

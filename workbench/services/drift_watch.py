"""Drift checks in watch mode: the watch service's side of workbench/services/drift.py.

A project's pipeline watcher ignores its incoming folder (new data must not rerun the
pipeline); batch files landing there come here instead. They are debounced on their own (a
slow copy is one batch, once its writes stop), then checked on the project's scheduler thread,
and a retrain the policy decides becomes a run request with trigger `drift`, queued like any
other: it never overlaps a run of the project, and a change during it supersedes it (the run
that replaces it still trains on the batch).

Light at import: the drift service (scipy, DuckDB) is imported when the first batch lands.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath

from workbench.core.changes import ChangeKind, Debouncer, RunRequest
from workbench.core.errors import WorkbenchError
from workbench.core.events import BatchChecked, BatchProgress, EventSink, RetrainFinished, RunEvent, WatchError
from workbench.core.manifest import Manifest
from workbench.core.model import RunRecord, Trigger

log = logging.getLogger(__name__)
BATCH_SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".pq"}
LANDED = {ChangeKind.CREATED.value, ChangeKind.MODIFIED.value, ChangeKind.MOVED.value}
PROGRESS_S = 0.25
"""A check's BatchProgress events go out at most this often (a 1,000-column check makes 2,000 calls)."""


def is_batch_name(path: str) -> bool:
    name = PurePosixPath(path)
    return name.suffix.lower() in BATCH_SUFFIXES and not name.name.startswith(".")


class BatchWatch:
    """One watched project's incoming folder. Used by its scheduler thread only."""

    def __init__(self, session, folder: str, quiet_s: float):
        self.session = session
        self.folder = folder.strip("/").removeprefix("./")
        self.debouncer = Debouncer(quiet_s)
        self._service = None
        self._queued: dict[str, int] = {}
        """Batches whose retrain is queued: path -> batch id (linked when the run starts)."""

    @classmethod
    def for_manifest(cls, session, manifest: Manifest, quiet_s: float) -> "BatchWatch | None":
        folder = manifest.data.incoming
        return cls(session, folder, quiet_s) if folder and folder.strip("/.") else None

    def feed(self, path: str, kind: str, at: float, is_dir: bool) -> bool:
        """Take a file event if it is in the incoming folder (True: it is this watcher's)."""
        if not path.startswith(self.folder + "/"):
            return False
        if str(kind) in LANDED and not is_dir and is_batch_name(path):
            self.debouncer.feed(path, kind, at)
        return True

    def deadline(self) -> float | None:
        return self.debouncer.deadline()

    def check_due(self, project: str, project_path: str, now: float,
                  on_event: EventSink | None = None) -> list[tuple[RunEvent, RunRequest | None]]:
        """Check the batches whose writes have settled: an event for each, and the run request
        of a retrain it decided. `on_event` gets BatchProgress events while a check runs."""
        change = self.debouncer.due(now)
        if change is None:
            return []
        done = []
        for path in change.paths:
            try:
                done.append(self._check(project, project_path, path, on_event))
            except WorkbenchError as exc:
                done.append((WatchError(project, f"drift check of {path}: {exc}"), None))
            except Exception as exc:  # a bug must not end watching
                log.exception("checking %s of %s failed", path, project)
                done.append((WatchError(project, f"drift check of {path}: internal error: {exc!r}"), None))
        return done

    def _check(self, project: str, project_path: str, path: str,
               on_event: EventSink | None = None) -> tuple[RunEvent, RunRequest | None]:
        import time
        from pathlib import Path

        if not (Path(project_path) / path).is_file():
            return BatchChecked(project, path, False, 0.0, (), False, "gone before it could be checked",
                                verdict="not checked", summary="not checked: gone before it could be checked"), None
        sent = [-PROGRESS_S]

        def on_progress(done: int, total: int, phase: str) -> None:
            now = time.monotonic()
            if on_event is not None and (now - sent[0] >= PROGRESS_S or done == 0):
                sent[0] = now
                on_event(BatchProgress(project, path, done, total, phase))

        outcome = self.service.check_batch(project_path, path, on_progress=on_progress)
        report = outcome.report
        event = BatchChecked(project, path, bool(report and report.drifted), report.share if report else 0.0,
                             tuple(report.drifted_columns) if report else (), outcome.decision.retrain,
                             outcome.decision.reason, batch_id=outcome.batch.id, verdict=outcome.batch.verdict,
                             summary=report.summary if report else "")
        if not outcome.decision.retrain:  # never for an unusable batch (decide_retrain)
            return event, None
        self._queued[outcome.batch.path] = outcome.batch.id
        request = RunRequest(None, Trigger.DRIFT, (outcome.batch.path,),
                             overrides=tuple((rel, str(file)) for rel, file in outcome.overrides.items()))
        return event, request

    @property
    def service(self):
        if self._service is None:
            from workbench.services.drift import DriftService

            self._service = DriftService(self.session)
        return self._service

    def started(self, request: RunRequest, run_id: int) -> None:
        """A run carrying retrain data started: link it to its batches."""
        for path in request.changed_paths:
            batch_id = self._queued.get(path)
            if batch_id is not None and request.overrides:
                self.service.link_run(batch_id, run_id)

    def finished(self, request: RunRequest, record: RunRecord | None) -> RunEvent | None:
        """After a retrain run is recorded and registered: what it made."""
        batches = tuple(p for p in request.changed_paths if p in self._queued)
        if not batches or record is None or not request.overrides:
            return None
        if str(record.status) == "superseded":
            return None  # the run that replaces it carries the batch on
        for path in batches:
            self._queued.pop(path, None)
        version = staged = None
        if str(record.status) == "succeeded":
            found = self.service.session.registry.version_for_run(record.project, record.id)
            if found is not None:
                version = found.version
                staged = self.service.session.registry.aliases(record.project).get("staging") == version
        failed = tuple(g.rule for g in record.gates if g.passed is False)
        return RetrainFinished(record.project, record.id, batches, str(record.status), version, bool(staged), failed)

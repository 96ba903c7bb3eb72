"""The narrow interfaces the services use to reach outside systems. Adapters implement them;
fakes beside the tests implement them too."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Protocol

from workbench.core.manifest import EnvironmentSpec
from workbench.core.model import DatasetProfile, RunRecord, RunSummary, StageResult, StageStatus

LogSink = Callable[[str], None]


class StatusLine(str):
    """A log line saying what a run is waiting for (an image pull or build, a warm worker
    starting): front ends show it even when they hide logs (`-q`), so a wait of seconds before
    a stage starts is never silent. Still a str for every sink that does not care."""


class DetailLine(str):
    """A log line that only says all is as expected (the environment image is up to date):
    front ends show it only when asked for detail (`-v`), so a routine run stays quiet."""


class CancelToken:
    """Set by whoever wants a run stopped; runners poll it and stop their process."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.superseded = False

    def cancel(self, reason: str = "cancelled", superseded: bool = False) -> None:
        """Stop the run. `superseded`: a newer change (or a manual run) replaces it, and the run
        is recorded as superseded rather than cancelled. A later call overrides an earlier one."""
        self.reason = reason
        self.superseded = superseded
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


@dataclass(frozen=True)
class PreparedEnvironment:
    image_id: str
    """Identity of the execution environment; part of every stage's cache key."""
    image_tag: str
    built: bool = False
    """True when this call built the image (first use or changed requirements)."""


@dataclass(frozen=True)
class StageJob:
    run_id: int
    project: str
    stage: str
    command: str
    project_dir: str
    """The run's read-only snapshot of the project; the stage's working directory."""
    output_dir: str
    """The only folder the stage may write."""
    upstream_dirs: dict[str, str]
    """Output folders of the stages this one depends on, by stage name (read-only)."""
    environment: PreparedEnvironment
    memory_bytes: int
    cpus: float
    network: bool
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)
    gpus: int = 0
    """GPUs the stage needs (Docker device requests; a Dask resource on a cluster)."""


@dataclass(frozen=True)
class StageOutcome:
    status: StageStatus
    """SUCCEEDED, FAILED or CANCELLED."""
    exit_code: int | None
    reason: str
    """Empty on success; otherwise why, in words (exit code, OOM kill, timeout...)."""
    log_tail: list[str]
    started_at: datetime
    finished_at: datetime
    worker: str = ""
    """A remote runner's placement, kept in the stage's lineage (StageResult.worker/host/image_id)."""
    host: str = ""
    image_id: str = ""


class StageRunner(Protocol):
    name: str

    def prepare(self, project_dir: str, env: EnvironmentSpec, on_log: LogSink,
                project: str | None = None, cancel: CancelToken | None = None) -> PreparedEnvironment:
        """Make the execution environment ready (build the image once) and identify it.
        Raises RunCancelled when `cancel` is set before the environment is ready."""

    def run_stage(self, job: StageJob, on_log: LogSink, cancel: CancelToken) -> StageOutcome:
        """Run one stage to completion, streaming its output lines to `on_log`."""


class MirrorTarget(Protocol):
    """Where the model registry is mirrored (MLflow). Every method is idempotent: it finds what
    an earlier, interrupted attempt made (by the workbench.* tags) instead of making it twice,
    and raises MirrorError for anything that went wrong."""

    tracking_uri: str

    def log_run(self, payload: dict, known_id: str | None) -> str:
        """Make sure the run is logged completely; return its id there."""

    def register_version(self, payload: dict, run_id: str | None, known_version: str | None) -> tuple[str, str]:
        """Make sure the model version exists (logging its run first if needed); return
        (the run's id there, the version's number there)."""

    def set_alias(self, payload: dict, known_version: str | None) -> str:
        """Point the alias at the version; return the version's number there."""


class LineageStore(Protocol):
    def start_run(self, project: str, project_path: str, trigger: str, runner: str,
                  stage_filter: list[str], changed_paths: list[str]) -> tuple[int, datetime]:
        """Record a run as running (short transaction) and return its id and start time."""

    def finish_run(self, record: RunRecord) -> None:
        """Write the whole run (stages, inputs, metrics, gates, artifacts) in one transaction."""

    def find_reusable_stage(self, project: str, stage: str, cache_key: str) -> StageResult | None:
        """The latest successful stage run with this cache key, if any."""

    def known_profile(self, fingerprint: str) -> DatasetProfile | None: ...

    def profile_dataset(self, path: str, fingerprint: str) -> DatasetProfile:
        """Read a data file and compute its schema and per-column statistics. What it cannot
        read (rows, or the whole file) is in the profile's `problems`, never raised."""

    def set_superseded_by(self, run_id: int, by_run_id: int) -> None:
        """Link a superseded run to the run that replaced it (short transaction)."""

    def tag_sweep_trial(self, run_id: int, sweep: str, trial: int) -> None:
        """Mark a run as trial `trial` of sweep `sweep` (workbench.services.sweep)."""

    def sweep_runs(self, sweep: str) -> list[tuple[int, int, str]]:
        """(run id, trial number, status) of a sweep's runs, by trial."""

    def mark_interrupted(self) -> list[int]:
        """Mark runs left running by dead processes as interrupted; return their ids."""

    def list_runs(self, project: str | None = None, limit: int = 50, offset: int = 0,
                  match: str | None = None) -> list[RunSummary]:
        """Newest first; `match`: words each found in a run's id, trigger, status or runner."""

    def list_runs_json(self, project: str | None = None, limit: int = 50, offset: int = 0) -> list[str]:
        """list_runs as JSON objects, for listings too long to build Python objects for."""

    def count_runs(self, project: str | None = None, match: str | None = None) -> int: ...

    def lineage(self, run_id: int) -> dict: ...

    def get_run(self, run_id: int) -> RunRecord: ...

    def save_evaluation(self, run_id: int, stage: str, payload: dict) -> None:
        """Record the evaluation computed from a stage's predictions file (short transaction)."""

    def evaluations(self, run_id: int) -> dict[str, dict]:
        """Stage -> evaluation payload (shape: workbench.adapters.duckdb_evaluation); reused
        stages answer with the run that produced their outputs."""


FileEventSink = Callable[[str, str, bool], None]
"""(path relative to the project with forward slashes, ChangeKind, is a folder). Called on the
watcher's own thread: it must only enqueue."""
WatchErrorSink = Callable[[str], None]
"""A problem that ends watching (folder deleted, watcher thread died), in words."""


class FileWatcher(Protocol):
    """Reports file events under one project folder, recursively, until stopped."""

    def start(self) -> None:
        """Begin watching; raises WorkbenchError when the folder cannot be watched."""

    def stop(self) -> None:
        """Stop and release the OS watches; idempotent."""

    def problem(self) -> str | None:
        """Why watching has stopped working (folder gone, watcher thread died), if it has."""


FileWatcherFactory = Callable[[str, FileEventSink, WatchErrorSink], FileWatcher]
"""(absolute project folder, event sink, error sink) -> a watcher, not yet started."""

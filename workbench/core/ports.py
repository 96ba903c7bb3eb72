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


class CancelToken:
    """Set by whoever wants a run stopped; runners poll it and stop their process."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
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


class StageRunner(Protocol):
    name: str

    def prepare(self, project_dir: str, env: EnvironmentSpec, on_log: LogSink,
                project: str | None = None) -> PreparedEnvironment:
        """Make the execution environment ready (build the image once) and identify it."""

    def run_stage(self, job: StageJob, on_log: LogSink, cancel: CancelToken) -> StageOutcome:
        """Run one stage to completion, streaming its output lines to `on_log`."""


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
        """Read a data file and compute its schema and per-column statistics."""

    def mark_interrupted(self) -> list[int]:
        """Mark runs left running by dead processes as interrupted; return their ids."""

    def list_runs(self, project: str | None = None, limit: int = 50, offset: int = 0) -> list[RunSummary]: ...

    def list_runs_json(self, project: str | None = None, limit: int = 50, offset: int = 0) -> list[str]:
        """list_runs as JSON objects, for listings too long to build Python objects for."""

    def count_runs(self, project: str | None = None) -> int: ...

    def lineage(self, run_id: int) -> dict: ...

    def get_run(self, run_id: int) -> RunRecord: ...

"""The records a run produces. Plain dataclasses: the lineage store persists them as they are."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from workbench.core.gates import GateResult


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    """Every stage ran (or was reused) and every gate passed."""
    GATE_FAILED = "gate_failed"
    """Every stage ran (or was reused), but a gate failed: its model is not registered."""
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"
    INTERRUPTED = "interrupted"


PIPELINE_COMPLETED = frozenset({RunStatus.SUCCEEDED, RunStatus.GATE_FAILED})
"""Run statuses whose stages all ran to the end, so its outputs and metrics are whole (what a
reproduction compares); only SUCCEEDED also passed its gates."""


class StageStatus(StrEnum):
    SUCCEEDED = "succeeded"
    REUSED = "reused"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not run because a stage it depends on failed or was cancelled."""
    CANCELLED = "cancelled"


class Trigger(StrEnum):
    MANUAL = "manual"
    WATCH = "watch"
    DRIFT = "drift"
    REPRODUCE = "reproduce"
    SWEEP = "sweep"


@dataclass(frozen=True)
class InputFile:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Artifact:
    name: str
    """Path relative to the stage's output folder, e.g. `model.txt`."""
    path: str
    """Absolute path on the host."""
    sha256: str
    size: int
    kind: str = "file"


@dataclass
class StageResult:
    stage: str
    status: StageStatus
    command: str
    cache_key: str
    output_dir: str
    output_digest: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float = 0.0
    exit_code: int | None = None
    reason: str = ""
    log_tail: list[str] = field(default_factory=list)
    reused_from_run: int | None = None
    inputs: list[InputFile] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    param_values: dict[str, str] = field(default_factory=dict)
    """The params keys the stage names (`params.toml:train.lr`) -> canonical JSON of the value
    it ran with: what its cache key took (workbench.core.params_keys)."""
    worker: str = ""
    """Where the stage ran, when not on this machine: the cluster worker's address."""
    host: str = ""
    """The host name of that worker."""
    image_id: str = ""
    """The image the stage ran in there (the worker's own build of the environment)."""

    @property
    def detail(self) -> str:
        """One line for a stage table: why it failed or was skipped, where it was reused from,
        and the cluster worker that ran it."""
        text = self.reason or (f"reused from run {self.reused_from_run}" if self.reused_from_run else "")
        if self.worker:
            text = f"{text} · " if text else ""
            text += f"on {self.worker} ({self.host})"
        return text


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    dtype: str
    count: int
    nulls: int
    distinct: int
    min: str | None = None
    max: str | None = None
    mean: float | None = None
    std: float | None = None
    q25: float | None = None
    q50: float | None = None
    q75: float | None = None


@dataclass(frozen=True)
class DatasetProfile:
    path: str
    fingerprint: str
    row_count: int
    columns: tuple[ColumnProfile, ...]
    problems: tuple[str, ...] = ()
    """What the profile could not read (rows left out, with their lines; or the whole file).
    A profile never stops a run: the project's own validate stage judges the data."""

    @property
    def schema(self) -> dict[str, str]:
        return {c.name: c.dtype for c in self.columns}

    @property
    def readable(self) -> bool:
        """False when nothing of the file could be read (no columns, and why not)."""
        return bool(self.columns) or not self.problems

    @property
    def warning(self) -> str:
        """The problems in one line, naming the file (its path in the project); "" when none."""
        return f"{self.path}: {'; '.join(self.problems)}" if self.problems else ""


@dataclass
class RunRecord:
    id: int
    project: str
    trigger: Trigger
    status: RunStatus
    runner: str
    started_at: datetime
    finished_at: datetime | None = None
    image_id: str = ""
    image_tag: str = ""
    reason: str = ""
    manifest_hash: str = ""
    snapshot_id: str = ""
    stage_filter: list[str] = field(default_factory=list)
    changed_paths: list[str] = field(default_factory=list)
    stages: list[StageResult] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    datasets: list[DatasetProfile] = field(default_factory=list)
    superseded_by: int | None = None
    sweep: str | None = None
    """The sweep (workbench sweep) this run is a trial of, and the trial's number."""
    sweep_trial: int | None = None
    snapshot_warnings: list[str] = field(default_factory=list)
    """What taking the run's snapshot left out (a dangling symlink); said by the run as it ends,
    not kept in the lineage store."""

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def metrics(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for stage in self.stages:
            merged.update(stage.metrics)
        return merged

    @property
    def gates_passed(self) -> bool:
        return all(g.passed is not False for g in self.gates)

    @property
    def reused_stages(self) -> list[str]:
        return [s.stage for s in self.stages if s.status is StageStatus.REUSED]

    @property
    def warnings(self) -> list[str]:
        """What the run should say although it did not fail: project files its snapshot left out,
        data files its lineage profile could only partly read, or not at all."""
        return [*self.snapshot_warnings, *(d.warning for d in self.datasets if d.problems)]


@dataclass(frozen=True)
class RunSummary:
    """One row of a run listing: what `workbench runs` and the runs pane show."""

    id: int
    project: str
    trigger: str
    status: str
    runner: str
    started_at: datetime
    duration_s: float | None
    reused: int
    stages: int
    primary_metric: float | None
    gates_passed: int
    gates_failed: int
    sweep: str | None = None
    sweep_trial: int | None = None

"""What a run reports while it goes: the CLI prints these, the TUI turns them into messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from workbench.core.model import RunRecord, RunSummary, StageResult


@dataclass(frozen=True)
class RunStarted:
    run_id: int
    project: str
    stages: tuple[str, ...]
    runner: str
    trigger: str


@dataclass(frozen=True)
class EnvironmentLog:
    run_id: int
    line: str


@dataclass(frozen=True)
class StageStarted:
    run_id: int
    stage: str


@dataclass(frozen=True)
class StageLog:
    run_id: int
    stage: str
    line: str


@dataclass(frozen=True)
class StageProgress:
    run_id: int
    stage: str
    done: int
    total: int
    label: str


@dataclass(frozen=True)
class StageFinished:
    run_id: int
    result: StageResult


@dataclass(frozen=True)
class RunFinished:
    record: RunRecord


# -- watch mode (workbench/services/watch.py) ---------------------------------------------------
# The watch service sends these, with the run events above, from its background threads (the
# project's scheduler thread and the thread a run executes on), never from the caller's thread:
# a Textual app hands them to the UI thread with `call_from_thread` or `post_message`.


@dataclass(frozen=True)
class WatchStarted:
    """The project's files are being watched (its starting hashes are taken)."""
    project: str


@dataclass(frozen=True)
class WatchStopped:
    project: str
    reason: str = ""
    """Empty when asked to stop; otherwise why watching ended (the folder was deleted, ...)."""


@dataclass(frozen=True)
class ChangeDetected:
    """Files whose content changed; `stages` (in run order) rerun with what is downstream."""
    project: str
    paths: tuple[str, ...]
    stages: tuple[str, ...]


@dataclass(frozen=True)
class ChangeIgnored:
    """A burst of events that starts nothing, and why (no stage reads it, content unchanged)."""
    project: str
    paths: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class ManifestInvalid:
    """The edited manifest does not parse or validate; watching goes on with the last valid
    one, and runs wait until it is fixed. `message` names the file, key and problem."""
    project: str
    message: str


@dataclass(frozen=True)
class ManifestReloaded:
    project: str


@dataclass(frozen=True)
class RunSuperseded:
    """Run `run_id` was cancelled by a newer change (or a manual run); `by_run_id` replaced it."""
    project: str
    run_id: int
    by_run_id: int


@dataclass(frozen=True)
class WatchError:
    """Something the user should know and act on: the folder was deleted, the inotify watch
    limit was reached, a run could not start."""
    project: str
    message: str


# -- drift (workbench/services/drift_watch.py): batches landing in a watched incoming folder ------


@dataclass(frozen=True)
class BatchChecked:
    """A batch in the project's incoming folder was checked for drift. When `retrain`, a run
    with trigger `drift` is queued (its RunStarted follows; `retrain_run_id` is set only by
    callers that ran it already)."""
    project: str
    batch: str
    drifted: bool
    share: float
    """The share of its columns that drifted."""
    drifted_columns: tuple[str, ...]
    retrain: bool
    reason: str
    """Why it retrains, or why not (no drift, cooldown, daily cap, no labels, ...)."""
    retrain_run_id: int | None = None
    batch_id: int | None = None
    verdict: str = ""
    """drifted, warning, no drift or not checked (workbench.core.drift_report); a batch that is
    not checked is neither drifted nor clean."""
    summary: str = ""
    """The verdict and the rule that decided it, in one line."""


@dataclass(frozen=True)
class BatchProgress:
    """A drift check of a batch in the incoming folder is under way: `done` of `total` columns
    in `phase` ("profiling reference" the first time a reference is used, then "checking batch").
    BatchChecked follows it."""
    project: str
    batch: str
    done: int
    total: int
    phase: str

    @property
    def line(self) -> str:
        """`checking data/incoming/b.parquet: 23/50 columns` (or `... profiling reference 3/50 columns`)."""
        what = "columns" if self.phase == "checking batch" else f"columns ({self.phase})"
        return f"checking {self.batch}: {self.done}/{self.total} {what}"


@dataclass(frozen=True)
class RetrainFinished:
    """A drift retrain run is recorded and its model registered (or not)."""
    project: str
    run_id: int
    batches: tuple[str, ...]
    status: str
    version: int | None
    """The model version the run's model is, if it registered one."""
    staged: bool
    """Whether that version went to staging by itself ([promotion] auto_staging)."""
    gates_failed: tuple[str, ...] = ()
    """The run's failed gates (such a version cannot be promoted)."""


@dataclass(frozen=True)
class ModelRegistered:
    """A run's model became a new model version of its project (after RunFinished)."""
    project: str
    run_id: int
    version: int
    trigger: str


@dataclass(frozen=True)
class WatchedElsewhere:
    """Another process watches the project and runs its changes; this one runs none of them
    and takes over when that process ends (services/watch_scheduler.py)."""
    project: str
    pid: int
    holder: str
    """What that process is: "workbench watch", "workbench TUI", ..."""


@dataclass(frozen=True)
class RunRecordedElsewhere:
    """A run of a project watched elsewhere, recorded by the process that watches it."""
    project: str
    run: RunSummary
    pid: int


RunEvent = Union[RunStarted, EnvironmentLog, StageStarted, StageLog, StageProgress, StageFinished, RunFinished,
                 WatchStarted, WatchStopped, ChangeDetected, ChangeIgnored, ManifestInvalid, ManifestReloaded,
                 RunSuperseded, WatchError, BatchChecked, BatchProgress, RetrainFinished, ModelRegistered, WatchedElsewhere,
                 RunRecordedElsewhere]
EventSink = Callable[[RunEvent], None]

PROGRESS_MARKER = "::wb progress"


def parse_progress(line: str) -> tuple[int, int, str] | None:
    """`::wb progress 40/200 boosting rounds` -> (40, 200, "boosting rounds")."""
    if not line.startswith(PROGRESS_MARKER):
        return None
    rest = line[len(PROGRESS_MARKER):].strip()
    counts, _, label = rest.partition(" ")
    done, _, total = counts.partition("/")
    try:
        return int(done), int(total), label.strip()
    except ValueError:
        return None

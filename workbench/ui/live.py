"""What the app knows about runs in flight, from their events: the stages' states and timings,
the latest progress count and the most recent log lines. The lineage store has a run's stages
only once it is recorded; until then the screen draws them from here."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

from workbench.core.events import (
    EnvironmentLog, RunEvent, RunFinished, RunStarted, StageFinished, StageLog, StageProgress, StageStarted,
)

LOG_KEPT = 5_000
"""Recent log lines kept per run, for showing a run that was not on screen when they came."""


@dataclass
class StageState:
    name: str
    status: str = "pending"
    started: float | None = None
    """time.monotonic() when it started."""
    duration_s: float | None = None
    detail: str = ""


@dataclass
class LiveRun:
    run_id: int
    project: str
    trigger: str
    runner: str
    stages: dict[str, StageState]
    started: float = field(default_factory=time.monotonic)
    progress: tuple[str, int, int, str] | None = None
    """(stage, done, total, label) of the latest progress report."""
    building: bool = False
    """The environment is being prepared (an image build) and no stage has started yet."""
    finished: bool = False
    ended_at: datetime | None = None
    """When its last stage ended (wall clock), while the run is being recorded: its elapsed
    time stops there, so it never reads more than the recorded duration."""
    log: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=LOG_KEPT))

    @classmethod
    def from_event(cls, event: RunStarted) -> "LiveRun":
        return cls(event.run_id, event.project, event.trigger, event.runner,
                   {name: StageState(name) for name in event.stages})

    @property
    def current_stage(self) -> str | None:
        return next((s.name for s in self.stages.values() if s.status == "running"), None)

    @property
    def running_stages(self) -> list[str]:
        return [s.name for s in self.stages.values() if s.status == "running"]

    def summary(self) -> str:
        """What the run does now, for its row in the runs table: `train 40/200`; between two
        stages the next one; once every stage ended, `recording` (gates, lineage, registry)."""
        running = self.running_stages
        if running:
            # Parallel stages: each running one, the one reporting progress with its count.
            return " + ".join(f"{name} {self.progress[1]}/{self.progress[2]}"
                              if self.progress and self.progress[0] == name else name for name in running)
        if self.building:
            return "building image"
        pending = [s.name for s in self.stages.values() if s.status == "pending"]
        if len(pending) == len(self.stages):
            return "starting"
        return pending[0] if pending else "recording"

    def apply(self, event: RunEvent) -> None:
        if isinstance(event, StageStarted):
            state = self.stages.setdefault(event.stage, StageState(event.stage))
            state.status, state.started = "running", time.monotonic()
            self.building = False
        elif isinstance(event, StageProgress):
            self.progress = (event.stage, event.done, event.total, event.label)
        elif isinstance(event, StageFinished):
            result = event.result
            state = self.stages.setdefault(result.stage, StageState(result.stage))
            state.status, state.duration_s = str(result.status), result.duration_s
            state.detail = result.detail
            if self.progress and self.progress[0] == result.stage:
                self.progress = None
            if all(s.status not in ("pending", "running") for s in self.stages.values()):
                self.ended_at = result.finished_at or datetime.now(timezone.utc)
        elif isinstance(event, EnvironmentLog):
            if self.current_stage is None:
                self.building = True
            self.log.append(("", event.line))
        elif isinstance(event, StageLog):
            self.log.append((event.stage, event.line))
        elif isinstance(event, RunFinished):
            self.finished = True
            self.progress = None
            self.building = False

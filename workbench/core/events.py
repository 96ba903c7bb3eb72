"""What a run reports while it goes: the CLI prints these, the TUI turns them into messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from workbench.core.model import RunRecord, StageResult


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


RunEvent = Union[RunStarted, EnvironmentLog, StageStarted, StageLog, StageProgress, StageFinished, RunFinished]
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

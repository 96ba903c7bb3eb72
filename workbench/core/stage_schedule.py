"""Which stages of a run may start now: a pure scheduler for parallel stages.

The pipeline asks `start()` for the stages it may launch, and tells `finished(stage, ok)` as
each one ends, in whatever order they end. A stage starts once every stage it depends on has
finished and succeeded (or was reused), and only within the budget: at most `jobs` stages at
once, and (when a CPU budget is given) no more CPUs than it holds, counting each stage's
`cpus`. A stage that asks for more CPUs than the whole budget still runs, alone, rather than
never.

A failed (or cancelled, or not run) stage blocks the stages that depend on it, directly or
not: `finished` returns them, in run order, each with the upstream stage that stops it, and
they never start. Stages that do not depend on it go on. With `fail_fast`, the first failure
stops the schedule instead: nothing more starts, and `not_started()` names what is left for the
caller to record as cancelled (the caller cancels the stages still running).

Pure: no threads, no clock. The pipeline (services/pipeline.py) owns the threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Blocked:
    """A stage that will not run because an upstream stage did not succeed."""

    stage: str
    upstream: str
    """The stage it depends on directly that did not succeed (failed, or was itself blocked)."""


def default_jobs(stage_cpus: list[float], cpu_count: int | None = None) -> int:
    """How many stages may run at once when the user does not say: as many as the machine's
    CPUs hold at the stages' largest `cpus` (a stage asking for 2 of 8 CPUs: 4 at once), at
    least 1."""
    cpus = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    widest = max(stage_cpus, default=1.0)
    return max(1, int(cpus // max(widest, 1.0)))


class StageSchedule:
    def __init__(self, order: list[str], depends_on: dict[str, tuple[str, ...]], jobs: int,
                 cpus: dict[str, float] | None = None, cpu_budget: float | None = None,
                 fail_fast: bool = False):
        """`order`: the selected stages in run order (planning.select_stages); `depends_on`:
        each stage's upstream stages (those outside `order` are not waited for: the run does
        not include them)."""
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        self.order = list(order)
        selected = set(order)
        self.depends_on = {name: tuple(d for d in depends_on.get(name, ()) if d in selected) for name in order}
        self.jobs = jobs
        self.cpus = {name: (cpus or {}).get(name, 1.0) for name in order}
        self.cpu_budget = cpu_budget
        self.fail_fast = fail_fast
        self.pending: list[str] = list(order)
        self.running: set[str] = set()
        self.succeeded: set[str] = set()
        self.unsuccessful: set[str] = set()
        """Failed, cancelled, or blocked: stages whose dependents cannot run."""
        self.stopped = False
        """fail_fast saw a failure: nothing more starts."""

    def start(self) -> list[str]:
        """The stages to launch now, in run order; they count as running from here on."""
        if self.stopped:
            return []
        launched = []
        for name in list(self.pending):
            if len(self.running) >= self.jobs:
                break
            if not all(dep in self.succeeded for dep in self.depends_on[name]):
                continue
            if not self._fits(name):
                # Later stages do not jump the queue past a wide one waiting for CPUs: it would
                # wait for ever behind a stream of narrow ones.
                break
            self.pending.remove(name)
            self.running.add(name)
            launched.append(name)
        return launched

    def _fits(self, name: str) -> bool:
        if self.cpu_budget is None or not self.running:
            return True
        used = sum(self.cpus[n] for n in self.running)
        return used + self.cpus[name] <= self.cpu_budget + 1e-9

    def finished(self, stage: str, ok: bool) -> list[Blocked]:
        """Record a stage's end. Returns the pending stages its failure blocks (none when `ok`,
        or with fail_fast, where `not_started` takes them all), in run order."""
        if stage not in self.running:
            raise ValueError(f"stage {stage!r} is not running")
        self.running.discard(stage)
        if ok:
            self.succeeded.add(stage)
            return []
        self.unsuccessful.add(stage)
        if self.fail_fast:
            self.stopped = True
            return []
        blocked = []
        for name in list(self.pending):  # run order: an upstream is settled before its dependents
            upstream = next((d for d in self.depends_on[name] if d in self.unsuccessful), None)
            if upstream is not None:
                self.pending.remove(name)
                self.unsuccessful.add(name)
                blocked.append(Blocked(name, upstream))
        return blocked

    def not_started(self) -> list[str]:
        """Stages that will never start (fail_fast stopped the schedule), in run order."""
        return list(self.pending) if self.stopped else []

    @property
    def done(self) -> bool:
        """Nothing runs and nothing more will start."""
        return not self.running and (self.stopped or not self.pending)

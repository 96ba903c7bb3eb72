"""The CPUs that the stages of one workbench process may use at once, across all its runs.

A run's own schedule (core/stage_schedule.py) keeps its stages within its jobs; this budget is
what several runs share: `workbench watch` and the TUI run the projects they watch at the same
time, each run with parallel stages, and together they should not ask for more CPUs than the
machine has. A stage takes its `cpus` from the budget just before it starts and gives them back
when it ends; a stage wider than the whole budget runs when nothing else does, rather than never.

Runs whose jobs the user set (`--jobs`, `environment.jobs`) do not take from it: a number given
is taken as said (services/pipeline.py). Other workbench processes have budgets of their own.

On a Dask cluster (`--runner cluster`) the total is the cpus the cluster's workers declare, not
this machine's: the pipeline resizes the budget as each run starts. The cluster's own resource
accounting keeps each worker within what it declared; this budget keeps one workbench from
queueing more stages at the scheduler than the whole cluster can hold at once.
"""

from __future__ import annotations

import os
import threading
from typing import Callable

from workbench.core.ports import CancelToken

EPSILON = 1e-9


class StageBudget:
    def __init__(self, cpus: float | None = None):
        self.total = float(cpus or os.cpu_count() or 1)
        self._used = 0.0
        self._changed = threading.Condition()

    @property
    def used(self) -> float:
        with self._changed:
            return self._used

    def acquire(self, cpus: float, cancel: CancelToken, on_wait: Callable[[str], None]) -> bool:
        """Take `cpus`, waiting while other stages hold too many; False when the run was
        cancelled meanwhile. `on_wait` is told once, when the stage has to wait."""
        told = False
        with self._changed:
            while self._used > EPSILON and self._used + cpus > self.total + EPSILON:
                if cancel.cancelled:
                    return False
                if not told:
                    used = self._used
                    self._changed.release()  # the message goes to a printer or a screen: not under the lock
                    try:
                        on_wait(f"waiting for CPUs: stages of other runs use {used:g} of the {self.total:g} "
                                f"this workbench has, and this stage needs {cpus:g}")
                    finally:
                        self._changed.acquire()
                    told = True
                    continue
                self._changed.wait(0.05)  # a cancel must be seen, so not an endless wait
            self._used += cpus
            return True

    def resize(self, cpus: float) -> None:
        """The CPUs there are now: on a cluster, what its workers declare, read as each run
        starts (workers come and go); stages waiting for room look again."""
        with self._changed:
            self.total = float(cpus)
            self._changed.notify_all()

    def release(self, cpus: float) -> None:
        with self._changed:
            self._used = max(0.0, self._used - cpus)
            self._changed.notify_all()

"""`W` on a sweep trial's run: the compare view (workbench/ui/screens/compare.py) on all of that
sweep's trials, as it runs.

It is the compare view, not a second one: the same grid, sort, chart and keys (s m x). What it
adds: its runs are the sweep's trial runs, read again whenever the lineage store says runs changed
(the main screen's once-a-second workspace poll calls `reload`, whichever process runs the
sweep: `workbench sweep` in a terminal, or this app), so a trial appears as it starts and its
metric as it ends; a title line with the sweep's progress (trials done of wanted, metric and
direction) and its best trial so far; the best trial's run as the grid's reference row (drawn in
the accent colour, the cells of other trials that differ from it in the warning colour); and the
chart starts on the sweep's metric against the first swept param.

The best trial is worked out from the rows shown (the succeeded runs, their metric, the sweep's
direction), not from the Optuna study: the study records a trial's value a moment after its run
is recorded, and the title must agree with the grid under it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

from rich.text import Text
from textual import work
from textual.message import Message
from textual.widgets import Static

from workbench.core.compare import Column, CompareRow, CompareTable, build_table
from workbench.core.errors import WorkbenchError
from workbench.core.model import RunStatus
from workbench.services.compare import CompareRequest
from workbench.ui.screens.compare import CompareScreen
from workbench.ui.widgets.compare_grid import cell_text

DONE = frozenset({RunStatus.SUCCEEDED, RunStatus.GATE_FAILED, RunStatus.FAILED})
"""A trial run with one of these counts as done; a cancelled, superseded or interrupted one is
run again when the sweep resumes, and one running is not done yet."""


@dataclass(frozen=True)
class SweepView:
    """One read of a sweep: what its study says about it, and its trial runs as compared."""

    name: str
    project: str
    metric: str
    direction: str
    """maximize or minimize."""
    wanted: int
    params: tuple[str, ...]
    """The swept params, in the order given."""
    trials: dict[int, int]
    """Run id -> trial number."""
    table: CompareTable
    best: int | None
    """The best trial's run so far (the table's reference); None before one succeeded."""


def read_sweep(session, name: str) -> SweepView:
    """The sweep's facts and its trial runs' compare table, the best trial's run as reference."""
    from workbench.services.sweep import SweepService

    service = SweepService(session)
    trials = service.trial_runs(name)
    report = service.report(name)
    rows: list[CompareRow] = []
    if trials:
        rows = session.compare(CompareRequest(project=report.project, run_ids=tuple(trials))).rows
        # A run's params are recorded as it ends; the study knows a running trial's from its start.
        values = {t.number: t.params for t in report.trials}
        rows = [replace(r, params={k: param_text(v) for k, v in values.get(trials[r.run_id], {}).items()})
                if r.status == RunStatus.RUNNING and not r.params else r for r in rows]
    best = best_row(rows, report.metric, report.direction)
    table = build_table(rows, reference=best.run_id if best is not None else None)
    return SweepView(report.name, report.project, report.metric, report.direction, report.wanted, report.params,
                     trials, table, best.run_id if best is not None else None)


def param_text(value) -> str:
    """A study's param value as a run's params record it (JSON text, strings bare)."""
    return value if isinstance(value, str) else json.dumps(value)


def best_row(rows: list[CompareRow], metric: str, direction: str) -> CompareRow | None:
    """The best succeeded (gates passed) trial run by the sweep's metric, as the sweep picks it:
    on a tie the earliest trial (the lowest run id; trials run in turn), as the study says too."""
    scored = sorted((r for r in rows if r.status == RunStatus.SUCCEEDED and r.metrics.get(metric) is not None),
                    key=lambda r: r.run_id)
    if not scored:
        return None
    pick = max if direction == "maximize" else min  # both keep the first of equals
    return pick(scored, key=lambda r: r.metrics[metric])


class SweepScreen(CompareScreen):
    DEFAULT_CSS = """
    SweepScreen > #compare-title { height: 2; }
    """

    class Read(Message):
        def __init__(self, view: SweepView, seconds: float) -> None:
            super().__init__()
            self.view = view
            self.seconds = seconds

    GRID_TITLE = "Trials"

    def __init__(self, session, sweep: str) -> None:
        super().__init__(session, CompareRequest(), f"sweep {sweep}")
        self.sweep = sweep
        self.view: SweepView | None = None
        self.reads = 0
        """Reads shown so far (a test waits on it)."""

    def reload(self) -> None:
        """Read the sweep again (runs changed in the store): new trials, metrics, the best."""
        self._load(self.request)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _load(self, _request: CompareRequest) -> None:
        started = time.perf_counter()
        try:
            view = read_sweep(self.session, self.sweep)
        except WorkbenchError as exc:
            self.post_message(self.Failed(str(exc)))
        except Exception as exc:  # a bug must not take the app down: say it on the screen
            self.post_message(self.Failed(f"internal error: {exc!r}"))
        else:
            self.post_message(self.Read(view, time.perf_counter() - started))

    def on_sweep_screen_read(self, message: Read) -> None:
        view, previous = message.view, self.table
        self.view = view
        table = view.table
        row = self.grid.current_row if previous is not None else None
        if previous is not None and previous.sort is not None and table.rows:
            table = table.sorted_by(previous.sort)  # a sort the user chose outlives a reload
        self.table = table
        self.grid.show(table, keep_run=row.run_id if row is not None else None)
        metrics, params = table.metrics, table.params
        if previous is None or self.metric is None:
            wanted_metric = view.metric
        else:
            wanted_metric = self.metric.label
        self.metric = next((c for c in metrics if c.name == wanted_metric or c.label == wanted_metric),
                           metrics[0] if metrics else None)
        if previous is None or (self.against is None and not previous.params):
            # The first read (or the first with a param that differs): the first swept param.
            first = next((c for name in view.params for c in params if c.name == name), None)
            self.against = first if first is not None else (params[0] if params else None)
        elif self.against is not None:
            self.against = next((c for c in params if c.name == self.against.name), None)
        self.reads += 1
        self._title()
        self._draw_chart()

    def _title(self) -> None:
        view = self.view
        if view is None:
            return
        table = view.table
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" sweep ", "bold")
        text.append(f"{view.name} · {view.project} · ")
        done = sum(1 for r in table.rows if r.status in DONE)
        running = sum(1 for r in table.rows if r.status == RunStatus.RUNNING)
        text.append(f"{done}/{view.wanted} trials done")
        if running:
            text.append(f", {running} running")
        text.append(f" · {view.direction} {view.metric}")
        text.append(f" · {len(table.params)} param{'s differ' if len(table.params) != 1 else ' differs'}", "dim")
        text.append("\n best so far: ", "bold")
        best = next((r for r in table.rows if r.run_id == view.best), None)
        if best is None:
            text.append("none yet (no trial has passed its gates)", "dim")
        else:
            values = " ".join(f"{name}={cell_text(best, Column(name, 'param', name))}" for name in view.params)
            score = cell_text(best, Column(view.metric, "metric", view.metric))
            text.append(f"trial {view.trials.get(best.run_id, '?')} · run {best.run_id} · "
                        f"{view.metric} {score} · {values}", "bold")
        self.query_one("#compare-title", Static).update(text)

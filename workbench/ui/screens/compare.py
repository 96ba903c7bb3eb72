"""`C`: runs side by side, as `workbench compare` prints them: one row per run, a column per
param that differs and per metric, cells that differ from the reference run highlighted, and a
chart of a metric across the runs or against a param.

The table is read on a worker thread (WorkbenchSession.compare) and comes back as a Loaded or
Failed message; sorting reorders the table in memory (workbench.core.compare), never reads again.
Keys (ids in workbench/ui/actions.py): s sorts by the column under the cursor (again: the other
way; a click on a header does the same), m charts the next metric, x charts the metric against the
param under the cursor (again: across the runs; off a param column, the next param in turn).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from workbench.core.compare import Column, CompareTable, SortKey, chart_series
from workbench.core.errors import WorkbenchError
from workbench.services.compare import CompareRequest
from workbench.ui.actions import bindings
from workbench.ui.widgets.compare_chart import CompareChart
from workbench.ui.widgets.compare_grid import CompareGrid


class CompareScreen(Screen[None]):
    DEFAULT_CSS = """
    CompareScreen { layout: vertical; background: $background; }
    CompareScreen > #compare-title { height: 1; background: $panel; color: $foreground; }
    CompareScreen > CompareGrid { height: 1fr; min-height: 6; border: round $border; }
    CompareScreen > CompareChart { height: 14; border: round $border-blurred; }
    """
    ACTION_SCOPE = "compare"
    """Its keys in workbench/ui/actions.py (and in the command palette while it is open)."""
    BINDINGS = bindings(ACTION_SCOPE) + [Binding("escape,q", "close", "Close", id="compare_close")]
    GRID_TITLE = "Runs"

    class Loaded(Message):
        def __init__(self, table: CompareTable, seconds: float) -> None:
            super().__init__()
            self.table = table
            self.seconds = seconds

    class Failed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, session, request: CompareRequest, what: str, primary_metric: str | None = None) -> None:
        super().__init__()
        self.session, self.request, self.what = session, request, what
        self.primary_metric = primary_metric
        """Charted first, when the runs have it."""
        self.table: CompareTable | None = None
        self.metric: Column | None = None
        """The metric charted."""
        self.against: Column | None = None
        """The param the metric is charted against; None: across the runs."""

    def compose(self) -> ComposeResult:
        yield Static(Text(f" compare · {self.what} · loading…", no_wrap=True), id="compare-title")
        yield CompareGrid(id="compare-grid")
        yield CompareChart(id="compare-chart")
        yield Footer(compact=True, show_command_palette=False)

    @property
    def grid(self) -> CompareGrid:
        return self.query_one(CompareGrid)

    @property
    def chart(self) -> CompareChart:
        return self.query_one(CompareChart)

    def on_mount(self) -> None:
        self.grid.border_title = self.GRID_TITLE
        self.chart.border_title = "Chart"
        self.grid.focus()
        self._load(self.request)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _load(self, request: CompareRequest) -> None:
        started = time.perf_counter()
        try:
            table = self.session.compare(request)
        except WorkbenchError as exc:
            self.post_message(self.Failed(str(exc)))
        except Exception as exc:  # a bug must not take the app down: say it on the screen
            self.post_message(self.Failed(f"internal error: {exc!r}"))
        else:
            self.post_message(self.Loaded(table, time.perf_counter() - started))

    def on_compare_screen_loaded(self, message: Loaded) -> None:
        self.table = message.table
        self.grid.show(message.table)
        metrics = message.table.metrics
        self.metric = next((c for c in metrics if c.name == self.primary_metric), metrics[0] if metrics else None)
        self._title()
        self._draw_chart()

    def on_compare_screen_failed(self, message: Failed) -> None:
        self.grid.show_message(f"✗ {message.error}")
        self.query_one("#compare-title", Static).update(Text(f" compare · {self.what} · ✗ {message.error}"))
        self.notify(message.error, title="compare", severity="error", timeout=8)

    def _title(self) -> None:
        table = self.table
        if table is None:
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" compare ", "bold")
        runs, params = len(table.rows), len(table.params)
        text.append(f"· {self.what} · {runs:,} run{'s' if runs != 1 else ''} · "
                    f"{params} param{'s differ' if params != 1 else ' differs'}")
        if table.hidden:
            text.append(f" ({len(table.hidden)} equal hidden)", "dim")
        text.append(f" · {len(table.metrics)} metrics")
        if table.reference is not None:
            text.append(f" · reference run {table.reference}")
        self.query_one("#compare-title", Static).update(text)

    # -- sorting -----------------------------------------------------------------------------

    def action_compare_sort(self) -> None:
        column = self.grid.current_column
        if column is not None:
            self.sort_by(column)

    def on_compare_grid_header_clicked(self, message: CompareGrid.HeaderClicked) -> None:
        self.sort_by(message.column)

    def sort_by(self, column: Column) -> None:
        """Sort by a column; the same column again sorts the other way. Metrics start highest
        first (the best runs on top), params and run columns ascending."""
        table = self.table
        if table is None:
            return
        label = column.name if column.kind == "run" else column.label
        current = table.sort
        if current is not None and current.column == label:
            sort = SortKey(label, not current.descending)
        else:
            sort = SortKey(label, column.kind == "metric")
        row = self.grid.current_row
        self.table = table.sorted_by(sort)
        self.grid.show(self.table, keep_run=row.run_id if row is not None else None)
        self._draw_chart()

    # -- the chart ---------------------------------------------------------------------------

    def on_compare_grid_cursor_moved(self, message: CompareGrid.CursorMoved) -> None:
        if message.column.kind == "metric" and message.column != self.metric:
            self.metric = message.column  # the chart follows the metric column the cursor is on
            self._draw_chart()

    def action_compare_metric(self) -> None:
        """Chart the next metric."""
        metrics = self.table.metrics if self.table is not None else []
        if not metrics:
            self.notify("no metrics recorded by these runs", severity="warning")
            return
        index = metrics.index(self.metric) if self.metric in metrics else -1
        self.metric = metrics[(index + 1) % len(metrics)]
        self._draw_chart()

    def action_compare_against(self) -> None:
        """On a param column: chart the metric against that param (again: across the runs).
        Elsewhere: against the next param; after the last one, across the runs again."""
        params = self.table.params if self.table is not None else []
        if not params:
            self.notify("no param differs between these runs: nothing to chart against", severity="warning")
            return
        column = self.grid.current_column
        if column is not None and column.kind == "param":
            self.against = None if column == self.against else column
        else:
            index = params.index(self.against) if self.against in params else -1
            self.against = params[index + 1] if index + 1 < len(params) else None
        self._draw_chart()

    def _draw_chart(self) -> None:
        table = self.table
        if table is None or self.metric is None:
            self.chart.draw(None)
            return
        self.chart.draw(chart_series(table, self.metric, self.against))
        against = f" against {self.against.label}" if self.against is not None else " across runs"
        self.chart.border_title = f"Chart · {self.metric.label}{against} · m metric · x against"

    def action_close(self) -> None:
        self.dismiss(None)

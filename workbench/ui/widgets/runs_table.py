"""The runs table: a virtual table over every run of a project, newest first.

It never holds more than a few pages of rows: its height is the run count, and the rows a
screen shows are fetched from the lineage store (a thread worker, one page at a time) when they
are first drawn. So 100,000 runs open as fast as 10, and a key press only redraws lines.
"""

from __future__ import annotations

import textwrap

from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Protocol

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from workbench.core.errors import WorkbenchError
from workbench.core.model import RunSummary
from workbench.ui import format as fmt
from workbench.ui.actions import view_bindings
from workbench.ui.live import LiveRun

PAGE = 200
KEEP_PAGES = 12
"""Pages kept in memory (2,400 rows); the least recently drawn go first."""


class RunSource(Protocol):
    """Where rows come from (WorkbenchSession has these): called on worker threads."""

    def runs(self, project: str | None = None, limit: int = 50, offset: int = 0,
             match: str | None = None) -> list[RunSummary]: ...

    def count_runs(self, project: str | None = None, match: str | None = None) -> int: ...


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int
    priority: int
    """Lower stays longer when the table is narrow."""
    right: bool = False


COLUMNS = (
    Column("mark", "", 1, 0),
    Column("id", "RUN", 6, 0, right=True),
    Column("trigger", "TRIGGER", 7, 2),
    Column("status", "STATUS", 13, 0),
    Column("started", "STARTED", 11, 4),
    Column("duration", "TIME", 8, 1, right=True),
    Column("reused", "REUSE", 5, 3, right=True),
    Column("metric", "METRIC", 8, 1, right=True),
    Column("gates", "GATES", 5, 1),
    Column("runner", "RUNNER", 7, 5),  # "cluster"
)
TRIGGER_SHORT = {"reproduce": "repro"}


NARROWING = ("drop:runner", "drop:started", "glyph:status", "drop:reused", "drop:trigger", "drop:duration",
             "drop:gates")
"""How the table gives up width, step by step, until it fits."""


def fit_columns(width: int) -> list[Column]:
    """The columns that fit `width`, in their order; status takes the width left over (up to
    12 more cells)."""
    used = lambda columns: sum(c.width + 1 for c in columns)  # noqa: E731
    chosen = list(COLUMNS)
    dropped: list[Column] = []
    steps = iter(NARROWING)
    while used(chosen) > width:
        step = next(steps, None)
        if step is None:
            break
        what, key = step.split(":")
        if what == "drop":
            dropped += [c for c in chosen if c.key == key]
            chosen = [c for c in chosen if c.key != key]
        else:  # the glyph alone: ✓ ✗ ● are told apart by shape and colour
            chosen = [Column(c.key, "", 1, c.priority) if c.key == key else c for c in chosen]
    status = next(c for c in chosen if c.key == "status")
    if status.width == 1 and used(chosen) + 12 <= width:  # the word back before anything else
        chosen = [replace(c, title="STATUS", width=13) if c.key == "status" else c for c in chosen]
    glyph_only = any(c.key == "status" and c.width == 1 for c in chosen)
    for column in reversed(dropped):  # then what was dropped last, while it fits
        if not glyph_only and used(chosen) + column.width + 1 <= width:
            chosen.append(column)
    order = [c.key for c in COLUMNS]
    chosen.sort(key=lambda c: order.index(c.key))
    spare = width - used(chosen)
    return [replace(c, title=c.title or "STATUS", width=c.width + min(spare, 12))
            if c.key == "status" and spare > 0 and (c.width > 1 or spare >= 10) else c for c in chosen]


class RunsTable(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    RunsTable {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
    }
    RunsTable > .runs-table--header { color: $text-muted; text-style: bold; }
    RunsTable > .runs-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground;
                                      text-style: $block-cursor-text-style; }
    RunsTable > .runs-table--cursor-blurred { background: $block-cursor-blurred-background; }
    RunsTable > .runs-table--good { color: $success; }
    RunsTable > .runs-table--info { color: $secondary; }
    RunsTable > .runs-table--bad { color: $error; }
    RunsTable > .runs-table--warn { color: $warning; }
    RunsTable > .runs-table--live { color: $accent; text-style: bold; }
    RunsTable > .runs-table--muted { color: $text-muted; }
    RunsTable > .runs-table--mark { color: $accent; text-style: bold; }
    """
    COMPONENT_CLASSES = {"runs-table--header", "runs-table--cursor", "runs-table--cursor-blurred",
                         "runs-table--mark"} | {f"runs-table--{t}" for t in fmt.TONES}
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Select", show=False),
    ] + view_bindings("runs")  # shown in the footer while the table has the focus

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)

    class Highlighted(Message):
        """The cursor is on another run (None: the table is empty)."""

        def __init__(self, table: "RunsTable", run: RunSummary | None) -> None:
            super().__init__()
            self.table = table
            self.run = run

    class Selected(Message):
        """Enter (or a click) on a run."""

        def __init__(self, table: "RunsTable", run: RunSummary) -> None:
            super().__init__()
            self.table = table
            self.run = run

    class Counted(Message):
        """A fresh count of the runs arrived (the pane's title shows it)."""

        def __init__(self, table: "RunsTable", total: int) -> None:
            super().__init__()
            self.table = table
            self.total = total

    class Loaded(Message):
        """Internal: a worker's rows."""

        def __init__(self, generation: int, total: int | None, pages: dict[int, list[RunSummary]],
                     anchor: int | None = None, error: str | None = None) -> None:
            super().__init__()
            self.generation, self.total, self.pages, self.anchor, self.error = generation, total, pages, anchor, error

    def __init__(self, source: RunSource, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.project: str | None = None
        self.match: str | None = None
        self.metric_name = "METRIC"
        self.total = 0
        self.loaded = False
        """True once the first count arrived for the current project and filter."""
        self.error: str | None = None
        self.live: dict[int, LiveRun] = {}
        """Run id -> a run in flight as this app sees it from its events, set by the screen:
        what it is doing (`train 40/200`) and when its last stage ended."""
        self.finished: dict[int, RunSummary] = {}
        """Run id -> the row of a run whose end this app saw before its row was read again:
        the row shows its outcome at once, not `running` with a clock still going."""
        self.marked: int | None = None
        self.picked: set[int] = set()
        """Runs picked (Space) for the compare view (C); the project's runs only."""
        self._pages: OrderedDict[int, list[RunSummary]] = OrderedDict()
        self._pending: set[int] = set()
        self._generation = 0
        self._highlighted: int | None = -1
        self._styles: dict[str, Style] = {}
        self._columns: list[Column] = []
        self._columns_width = -1

    # -- what the screen calls ---------------------------------------------------------------

    def show(self, project: str | None, match: str | None = None, metric_name: str | None = None) -> None:
        """Show a project's runs (matching `match`) from the newest."""
        if project != self.project:
            self.picked.clear()
        self.project, self.match = project, (match or None)
        self.metric_name = (metric_name or "metric").upper()
        self._generation += 1
        self._pages.clear()
        self._pending.clear()
        self.error = None
        self.loaded = False
        self.total = 0
        self.set_reactive(RunsTable.cursor, 0)
        self._highlighted = -1
        self.virtual_size = Size(self.size.width, 1)
        self.scroll_to(y=0, animate=False, immediate=True)
        self._fetch(self._generation, with_count=True)
        self.refresh()

    def reload(self) -> None:
        """Fetch the count and the rows on screen again (runs started or finished); the cursor
        stays on its run, or on the newest run when it was there."""
        if not self.loaded:
            return
        current = self.row(self.cursor)
        anchor = current.id if current is not None and self.cursor > 0 else None
        self._generation += 1
        self._pending.clear()
        self._fetch(self._generation, anchor, with_count=True)

    def row(self, index: int) -> RunSummary | None:
        page = self._pages.get(index // PAGE)
        if page is None or index % PAGE >= len(page):
            return None
        return page[index % PAGE]

    @property
    def current(self) -> RunSummary | None:
        return self.row(self.cursor) if self.total else None

    def neighbour(self, index: int) -> RunSummary | None:
        """The row after `index` (the older run), if loaded."""
        return self.row(index + 1) if index + 1 < self.total else None

    # -- fetching -----------------------------------------------------------------------------

    def _viewport(self) -> tuple[int, int]:
        """(first row index on screen, rows on screen)."""
        return int(self.scroll_y), max(self.size.height - 1, 1)

    def _want_pages(self) -> None:
        if not self.loaded or self.error:
            return
        top, height = self._viewport()
        pages = [p for p in range(top // PAGE, (top + height) // PAGE + 1)
                 if p not in self._pages and p not in self._pending and p * PAGE < self.total]
        if pages:
            self._pending.update(pages)
            self._fetch(self._generation, pages=pages)

    def _fetch(self, generation: int, anchor: int | None = None, with_count: bool = False,
               pages: list[int] | None = None) -> None:
        top, height = self._viewport()
        self._fetch_rows(generation, self.project, self.match, anchor, with_count, pages or [],
                         self.cursor, self.total, top, height)

    @work(thread=True, group="runs-table", exit_on_error=False)
    def _fetch_rows(self, generation: int, project: str | None, match: str | None, anchor: int | None,
                    with_count: bool, pages: list[int], cursor: int, previous: int, top: int, height: int) -> None:
        """On a worker thread: the count (when asked) and pages of rows, posted as Loaded."""
        try:
            total = None
            if with_count:
                total = self.source.count_runs(project, match=match)
                if anchor is not None:
                    # A new run lands on top: the anchored run moved down by as many rows.
                    top = min(max(cursor + (total - previous), 0), max(total - 1, 0)) - height // 2
                first, last = max(top, 0) // PAGE, (max(top, 0) + height) // PAGE
                pages = sorted({0} | set(range(first, last + 1))) if anchor is None else list(range(first, last + 1))
                pages = [p for p in pages if p * PAGE < total]
            fetched = {}
            for page in pages:
                rows = self.source.runs(project, limit=PAGE, offset=page * PAGE, match=match)
                if with_count:
                    fetched[page] = rows
                else:  # each page as soon as it is there
                    self.post_message(self.Loaded(generation, None, {page: rows}))
            if with_count:
                self.post_message(self.Loaded(generation, total, fetched, anchor))
        except WorkbenchError as exc:
            self.post_message(self.Loaded(generation, None, {}, error=str(exc)))
        except Exception as exc:  # a bug must not take the app down: show it in the table
            self.post_message(self.Loaded(generation, None, {}, error=f"internal error: {exc!r}"))

    def on_runs_table_loaded(self, message: Loaded) -> None:
        message.stop()
        if message.generation != self._generation:
            return
        if message.error:
            self.error = message.error
            self.loaded = True
            self._pending.clear()
            self.refresh()
            return
        if message.total is not None:  # a fresh listing: replace what was cached
            self.loaded = True
            self.error = None
            self.total = message.total
            self._pages.clear()
            self._pending.clear()
            self.virtual_size = Size(self.size.width, self.total + 1)
        for page, rows in message.pages.items():
            self._pages[page] = rows
            self._pending.discard(page)
            for run in rows:
                if run.status != "running":
                    self.finished.pop(run.id, None)
        while len(self._pages) > KEEP_PAGES:
            self._pages.popitem(last=False)
        if message.total is not None:
            index = self.cursor if message.anchor is None else self._find(message.anchor, self.cursor)
            self.cursor = min(index, max(self.total - 1, 0)) if message.anchor else (
                0 if self.cursor == 0 else min(self.cursor, max(self.total - 1, 0)))
            self.post_message(self.Counted(self, self.total))
        self._announce()
        self.refresh()

    def _find(self, run_id: int, fallback: int) -> int:
        for page, rows in self._pages.items():
            for offset, run in enumerate(rows):
                if run.id == run_id:
                    return page * PAGE + offset
        return fallback

    def _announce(self) -> None:
        if not self.loaded:  # nothing read yet: "no runs" would be a guess
            return
        run = self.current
        run_id = run.id if run is not None else None
        if run_id != self._highlighted and (run is not None or self.total == 0):
            self._highlighted = run_id
            self.post_message(self.Highlighted(self, run))

    # -- moving -------------------------------------------------------------------------------

    def watch_cursor(self, cursor: int) -> None:
        height = max(self.size.height - 1, 1)
        if cursor < self.scroll_y:
            self.scroll_to(y=cursor, animate=False, immediate=True)
        elif cursor >= self.scroll_y + height:
            self.scroll_to(y=cursor - height + 1, animate=False, immediate=True)
        self._want_pages()
        self._announce()
        self.refresh()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._want_pages()

    def action_cursor(self, step: int) -> None:
        if self.total:
            self.cursor = min(max(self.cursor + step, 0), self.total - 1)

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(self.size.height - 2, 1))

    def action_jump(self, index: int) -> None:
        if self.total:
            self.cursor = self.total - 1 if index < 0 else index

    def action_select(self) -> None:
        run = self.current
        if run is not None:
            self.post_message(self.Selected(self, run))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1 and self.total:
            index = int(self.scroll_y) + event.y - 1
            if index < self.total:
                self.cursor = index
                if event.chain >= 2:
                    self.action_select()

    def on_resize(self, _event: events.Resize) -> None:
        self.virtual_size = Size(self.size.width, self.total + 1)
        self._want_pages()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- drawing ------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        self._styles.clear()
        super().notify_style_update()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            # A full style, not a partial one: theme colours may be translucent ($text-muted is
            # "auto 60%"), and only a full style blends them with the background.
            style = self._styles[name] = self.get_component_rich_style(f"runs-table--{name}")
        return style

    def _layout(self) -> list[Column]:
        width = self.scrollable_content_region.width
        if width != self._columns_width:
            self._columns, self._columns_width = fit_columns(width), width
        return self._columns

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        columns = self._layout()
        if y == 0:
            cells = [(self.metric_name if c.key == "metric" else c.title, None) for c in columns]
            return self._strip(columns, cells, base + self._style("header"), width)
        index = int(self.scroll_y) + y - 1
        if self.error:  # wrapped: its end says what to do (rename, fix the key)
            lines = textwrap.wrap(f"✗ {self.error}", max(width - 2, 10), subsequent_indent="  ")
            return self._message(f" {lines[y - 1]}" if y - 1 < len(lines) else "", base + self._style("bad"), width)
        if not self.loaded:
            return self._message(" loading…" if y == 1 else "", base + self._style("muted"), width)
        if self.total == 0:
            text = " no runs match the filter (esc clears it)" if self.match else " no runs yet: press r to run"
            return self._message(text if y == 1 else "", base + self._style("muted"), width)
        if index >= self.total:
            return Strip.blank(width, base)
        run = self.row(index)
        row_style = base
        if index == self.cursor:
            row_style = base + self._style("cursor" if self.has_focus else "cursor-blurred")
        if run is None:
            self._want_pages()
            return self._message("   …", row_style + self._style("muted"), width)
        return self._strip(columns, self._cells(run), row_style, width, cursor=index == self.cursor)

    def finish(self, record, primary_metric: str | None) -> None:
        """A run of this app ended: its row shows the outcome now; the next read replaces it."""
        metric = record.metrics.get(primary_metric) if primary_metric else None
        self.live.pop(record.id, None)
        self.finished[record.id] = RunSummary(
            record.id, record.project, str(record.trigger), str(record.status), record.runner, record.started_at,
            record.duration_s, len(record.reused_stages), len(record.stages),
            None if metric is None or metric != metric else metric,
            sum(1 for g in record.gates if g.passed is True), sum(1 for g in record.gates if g.passed is False))
        self.refresh()

    def _cells(self, run: RunSummary) -> list[tuple[str, str | None]]:
        if run.status == "running" and run.id in self.finished:
            run = self.finished[run.id]
        live = self.live.get(run.id)
        status = run.status
        elapsed = run.duration_s
        if status == "running":
            until = live.ended_at if live is not None and live.ended_at is not None else datetime.now(timezone.utc)
            elapsed = max((until - run.started_at).total_seconds(), 0.0)
        gates_tone = "bad" if run.gates_failed else ("good" if run.gates_passed else "muted")
        values = {
            "mark": ("◆" if run.id == self.marked else "•" if run.id in self.picked else " ", "mark"),
            "id": (str(run.id), None),
            "trigger": (TRIGGER_SHORT.get(run.trigger, run.trigger), "muted" if run.trigger == "manual" else None),
            "status": (f"{fmt.GLYPHS['running']} {live.summary()}" if live and status == "running"
                       else fmt.status_text(status),
                       fmt.tone(status)) if self._status_width() > 1 else (fmt.GLYPHS.get(status, "?"), fmt.tone(status)),
            "started": (fmt.when(run.started_at), "muted"),
            "duration": (fmt.duration(elapsed), None),
            "reused": (f"{run.reused}/{run.stages}" if run.stages else "—", "info" if run.reused else "muted"),
            "metric": (fmt.metric(run.primary_metric), None),
            "gates": (fmt.gates(run.gates_passed, run.gates_failed), gates_tone),
            "runner": (run.runner, "muted"),
        }
        return [values[c.key] for c in self._columns]

    def _status_width(self) -> int:
        return next((c.width for c in self._columns if c.key == "status"), 0)

    def _strip(self, columns: list[Column], cells: list[tuple[str, str | None]], style: Style, width: int,
               cursor: bool = False) -> Strip:
        segments = []
        used = 0
        for column, (text, tone) in zip(columns, cells):
            if column.right and cell_len(text) < column.width:
                cell = " " * (column.width - cell_len(text)) + text
            else:
                cell = set_cell_size(text, column.width)
            cell_style = style if tone is None or cursor else style + self._style(tone)
            segments.append(Segment(cell + " ", cell_style))
            used += column.width + 1
        if used < width:
            segments.append(Segment(" " * (width - used), style))
        return Strip(segments).crop(0, width)

    def _message(self, text: str, style: Style, width: int) -> Strip:
        return Strip([Segment(set_cell_size(text, width), style)], width)

    def tick(self) -> None:
        """Redraw running rows' durations (the screen calls this once a second)."""
        if any(r.status == "running" for r in self._visible_rows()):
            self.refresh()

    def _visible_rows(self) -> list[RunSummary]:
        top = int(self.scroll_y)
        rows = (self.row(i) for i in range(top, min(top + self.size.height, self.total)))
        return [r for r in rows if r is not None]


"""The compare view's table: one row per run (id, status, when), a column per param and metric.

A virtual table, like the runs table: it draws only the lines on screen from the CompareTable it
is given, and formats a row's cells only when the row is first drawn. (Textual's DataTable
measures every cell when rows are added: 10,000 runs x 60 columns took 15 s to appear.) The run
columns stay put; the param and metric columns scroll sideways with the cursor.

Cells whose value differs from the reference run's are drawn in the theme's warning colour, the
reference row in its accent colour. A click on a header asks to sort by that column.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from workbench.core.compare import Column, CompareRow, CompareTable, cell_value
from workbench.ui import format as fmt

MIN_WIDTH, MAX_WIDTH = 5, 16
SAMPLE_ROWS = 200
"""Column widths are measured on this many rows (and the header): opening stays O(screen)."""
KEEP_ROWS = 400


@dataclass(frozen=True)
class GridColumn:
    column: Column
    width: int
    right: bool = True


RUN_COLUMNS = (GridColumn(Column("id", "run", "id"), 6), GridColumn(Column("status", "run", "status"), 13, False),
               GridColumn(Column("started", "run", "started"), 11, False))
TITLES = {"id": "RUN", "status": "STATUS", "started": "WHEN"}


def cell_text(row: CompareRow, column: Column) -> str:
    if column.kind == "run":
        if column.name == "id":
            return str(row.run_id)
        if column.name == "status":
            return fmt.status_text(row.status)
        return fmt.when(row.started_at)
    value = cell_value(row, column)
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return fmt.metric(value) if column.kind == "metric" else f"{value:g}"
    return str(value)


class CompareGrid(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    CompareGrid {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
    }
    CompareGrid > .compare-grid--header { color: $text-muted; text-style: bold; }
    CompareGrid > .compare-grid--sorted { color: $primary; text-style: bold; }
    CompareGrid > .compare-grid--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    CompareGrid > .compare-grid--cursor-blurred { background: $block-cursor-blurred-background; }
    CompareGrid > .compare-grid--changed { color: $warning; text-style: bold; }
    CompareGrid > .compare-grid--reference { color: $accent; }
    CompareGrid > .compare-grid--good { color: $success; }
    CompareGrid > .compare-grid--info { color: $secondary; }
    CompareGrid > .compare-grid--bad { color: $error; }
    CompareGrid > .compare-grid--warn { color: $warning; }
    CompareGrid > .compare-grid--live { color: $accent; }
    CompareGrid > .compare-grid--muted { color: $text-muted; }
    """
    COMPONENT_CLASSES = {"compare-grid--header", "compare-grid--sorted", "compare-grid--cursor",
                         "compare-grid--cursor-blurred", "compare-grid--changed", "compare-grid--reference"} | {
        f"compare-grid--{t}" for t in fmt.TONES}
    BINDINGS = [
        Binding("up,k", "move(-1, 0)", "Up", show=False),
        Binding("down,j", "move(1, 0)", "Down", show=False),
        Binding("left,h", "move(0, -1)", "Left", show=False),
        Binding("right,l", "move(0, 1)", "Right", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, repaint=False)
    cursor_column: reactive[int] = reactive(0, repaint=False)
    """Index into `columns` (run columns included)."""

    class HeaderClicked(Message):
        """A click on a column's header: sort by it."""

        def __init__(self, grid: "CompareGrid", column: Column) -> None:
            super().__init__()
            self.grid = grid
            self.column = column

    class CursorMoved(Message):
        """The cursor is on another cell (the screen charts a metric column it lands on)."""

        def __init__(self, grid: "CompareGrid", column: Column) -> None:
            super().__init__()
            self.grid = grid
            self.column = column

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.table: CompareTable | None = None
        self.columns: list[GridColumn] = list(RUN_COLUMNS)
        self.first_scrolled = len(RUN_COLUMNS)
        """The first param/metric column drawn (those before it scrolled off to the left)."""
        self.message = "loading…"
        self._texts: OrderedDict[int, list[str]] = OrderedDict()
        self._styles: dict[str, Style] = {}

    # -- what the screen calls ---------------------------------------------------------------

    def show(self, table: CompareTable, keep_run: int | None = None) -> None:
        """Show a table; the cursor stays on run `keep_run` when it is in it."""
        column = self.current_column
        self.table = table
        sample = table.rows[:SAMPLE_ROWS]
        self.columns = list(RUN_COLUMNS) + [
            GridColumn(c, min(max(MIN_WIDTH, cell_len(c.label) + 2,  # room for the sort arrow
                                  *(cell_len(cell_text(r, c)) for r in sample)), MAX_WIDTH))
            for c in table.columns]
        self._texts.clear()
        self.message = "" if table.rows else "no runs to compare"
        self.virtual_size = Size(self.size.width, len(table.rows) + 1)
        index = next((i for i, r in enumerate(table.rows) if r.run_id == keep_run), 0) if keep_run else 0
        self.set_reactive(CompareGrid.cursor_row, index)
        if column is not None:
            same = next((i for i, c in enumerate(self.columns) if c.column == column), None)
            self.set_reactive(CompareGrid.cursor_column, same if same is not None else 0)
        self._scroll_to_cursor()
        self.refresh()

    def show_message(self, text: str) -> None:
        self.message = text
        self.refresh()

    @property
    def current_row(self) -> CompareRow | None:
        if self.table is None or not self.table.rows:
            return None
        return self.table.rows[min(self.cursor_row, len(self.table.rows) - 1)]

    @property
    def current_column(self) -> Column | None:
        if self.table is None:
            return None
        return self.columns[min(self.cursor_column, len(self.columns) - 1)].column

    def header_text(self) -> list[str]:
        """The headers as drawn (for tests and the snapshot)."""
        return [self._title(c) for c in self.columns]

    # -- moving ------------------------------------------------------------------------------

    def action_move(self, rows: int, columns: int) -> None:
        if self.table is None or not self.table.rows:
            return
        self.cursor_row = min(max(self.cursor_row + rows, 0), len(self.table.rows) - 1)
        self.cursor_column = min(max(self.cursor_column + columns, 0), len(self.columns) - 1)

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(self.size.height - 2, 1), 0)

    def action_jump(self, index: int) -> None:
        if self.table is not None and self.table.rows:
            self.cursor_row = len(self.table.rows) - 1 if index < 0 else index

    def watch_cursor_row(self) -> None:
        self._scroll_to_cursor()
        self.refresh()

    def watch_cursor_column(self) -> None:
        self._scroll_to_cursor()
        column = self.current_column
        if column is not None:
            self.post_message(self.CursorMoved(self, column))
        self.refresh()

    def _scroll_to_cursor(self) -> None:
        height = max(self.size.height - 1, 1)
        if self.cursor_row < self.scroll_y:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= self.scroll_y + height:
            self.scroll_to(y=self.cursor_row - height + 1, animate=False, immediate=True)
        fixed = len(RUN_COLUMNS)
        if self.cursor_column >= fixed:
            if self.cursor_column < self.first_scrolled:
                self.first_scrolled = self.cursor_column
            while self.first_scrolled < self.cursor_column and not self._fits(self.first_scrolled, self.cursor_column):
                self.first_scrolled += 1

    def _fits(self, first: int, last: int) -> bool:
        width = self.scrollable_content_region.width or self.size.width
        used = sum(c.width + 1 for c in self.columns[:len(RUN_COLUMNS)])
        used += sum(c.width + 1 for c in self.columns[first:last + 1])
        return used <= width

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)  # inside a border, if it has one
        if offset is None or self.table is None:
            return
        hit = self._column_at(offset.x)
        if hit is None:
            return
        if offset.y == 0:
            self.post_message(self.HeaderClicked(self, self.columns[hit].column))
            return
        index = int(self.scroll_y) + offset.y - 1
        if index < len(self.table.rows):
            self.cursor_row, self.cursor_column = index, hit

    def _column_at(self, x: int) -> int | None:
        position = 0
        for index in self._drawn():
            width = self.columns[index].width + 1
            if position <= x < position + width:
                return index
            position += width
        return None

    def on_resize(self, _event: events.Resize) -> None:
        if self.table is not None:
            self.virtual_size = Size(self.size.width, len(self.table.rows) + 1)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- drawing -----------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        self._styles.clear()
        super().notify_style_update()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(f"compare-grid--{name}")
        return style

    def _drawn(self) -> list[int]:
        """Indexes of the columns drawn: the run columns, then from `first_scrolled` on."""
        width = self.scrollable_content_region.width or self.size.width
        drawn, used = [], 0
        for index in list(range(len(RUN_COLUMNS))) + list(range(self.first_scrolled, len(self.columns))):
            if used + self.columns[index].width + 1 > width and index >= len(RUN_COLUMNS):
                break
            drawn.append(index)
            used += self.columns[index].width + 1
        return drawn

    def _title(self, grid_column: GridColumn) -> str:
        column = grid_column.column
        title = TITLES.get(column.name, column.label) if column.kind == "run" else column.label
        sort = self.table.sort if self.table is not None else None
        if sort is not None and self._is_sorted(column, sort.column):
            title += " ▼" if sort.descending else " ▲"
        return title

    def _is_sorted(self, column: Column, label: str) -> bool:
        if column.kind == "run":
            return column.name == label
        return label in (column.label, f"{column.kind}:{column.name}")

    def _texts_of(self, index: int, row: CompareRow) -> list[str]:
        texts = self._texts.get(index)
        if texts is None:
            texts = self._texts[index] = [cell_text(row, c.column) for c in self.columns]
            while len(self._texts) > KEEP_ROWS:
                self._texts.popitem(last=False)
        return texts

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        table = self.table
        if table is None or not table.rows:
            text = f" {self.message}" if y == 1 else ""
            return Strip([Segment(set_cell_size(text, width), base + self._style("muted"))], width)
        drawn = self._drawn()
        if y == 0:
            sort = table.sort
            cells = []
            for index in drawn:
                column = self.columns[index]
                tone = "sorted" if sort is not None and self._is_sorted(column.column, sort.column) else "header"
                cells.append((index, self._title(column), base + self._style(tone)))
            return self._strip(cells, base, width)
        row_index = int(self.scroll_y) + y - 1
        if row_index >= len(table.rows):
            return Strip.blank(width, base)
        row = table.rows[row_index]
        texts = self._texts_of(row_index, row)
        is_reference = row.run_id == table.reference
        cells = []
        for index in drawn:
            column = self.columns[index].column
            style = base
            if column.kind == "run":
                if column.name == "status":
                    style += self._style(fmt.tone(row.status))
                elif is_reference:
                    style += self._style("reference")
                elif column.name == "started":
                    style += self._style("muted")
            elif table.differs(row, column):
                style += self._style("changed")
            elif is_reference:
                style += self._style("reference")
            if row_index == self.cursor_row and index == self.cursor_column:
                style += self._style("cursor" if self.has_focus else "cursor-blurred")
            cells.append((index, texts[index], style))
        return self._strip(cells, base, width)

    def _strip(self, cells: list[tuple[int, str, Style]], base: Style, width: int) -> Strip:
        segments, used = [], 0
        for index, text, style in cells:
            column = self.columns[index]
            if cell_len(text) > column.width:
                text = set_cell_size(text, column.width - 1) + "…"
            elif column.right:
                text = " " * (column.width - cell_len(text)) + text
            segments.append(Segment(set_cell_size(text, column.width), style))
            segments.append(Segment(" ", base))
            used += column.width + 1
        if used < width:
            segments.append(Segment(" " * (width - used), base))
        return Strip(segments).crop(0, width)

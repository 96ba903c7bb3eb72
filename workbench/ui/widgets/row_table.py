"""A DataTable whose cursor picks rows: Home and End go to the first and the last row.

Textual's DataTable binds Home/End to the leftmost and rightmost column, which a row cursor
never moves to, so the keys did nothing in the Models table while the runs table (and the help
screen) promise "to the newest or the oldest"."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable


class RowTable(DataTable):
    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]


def fill_table(table: DataTable, labels: tuple[str, ...], rows: list[tuple[str, tuple]],
               room: int | None = None, squeeze: tuple[tuple[int, int], ...] = ()) -> None:
    """Replace a table's columns and rows; `rows` are (key, cells).

    Each column gets an explicit width, that of its widest cell. Textual's DataTable sizes
    auto-width columns only on its next idle, while it caches each cell's rendering by row,
    column and update count but not by width: a table refilled while the screen draws (moving
    to another batch) kept cells drawn at the header's width, `monthly_charges` as `monthl`,
    PSI 0.192 as `0.1`, until the next refill."""
    widths = [cell_len(label) for label in labels]
    for _key, cells in rows:
        for i, cell in enumerate(cells):
            widths[i] = max(widths[i], cell.cell_len if isinstance(cell, Text) else cell_len(str(cell)))
    if room:  # narrower than its cells (80 columns): the `squeeze` columns give way, in order, to their minimum
        over = sum(widths) + 2 * len(widths) - room  # each cell has one column of padding either side
        for index, least in squeeze:
            cut = min(max(over, 0), max(widths[index] - least, 0))
            widths[index] -= cut
            over -= cut
        rows = [(key, tuple(_fit(cell, widths[i]) for i, cell in enumerate(cells))) for key, cells in rows]
    table.clear(columns=True)
    for label, width in zip(labels, widths):
        table.add_column(label, width=width)
    for key, cells in rows:
        table.add_row(*cells, key=key)


def _fit(cell, width: int):
    """A cell cut to `width` with an ellipsis (a DataTable crops without one)."""
    text = cell if isinstance(cell, Text) else Text(str(cell))
    if text.cell_len <= width:
        return cell
    text = text.copy()
    text.truncate(max(width - 1, 0))
    text.append("…")
    return text

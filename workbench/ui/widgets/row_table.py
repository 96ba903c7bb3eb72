"""A DataTable whose cursor picks rows: Home and End go to the first and the last row.

Textual's DataTable binds Home/End to the leftmost and rightmost column, which a row cursor
never moves to, so the keys did nothing in the Models table while the runs table (and the help
screen) promise "to the newest or the oldest"."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class RowTable(DataTable):
    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

"""`?` / F1: every key, its action id (for `[keys]` in config) and what it does."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from workbench.ui.actions import ACTIONS

NAVIGATION = (
    ("↑ ↓  j k", "move in a list or table"),
    ("PgUp PgDn  Home End", "page through runs; to the newest or the oldest"),
    ("Enter", "a project: go to its runs; a run: into its detail (1-9 pick the detail's tab)"),
    ("Tab  Shift+Tab", "next / previous pane: Projects → Runs → the run's detail; the focused pane has the heavy "
                       "border in the accent colour, and the footer shows its keys"),
    ("1-9", "the run detail's tabs in order (Stages … Models); on a tab about the run, R d m act on it"),
    ("ctrl+p", "command palette: every action, searchable"),
    ("Esc", "close this screen; clear the filter; from a run's detail back to the runs"),
    ("y  n", "in a confirmation: yes, no (Esc too); Tab reaches the promotion's reason, where Enter is yes"),
)
LEGEND = (
    ("✓ ↺ ✗", "succeeded · reused from an earlier run · failed (a stage, or a gate: no version)"),
    ("● ⊘ ⇢ !", "running · cancelled · superseded by a newer run · interrupted"),
    ("◉ ○", "project watched (a change reruns what it affects) · not watched"),
    ("◆", "the run marked as the diff base"),
    ("•", "a run picked for compare (Space; C compares the picked runs)"),
)
KEY_NAMES = {"question_mark": "?", "slash": "/", "escape": "Esc", "enter": "Enter", "space": "Space",
             "tab": "Tab", "pageup": "PgUp", "pagedown": "PgDn"}


def key_display(keys: str) -> str:
    """`question_mark,f1` -> `? F1`."""
    shown = []
    for key in keys.split(","):
        key = key.strip()
        name = KEY_NAMES.get(key)
        if name is None:
            name = key.upper() if len(key) > 1 and key[0] == "f" and key[1:].isdigit() else key
        shown.append(name)
    return " ".join(shown)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 96; max-width: 96%; height: auto; max-height: 90%;
        border: round $primary; background: $panel; padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close", id="help_close")]

    def __init__(self, keymap: dict[str, str]) -> None:
        super().__init__()
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "Keys"
            scroll.border_subtitle = r"remap by id: ~/.config/workbench/config.toml \[keys] · Esc closes"
            yield Static(self._actions(), id="help-table")
            yield Static(self._navigation(), id="help-navigation")

    def _actions(self) -> Table:
        table = Table(box=None, expand=True, pad_edge=False, header_style="bold")
        table.add_column("key", no_wrap=True, style="bold")
        table.add_column("id", no_wrap=True, style="dim")
        table.add_column("what it does", ratio=1)
        for action in ACTIONS:
            table.add_row(key_display(self.keymap.get(action.id, action.key)), action.id, action.description)
        return table

    def _navigation(self) -> Table:
        table = Table(box=None, expand=True, pad_edge=False, show_header=False)
        table.add_column(no_wrap=True, style="bold")
        table.add_column(ratio=1)
        table.add_row("", "")
        for keys, what in NAVIGATION:
            table.add_row(keys, what)
        table.add_row("", "")
        for glyphs, what in LEGEND:
            table.add_row(glyphs, Text(what, style="dim"))
        return table

    def action_close(self) -> None:
        self.dismiss(None)

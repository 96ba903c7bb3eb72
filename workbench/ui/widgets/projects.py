"""The projects pane: every project of the workspace, two lines each.

    ✓ ◉ telco-churn
        prod v3 · stg v4

Line one: the last run's status (● while one runs), the watch state (◉ watched, ○ not) and
the name; line two: the model versions holding production and staging ("—" until the
registry has them); a third line when watching hit a problem (! ...) or a drift check of one
of its batches is under way (⟳ checking <batch>: 23/50 columns).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.style import Style
from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from workbench.ui import format as fmt
from workbench.ui.actions import view_bindings

PROGRESS_NOTE = "checking "
"""How a project's note starts while a drift check of one of its batches runs (BatchProgress.line)."""


@dataclass(frozen=True)
class ProjectRow:
    name: str
    path: str
    error: str | None = None
    """Why the manifest is unusable (the project cannot run until it is fixed)."""
    problem: str = "manifest invalid"
    """The error in a few words, for the list's second line."""
    primary_metric: str | None = None
    maximize: bool = True
    watching: bool = False
    busy: bool = False
    """A run is in flight or queued."""
    last_status: str | None = None
    production: int | None = None
    staging: int | None = None
    note: str = ""
    """The latest watch problem (folder gone, manifest invalid), until the next good event."""
    folder: str = ""
    """The folder relative to the workspace (`wages-dup/`), shown when two folders give one name."""


class ProjectsList(OptionList):
    BINDINGS = view_bindings("projects")  # shown in the footer while the pane has the focus
    DEFAULT_CSS = """
    ProjectsList { background: $surface; }
    ProjectsList > .option-list--option { padding: 0 0; }
    """
    COMPONENT_CLASSES = OptionList.COMPONENT_CLASSES | {f"projects--{t}" for t in fmt.TONES}
    DEFAULT_CSS += "".join(f"ProjectsList > .projects--{t} {{ color: {c}; }}\n" for t, c in (
        ("good", "$success"), ("info", "$secondary"), ("bad", "$error"), ("warn", "$warning"),
        ("live", "$accent"), ("muted", "$text-muted")))

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: dict[str, ProjectRow] = {}
        self._early: dict[str, dict] = {}
        """Changes events made to projects not listed yet (the first listing is read on a worker
        thread, and the watch service may speak first): applied when they are listed."""

    @property
    def selected(self) -> ProjectRow | None:
        if self.highlighted is None or self.option_count == 0:
            return None
        option_id = self.get_option_at_index(self.highlighted).id
        return self.rows.get(option_id) if option_id else None

    def set_rows(self, rows: list[ProjectRow]) -> None:
        """Replace the list, keeping the highlighted project if it is still there."""
        previous = self.selected
        self.rows = self.keyed(rows)
        for key in [key for key in self._early if key in self.rows]:
            self.rows[key] = replace(self.rows[key], **self._early.pop(key))
        self.clear_options()
        self.add_options([Option(self._prompt(row), id=key) for key, row in self.rows.items()])
        if self.rows:
            # The same folder if it is still there (a clash's two rows share a name), else the name.
            same = [i for i, row in enumerate(self.rows.values()) if previous and row.path == previous.path]
            named = [i for i, row in enumerate(self.rows.values()) if previous and row.name == previous.name]
            self.highlighted = (same or named or [0])[0]

    @staticmethod
    def keyed(rows: list[ProjectRow]) -> dict[str, ProjectRow]:
        """The rows by option id: the name, but two folders giving one project.name (both marked
        with the clash) must not make two options with one id: the second is known by its folder too."""
        keyed: dict[str, ProjectRow] = {}
        for row in rows:
            keyed[row.name if row.name not in keyed else f"{row.name} ({row.path})"] = row
        return keyed

    def update_row(self, name: str, **changes) -> None:
        row = self.rows.get(name)
        if row is None:  # the watch service's word on it (a run's state comes with the listing)
            early = {field: value for field, value in changes.items() if field in ("note", "watching")}
            if early:
                self._early.setdefault(name, {}).update(early)
            return
        row = self.rows[name] = replace(row, **changes)
        self.replace_option_prompt(name, self._prompt(row))

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._redraw)

    def _redraw(self, _theme=None) -> None:
        """Prompts carry colours from the theme: draw them again in a new one."""
        for key, row in self.rows.items():
            self.replace_option_prompt(key, self._prompt(row))

    def _tone(self, tone: str):
        # Partial styles (no background, so the highlight shows through); "muted" is dim text
        # rather than $text-muted, which is translucent and needs a background to blend with.
        if tone == "muted":
            return Style(dim=True)
        return self.get_component_rich_style(f"projects--{tone}", partial=True)

    def _prompt(self, row: ProjectRow) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if row.error:
            text.append("✗   ", self._tone("bad"))
            text.append(row.name, "bold")
            if row.folder:  # on a line of its own: the pane is narrow, and the name comes first
                text.append(f"\n    {row.folder}", self._tone("muted"))
            text.append(f"\n    {row.problem}", self._tone("bad"))
            return text
        status = "running" if row.busy else row.last_status
        text.append(f"{fmt.GLYPHS.get(status, '·') if status else '·'} ", self._tone(fmt.tone(status or "pending")))
        text.append("◉ " if row.watching else "○ ", self._tone("live" if row.watching else "muted"))
        text.append(row.name, "bold")
        text.append(f"\n    prod {_version(row.production)} · stg {_version(row.staging)}", self._tone("muted"))
        if row.note.startswith(PROGRESS_NOTE):  # work under way, not a problem: no warning mark
            text.append(f"\n    ⟳ {row.note}", self._tone("live"))
        elif row.note:
            text.append(f"\n    ! {row.note}", self._tone("warn"))
        return text


def _version(number: int | None) -> str:
    return f"v{number}" if number is not None else "—"

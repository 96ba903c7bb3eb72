"""The Models tab: the selected project's model versions, newest first.

    MLflow in sync · production v1 · staging v2   s staging · p prod · b rollback · B rollback stg
    VERSION  STATUS          RUN   SCORE   GATES  CREATED
         v2  ▲ staging        4    0.6     ✓1     03-14 09:26
         v1  ★ production     1    0.75    ✓1     03-14 09:20

The cursor picks the version the promotion keys act on. Colours come from the theme.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from workbench.core.registry import ModelVersion
from workbench.ui import format as fmt
from workbench.ui.actions import BY_ID
from workbench.ui.screens.help import key_display
from workbench.ui.widgets.row_table import RowTable
from workbench.ui.widgets.run_views import Palette

STATUS = {
    "production": ("★", "good"),
    "staging": ("▲", "info"),
    "archived": ("▽", "muted"),
    "registered": ("·", "muted"),
}
"""A version's status: its glyph and tone (a theme colour through Palette)."""


def status_text(version: ModelVersion, palette: Palette) -> Text:
    """`★ production`, or `★ production ▲ staging` when it holds both aliases."""
    held = [alias for alias in ("production", "staging") if alias in version.aliases] or [version.status]
    text = Text(no_wrap=True)
    for i, status in enumerate(held):
        glyph, tone = STATUS.get(status, ("?", "muted"))
        text.append(("  " if i else "") + f"{glyph} {status}", palette.tone(tone))
    return text


def gate_counts(version: ModelVersion) -> str:
    passed = sum(1 for g in version.gates if g.passed is True)
    failed = sum(1 for g in version.gates if g.passed is False)
    return fmt.gates(passed, failed)


class ModelsView(Vertical):
    DEFAULT_CSS = """
    ModelsView { height: 1fr; }
    ModelsView #models-heading { height: 1; padding: 0 1; color: $foreground; }
    ModelsView DataTable { height: 1fr; background: $surface; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project: str | None = None
        self.versions: list[ModelVersion] = []
        self.mirror = "MLflow …"
        self.metric = "metric"

    def compose(self) -> ComposeResult:
        yield Static(id="models-heading", markup=False)
        yield RowTable(id="models-table", cursor_type="row")

    @property
    def table(self) -> DataTable:
        return self.query_one("#models-table", DataTable)

    def on_mount(self) -> None:
        self._columns()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._draw())

    def _columns(self) -> None:
        self.table.add_columns("version", "status", "run", self.metric, "gates", "created")

    @property
    def current(self) -> ModelVersion | None:
        """The version under the cursor."""
        row = self.table.cursor_row
        return self.versions[row] if self.versions and 0 <= row < len(self.versions) else None

    def show(self, project: str | None, versions: list[ModelVersion], metric: str | None = None) -> None:
        """Show `versions` (newest first). A cursor on the newest version follows the newest, so
        the version a run just registered is the one the promotion keys offer; a cursor moved
        down to an older version stays on it."""
        following = self.table.cursor_row <= 0
        keep = self.current.version if self.current and project == self.project and not following else None
        self.project, self.versions = project, versions
        if metric and metric != self.metric:
            self.metric = metric
            self.table.clear(columns=True)
            self._columns()
        self._draw()
        numbers = [v.version for v in versions]
        if keep in numbers:
            self.table.move_cursor(row=numbers.index(keep))

    def show_mirror(self, summary: str) -> None:
        self.mirror = summary
        self._heading()

    def _draw(self) -> None:
        palette = Palette.of(self.app)
        table = self.table
        table.clear()
        for v in self.versions:
            table.add_row(Text(f"v{v.version}", justify="right"), status_text(v, palette),
                          Text(str(v.run_id), justify="right"), Text(fmt.metric(v.primary_value), justify="right"),
                          gate_counts(v), fmt.when(v.created_at), key=str(v.version))
        self._heading()

    def _heading(self) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(self.mirror, "bold")
        holders = {alias: v.version for v in self.versions for alias in v.aliases}
        for alias in ("production", "staging"):
            text.append(f" · {alias} {'v' + str(holders[alias]) if alias in holders else '—'}")
        if self.project is not None and not self.versions:
            text.append(" · no versions yet: a successful full run registers one")
        keys = getattr(self.app, "keymap", {})
        hint = " · ".join(f"{key_display(keys.get(a, BY_ID[a].key))} {label}" for a, label in (
            ("promote_staging", "staging"), ("promote_production", "prod"), ("rollback", "rollback"),
            ("rollback_staging", "rollback stg")))
        text.append(f"   {hint}", "dim")
        self.query_one("#models-heading", Static).update(text)

"""The Models tab: the selected project's model versions, newest first.

    MLflow in sync · production v1 · staging v2
    deploy: production → 1-20260314T092001-1a2b3c4d (v1) · staging → 2-20260314T092602-5e6f7a8b (v2)
    VERSION  STATUS          RUN   SCORE   GATES  MODEL         CREATED
         v2  ▲ staging        4    0.6     ✓1     9f86d081884c  03-14 09:26
         v1  ★ production     1    0.75    ✓1     60303ae22b99  03-14 09:20

MODEL is the model file's sha256 (short); the deploy line is what each alias's pointer resolves
to (the release folder a serving process reads, and the version its metadata.json names), in
the error colour when it is not the version the registry says holds the alias. The cursor picks
the version the promotion keys (s p b B, shown in the footer while the tab has the focus) act
on. Colours come from the theme.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from workbench.core.registry import ModelVersion
from workbench.ui import format as fmt
from workbench.ui.actions import view_bindings
from workbench.ui.widgets.row_table import RowTable, fill_table
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
    ModelsView #models-heading { height: auto; max-height: 3; padding: 0 1; color: $foreground; }
    ModelsView DataTable { height: 1fr; background: $surface; }
    """
    BINDINGS = view_bindings("models")  # s p b B, shown in the footer while the tab has the focus

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project: str | None = None
        self.versions: list[ModelVersion] = []
        self.mirror = "MLflow …"
        self.metric = "metric"
        self.pointers: dict[str, dict | None] = {}
        """Alias -> the deploy pointer's metadata (with its release `path`), None: points nowhere."""

    def compose(self) -> ComposeResult:
        yield Static(id="models-heading", markup=False)
        yield RowTable(id="models-table", cursor_type="row")

    @property
    def table(self) -> DataTable:
        return self.query_one("#models-table", DataTable)

    def on_mount(self) -> None:
        self._draw()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._draw())

    @property
    def current(self) -> ModelVersion | None:
        """The version under the cursor."""
        row = self.table.cursor_row
        return self.versions[row] if self.versions and 0 <= row < len(self.versions) else None

    def show(self, project: str | None, versions: list[ModelVersion], metric: str | None = None,
             pointers: dict[str, dict | None] | None = None) -> None:
        """Show `versions` (newest first). A cursor on the newest version follows the newest, so
        the version a run just registered is the one the promotion keys offer; a cursor moved
        down to an older version stays on it."""
        following = self.table.cursor_row <= 0
        keep = self.current.version if self.current and project == self.project and not following else None
        self.project, self.versions = project, versions
        self.pointers = dict(pointers or {})
        if metric:
            self.metric = metric
        self._draw()
        numbers = [v.version for v in versions]
        if keep in numbers:
            self.table.move_cursor(row=numbers.index(keep))

    def show_mirror(self, summary: str) -> None:
        self.mirror = summary
        self._heading()

    def _draw(self) -> None:
        palette = Palette.of(self.app)
        # Explicit widths (fill_table): auto-width columns are sized on the table's next idle, and
        # a table refilled while the screen drew kept its cells cut at the header's width, the
        # model hash as `eb5f1` (a CI-only timeout of the models tab's test, on a busy machine).
        fill_table(self.table, ("version", "status", "run", self.metric, "gates", "model", "created"),
                   [(str(v.version), (Text(f"v{v.version}", justify="right"), status_text(v, palette),
                                      Text(str(v.run_id), justify="right"),
                                      Text(fmt.metric(v.primary_value), justify="right"), gate_counts(v),
                                      Text(fmt.short_hash(v.sha256), palette.muted), fmt.when(v.created_at)))
                    for v in self.versions])
        self._heading()

    def _heading(self) -> None:
        palette = Palette.of(self.app)
        text = Text()  # wraps: at 80 columns the second pointer takes a third line
        text.append(self.mirror, "bold")
        holders = {alias: v.version for v in self.versions for alias in v.aliases}
        for alias in ("production", "staging"):
            text.append(f" · {alias} {'v' + str(holders[alias]) if alias in holders else '—'}")
        if self.project is not None and not self.versions:
            text.append(" · no versions yet: a successful full run registers one")
        text.append("\ndeploy:", palette.muted)
        for i, alias in enumerate(("production", "staging")):
            text.append(" ·" if i else "")
            text.append(f" {alias} → ")
            text.append_text(pointer_text(self.pointers.get(alias), holders.get(alias), palette))
        self.query_one("#models-heading", Static).update(text)


def pointer_text(meta: dict | None, holder: int | None, palette: Palette) -> Text:
    """`1-20260314T092001-1a2b3c4d (v1)`: the release folder an alias's pointer resolves to."""
    if meta is None:
        return Text("nothing" if holder is None else f"nothing (registry: v{holder})",
                    palette.muted if holder is None else palette.bad)
    folder = str(meta.get("path", "")).rstrip("/").rsplit("/", 1)[-1] or "?"
    version = meta.get("version")
    text = Text(f"{folder} (v{version})")
    if version != holder:
        text.stylize(palette.bad)
        text.append(f" registry: {'v' + str(holder) if holder is not None else 'none'}", palette.bad)
    return text

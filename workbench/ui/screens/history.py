"""`H`: the selected project's audit trail, as `workbench history PROJECT --verify` shows it:
whether the trail verifies (chain, anchor, aliases, seals), then every promotion, rollback and
refusal, newest first, each row marked ✓ or ✗ by the verification.

    ✓ audit trail intact · 4 rows of telco-churn, chain of 4 · 2 versions' seals checked
    #   WHEN         WHO    ACTION    ALIAS       MOVE      REASON / DECISION
    ✓4  12-01 10:02  alice  rollback  production  v2 → v1   latency regression
    ✗3  12-01 09:58  bob    promote   production  v1 → v2   its fields do not match its MAC …
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from workbench.core.audit import IntegrityReport
from workbench.core.errors import WorkbenchError
from workbench.core.registry import AuditEntry
from workbench.ui import format as fmt
from workbench.ui.widgets.row_table import RowTable, fill_table
from workbench.ui.widgets.run_views import Palette

HISTORY_COLUMNS = ("#", "when", "who", "action", "alias", "move", "reason / decision")
HISTORY_ROWS = 500


@dataclass(frozen=True)
class AuditHistory:
    project: str
    entries: list[AuditEntry]
    report: IntegrityReport


def read_history(session, project: str, limit: int = HISTORY_ROWS) -> AuditHistory:
    """The project's audit rows (newest first) and the verification of the whole trail."""
    registry = session.registry
    name = session.project(project).name
    return AuditHistory(name, registry.history(name, limit=limit), registry.verify(name))


def _holder(version: int | None) -> str:
    return f"v{version}" if version is not None else "—"


def row_problems(report: IntegrityReport) -> dict[str, list[str]]:
    """Audit row (`#12`) -> what the verification found wrong with it."""
    found: dict[str, list[str]] = {}
    for problem in report.problems:
        if problem.table == "audit" and problem.row.startswith("#"):
            found.setdefault(problem.row, []).append(problem.detail)
    return found


def verdict_text(history: AuditHistory, palette: Palette) -> Text:
    report = history.report
    text = Text(no_wrap=False)
    counted = (f"{report.project_rows} rows of {history.project}, chain of {report.rows} · "
               f"{report.versions} versions' seals and every alias checked")
    if report.intact:
        text.append("✓ audit trail intact", palette.good)
        text.append(f" · {counted}")
    else:
        text.append(f"✗ audit trail altered: {len(report.problems)} problem(s)", palette.bad)
        text.append(f" · {counted} · promotions are refused until it is resolved")
        for problem in report.problems:
            if not (problem.table == "audit" and problem.row.startswith("#")):
                text.append(f"\n  ✗ {problem}", palette.bad)
    for line in report.repaired:
        text.append(f"\n! {line}", palette.warn)
    if not history.entries:
        text.append(f"\nno promotions, rollbacks or refusals recorded for {history.project} yet", palette.muted)
    return text


class HistoryScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HistoryScreen { align: center middle; }
    HistoryScreen > Vertical { width: 100%; height: 1fr; border: round $primary; background: $surface; }
    HistoryScreen #history-verdict { height: auto; max-height: 6; padding: 0 1; color: $foreground; }
    HistoryScreen DataTable { height: 1fr; background: $surface; }
    HistoryScreen #history-row { height: auto; max-height: 5; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [Binding("escape,q,H", "close", "Close", id="history_close")]

    class Loaded(Message):
        def __init__(self, history: AuditHistory) -> None:
            super().__init__()
            self.history = history

    class Failed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, session, project: str) -> None:
        super().__init__()
        self.session, self.project = session, project
        self.history: AuditHistory | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="history-frame") as frame:
            frame.border_title = f"Audit history · {self.project}"
            frame.border_subtitle = "↑↓ row · Esc closes"
            yield Static("reading the audit trail…", id="history-verdict")
            yield RowTable(id="history-table", cursor_type="row")
            yield Static(id="history-row")
        yield Footer(compact=True, show_command_palette=False)

    @property
    def table(self) -> DataTable:
        return self.query_one("#history-table", DataTable)

    def on_mount(self) -> None:
        self.table.focus()
        self.reload()

    @work(thread=True, exclusive=True, group="history-read", exit_on_error=False)
    def reload(self) -> None:
        try:
            self.post_message(self.Loaded(read_history(self.session, self.project)))
        except WorkbenchError as exc:
            self.post_message(self.Failed(str(exc)))
        except Exception as exc:  # a bug must say so, not leave "reading…" up forever
            self.post_message(self.Failed(f"internal error reading the audit trail: {exc!r}"))
            raise

    def on_history_screen_loaded(self, message: Loaded) -> None:
        self.history = history = message.history
        palette = Palette.of(self.app)
        self.query_one("#history-verdict", Static).update(verdict_text(history, palette))
        bad = row_problems(history.report)
        tone = {"promote": palette.good, "rollback": palette.warn, "refuse": palette.bad}
        rows = []
        for e in history.entries:
            mark = Text("✗", palette.bad) if f"#{e.id}" in bad else Text("✓", palette.good)
            move = (f"{_holder(e.from_version)} → {_holder(e.to_version)}" if e.action != "refuse"
                    else f"stays {_holder(e.from_version)}")
            said = e.reason or (e.message if e.action == "refuse" else "")
            rows.append((str(e.id), (mark + Text(str(e.id)), fmt.when(e.at), e.actor,
                                     Text(e.action, tone.get(e.action, "")), e.alias, move, said)))
        # Columns sized from their cells: added once at mount and filled later, they kept the
        # width of their titles ("12-0", "roo", "promot"), and the move lost its version.
        # The reason gives way first on a narrow terminal, then who did it.
        fill_table(self.table, HISTORY_COLUMNS, rows, room=self.table.size.width or None,
                   squeeze=((6, 12), (2, 6)))
        self._describe_row()

    def on_history_screen_failed(self, message: Failed) -> None:
        self.query_one("#history-verdict", Static).update(Text(f"✗ {message.error}", Palette.of(self.app).bad))

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._describe_row()

    def _describe_row(self) -> None:
        """The highlighted row's whole decision, and what the verification found wrong with it."""
        history, row = self.history, self.table.cursor_row
        if history is None or not (0 <= row < len(history.entries)):
            self.query_one("#history-row", Static).update("")
            return
        entry = history.entries[row]
        text = Text(f"#{entry.id} {entry.at.astimezone():%Y-%m-%d %H:%M:%S} {entry.actor}@{entry.host}: "
                    f"{entry.message}")
        for detail in row_problems(history.report).get(f"#{entry.id}", []):
            text.append(f"\n✗ {detail}", Palette.of(self.app).bad)
        self.query_one("#history-row", Static).update(text)

    def action_close(self) -> None:
        self.dismiss(None)

"""The run detail: tabs for the stages (with live progress), the log, metrics, gates, the
evaluation and explanations the workbench computed, the validation report and the lineage of
the run the runs table points at, and the project's models. Keys 1-9 open the tabs in order
(actions `tab_<id>` in workbench/ui/actions.py); the heading keeps the run's reproducibility
verdict (its newest cold rerun, read from the store)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Label, ProgressBar, Static, TabbedContent, TabPane

from workbench.core.model import RunRecord
from workbench.services.inspect import ValidationReport
from workbench.ui import format as fmt
from workbench.ui.actions import DETAIL_TABS, view_bindings
from workbench.ui.live import LiveRun
from workbench.ui.widgets.evaluation import EvaluationView
from workbench.ui.widgets.explanations import ExplanationsView
from workbench.ui.widgets.log_view import LogView
from workbench.ui.widgets.models import ModelsView
from workbench.ui.widgets.row_table import RowTable, fill_table
from workbench.ui.widgets.run_views import Palette, lineage_view, validation_view

TABS = tuple(tab for tab, _what in DETAIL_TABS)
STAGE_COLUMNS = ("stage", "status", "time", "detail")
METRIC_COLUMNS = ("metric", "value", "stage")
GATE_COLUMNS = ("gate", "result", "detail")
TAB_LABELS = {"evaluation": "Eval", "explanations": "Explain"}
"""Shorter tab labels where the full name would push the tab bar past 80 columns."""


class StageProgress(Horizontal):
    """`train · boosting rounds  ━━━━━━━━━╺━━━━━  40%` while a stage reports progress, an
    indeterminate bar while an image builds, hidden otherwise."""

    DEFAULT_CSS = """
    StageProgress { height: 1; display: none; padding: 0 1; }
    StageProgress.-active { display: block; }
    StageProgress > Label { width: auto; max-width: 50%; color: $accent; margin-right: 1; }
    StageProgress > ProgressBar { width: 1fr; }
    StageProgress Bar { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Label()
        yield ProgressBar(total=None, show_eta=False)

    def show(self, live: LiveRun | None) -> None:
        label, bar = self.query_one(Label), self.query_one(ProgressBar)
        if live is None or live.finished or not (live.progress or live.building or live.current_stage):
            self.remove_class("-active")
            return
        self.add_class("-active")
        if live.progress:
            stage, done, total, what = live.progress
            label.update(f"{stage} · {what} {done}/{total}")
            bar.update(total=max(total, 1), progress=done)
        else:
            label.update("building the image…" if live.building else f"{' + '.join(live.running_stages)} running…")
            bar.update(total=None)


class RunTabPane(TabPane):
    """A tab about the shown run: while it holds the focus the footer shows the run's keys
    (R d m) beside 1-9; the Models tab is a plain TabPane, its footer holds s p b B."""

    BINDINGS = view_bindings("detail")


class RunDetail(Vertical):
    DEFAULT_CSS = """
    RunDetail TabbedContent { height: 1fr; }
    RunDetail ContentSwitcher { height: 1fr; }
    RunDetail TabPane { height: 1fr; }
    RunDetail #run-heading { height: auto; max-height: 3; padding: 0 1; color: $foreground; }
    RunDetail DataTable { background: $surface; height: 1fr; }
    RunDetail VerticalScroll { background: $surface; padding: 0 1; }
    RunDetail TabPane { padding: 0; }
    """
    BINDINGS = [Binding("1", "screen.tab_stages", "Tabs", key_display="1-9", id="tab_stages",
                        tooltip="Keys 1 to 9 open the detail's tabs in order")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.record: RunRecord | None = None
        self.run_id: int | None = None
        self._report: ValidationReport | None = None
        self.insights = None
        """The run's evaluation, explanations and reproducibility verdict (loaders.RunInsights)."""

    def compose(self) -> ComposeResult:
        label = lambda tab, what: f"{TAB_LABELS.get(tab, what)}"  # noqa: E731
        what = dict(DETAIL_TABS)
        with TabbedContent(initial="stages"):
            with RunTabPane(label("stages", what["stages"]), id="stages"):
                yield Static(id="run-heading")
                yield StageProgress(id="progress")
                yield RowTable(id="stages-table", cursor_type="row", zebra_stripes=False)
            with RunTabPane(label("log", what["log"]), id="log"):
                yield LogView(id="log-view")
            with RunTabPane(label("metrics", what["metrics"]), id="metrics"):
                yield RowTable(id="metrics-table", cursor_type="row")
            with RunTabPane(label("gates", what["gates"]), id="gates"):
                yield RowTable(id="gates-table", cursor_type="row")
            with RunTabPane(label("evaluation", what["evaluation"]), id="evaluation"):
                yield EvaluationView(id="evaluation-view")
            with RunTabPane(label("explanations", what["explanations"]), id="explanations"):
                yield ExplanationsView(id="explanations-view")
            with RunTabPane(label("validation", what["validation"]), id="validation"):
                with VerticalScroll():
                    yield Static(id="validation-view")
            with RunTabPane(label("lineage", what["lineage"]), id="lineage"):
                with VerticalScroll():
                    yield Static(id="lineage-view")
            with TabPane(label("models", what["models"]), id="models"):  # the project's: clear() leaves it
                yield ModelsView(id="models-view")

    def on_mount(self) -> None:
        # Explicit widths, set as each table is filled (row_table.fill_table): auto-width columns
        # are sized on the next idle, and cells drawn before it stayed cut at the header's width.
        for table, labels in (("#stages-table", STAGE_COLUMNS), ("#metrics-table", METRIC_COLUMNS),
                              ("#gates-table", GATE_COLUMNS)):
            fill_table(self.query_one(table, DataTable), labels, [])
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._redraw_documents())

    @property
    def log(self) -> LogView:
        return self.query_one(LogView)

    # -- what the screen calls ---------------------------------------------------------------

    def clear(self, message: str = "") -> None:
        self.record = self._report = self.insights = None
        self.run_id = None
        self.query_one("#run-heading", Static).update(message)
        for table in self.query(DataTable):
            if table.id != "models-table":
                table.clear()
        self.query_one(StageProgress).show(None)
        self.log.show(None, [])
        self.query_one("#validation-view", Static).update("")
        self.query_one("#lineage-view", Static).update("")
        self.query_one(EvaluationView).show(None)
        self.query_one(ExplanationsView).show(None)

    def show_record(self, record: RunRecord, report: ValidationReport | None, live: LiveRun | None,
                    insights=None) -> None:
        """A run as recorded; `live` (its events, when this app saw them) while it runs;
        `insights` (loaders.RunInsights): its evaluation, explanations and reproducibility."""
        same_run = self.run_id == record.id
        self.record, self._report, self.insights = record, report, insights
        self.run_id = record.id
        self._heading(record)
        if live is not None and not live.finished:
            self.show_live(live)
        else:
            self._stages(record)
            self.query_one(StageProgress).show(None)
        fill_table(self.query_one("#metrics-table", DataTable), METRIC_COLUMNS,
                   [(f"{stage.stage}/{name}", (name, Text(fmt.metric(value), justify="right"), stage.stage))
                    for stage in record.stages for name, value in sorted(stage.metrics.items())])
        palette = Palette.of(self.app)
        results = {True: ("✓ pass", palette.good), False: ("✗ fail", palette.bad)}
        fill_table(self.query_one("#gates-table", DataTable), GATE_COLUMNS,
                   [(str(i), (gate.rule, Text(*results.get(gate.passed, ("– not evaluated", palette.muted))),
                              gate.detail)) for i, gate in enumerate(record.gates)])
        if not same_run or live is None:
            self._log(record, live)
        self._redraw_documents()
        self._insights(insights)

    def focus_content(self) -> None:
        """Focus what the open tab shows (Enter on a run brings the focus here)."""
        self.show_tab(self.query_one(TabbedContent).active or "stages")

    def show_tab(self, tab: str) -> None:
        """Open a tab and focus what is in it, so the footer shows that view's keys."""
        tabs = self.query_one(TabbedContent)
        tabs.active = tab
        pane = tabs.get_pane(tab)
        target = next((w for w in pane.query("*") if w.focusable and w.display), None)
        if tab == "models":
            target = self.query_one(ModelsView).table
        if target is not None:
            target.focus()

    def _insights(self, insights) -> None:
        evaluation, explanations = self.query_one(EvaluationView), self.query_one(ExplanationsView)
        if insights is None:
            evaluation.show(None)
            explanations.show(None)
            return
        evaluation.show(insights.evaluations, insights.evaluation_problem)
        notes = "; ".join(f"{stage}: {note}" for stage, note in insights.explanation_notes.items())
        explanations.show(insights.explanations, insights.explanation_problem, notes)

    def show_live(self, live: LiveRun) -> None:
        """Stages of a run in flight, from its events."""
        palette = Palette.of(self.app)
        rows = []
        for state in live.stages.values():
            if state.status == "running" and state.started is not None:
                elapsed = fmt.duration(time.monotonic() - state.started)
            elif state.status == "reused":
                elapsed = "—"
            else:
                elapsed = fmt.duration(state.duration_s) if state.duration_s is not None else ""
            detail = state.detail
            if state.status == "running" and live.progress and live.progress[0] == state.name:
                detail = f"{live.progress[3]} {live.progress[1]}/{live.progress[2]}"
            rows.append((state.name, (state.name, Text(fmt.status_text(state.status),
                                                       palette.tone(fmt.tone(state.status))), elapsed, detail)))
        fill_table(self.query_one("#stages-table", DataTable), STAGE_COLUMNS, rows)
        self.query_one(StageProgress).show(live)

    def tick(self) -> None:
        """Once a second while the shown run is in flight: its elapsed time."""
        if self.record is not None and str(self.record.status) == "running":
            self._heading(self.record)

    def append_log(self, run_id: int, lines: list[tuple[str, str]]) -> None:
        if run_id == self.run_id and self.log.run_id == run_id:
            self.log.append(lines)

    # -- drawing ------------------------------------------------------------------------------

    def _heading(self, record: RunRecord) -> None:
        palette = Palette.of(self.app)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"run {record.id}", "bold")
        elapsed = record.duration_s
        if elapsed is None and str(record.status) == "running":
            elapsed = (datetime.now(timezone.utc) - record.started_at).total_seconds()
        text.append(f" · {record.project} · {record.trigger} · {record.runner} · {fmt.when(record.started_at)}"
                    f" · {fmt.duration(elapsed)} · ")
        text.append(fmt.status_text(record.status), palette.tone(fmt.tone(record.status)))
        if record.reason:
            text.append(f"\n{record.reason}", palette.bad if record.status != "succeeded" else palette.warn)
        if record.changed_paths:  # what started it, beside how it ended (a cancelled watch run has both)
            text.append(" · " if record.reason else "\n")
            text.append(f"changed: {', '.join(record.changed_paths[:6])}", palette.muted)
        for warning in record.warnings:  # the lineage profile's: the run went on regardless
            text.append(f"\n! {warning}", palette.warn)
        verdict = self.insights.reproduction if self.insights is not None else None
        if verdict is not None:
            glyph, tone = {True: ("✓", palette.good), False: ("✗", palette.bad)}.get(verdict.matched, ("!", palette.warn))
            text.append(f"\n{glyph} {verdict.summary}", tone)
        self.query_one("#run-heading", Static).update(text)

    def _stages(self, record: RunRecord) -> None:
        palette = Palette.of(self.app)
        rows = []
        for stage in record.stages:
            detail = stage.detail
            rows.append((stage.stage, (stage.stage, Text(fmt.status_text(stage.status),
                                                         palette.tone(fmt.tone(stage.status))),
                                       fmt.duration(stage.duration_s) if str(stage.status) != "reused" else "—",
                                       detail)))
        fill_table(self.query_one("#stages-table", DataTable), STAGE_COLUMNS, rows)

    def _log(self, record: RunRecord, live: LiveRun | None) -> None:
        if live is not None:
            self.log.show(record.id, list(live.log))
            return
        lines = [(stage.stage, line) for stage in record.stages for line in stage.log_tail]
        note = "(the last lines each stage printed; a live run streams here)" if lines else \
            ("(no log: the run is in another process)" if str(record.status) == "running" else "(no log lines)")
        self.log.show(record.id, lines, note)

    def _redraw_documents(self) -> None:
        if self.record is None:
            return
        palette = Palette.of(self.app)
        self.query_one("#validation-view", Static).update(
            validation_view(self._report, list(self.record.datasets), palette))
        self.query_one("#lineage-view", Static).update(lineage_view(self.record, palette))

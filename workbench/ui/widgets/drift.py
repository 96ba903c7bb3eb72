"""A project's drift checks: its latest batches (drifted share, decay, the retrain each caused)
and, for the batch under the cursor, every column's score as a small bar, drifted columns in
the theme's error colour, with the report's findings.

    #  batch            checked      rows   drift              decay         retrain
    2  batch-002.csv    11-22 09:15  1,000  ███▏    6/19 32%   auc −0.006    run 5 ✓ → v2 registered
    1  batch-001.csv    11-22 09:01  1,000  ▏       0/19  0%   auc +0.046    no drift and no decay

    column           test         statistic  PSI    importance  score
    monthly_charges  Wasserstein  0.578 sd   1.265          9%  ██████████  drifted
    contract         JS           0.276      0.498         41%  ██████████  drifted
    tenure           Wasserstein  0.369 sd   0.171         13%  ██████████  drifted
    female           JS           0.00135    0.000         <1%  ▏

The importance column (each column's share of the production model's feature importance)
shows when the report was weighed by it; the verdict's line says which rule decided and why.

A bar is half full at the column's threshold and full at twice it (workbench.core.drift).
"""

from __future__ import annotations

import textwrap

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from workbench.ui import format as fmt
from workbench.ui.widgets.row_table import fill_table
from workbench.ui.widgets.run_views import Palette

from workbench.core.drift_report import BREAKS_CONTRACT, DRIFTED, NOT_CHECKED, WARNING  # dataclasses only: cheap
from workbench.core.drift_verdict import percent  # pure words: cheap

if TYPE_CHECKING:  # the drift module brings in scipy (a second of start-up): not at import
    from workbench.core.drift_report import CheckedBatch, ColumnDrift

BLOCKS = " ▏▎▍▌▋▊▉█"
VERDICT_LINES = 2
"""A batch's verdict shows on at most this many lines (the findings below hold the rest)."""
BATCH_COLUMNS = ("#", "batch", "checked", "rows", "drift", "decay", "retrain")
COLUMN_COLUMNS = ("column", "test", "statistic", "PSI", "score", "")
WEIGHED_COLUMNS = ("column", "test", "statistic", "PSI", "importance", "score", "")
"""A report weighed by the model's feature importance shows each column's share of it."""
REASON_WIDTH = 40
"""Why a batch did not retrain, cut to this many characters in the table (the full reason is
under the batch's columns)."""
TEST_NAMES = {"ks": "KS", "wasserstein": "Wasserstein", "chi2": "chi²", "jensen_shannon": "JS", "missing": "missing",
              "type_change": "type", "all_null": "all null", "not_compared": "skipped"}


def score_bar(score: float, width: int = 10) -> str:
    """0..1 as a bar of `width` cells, in eighths."""
    eighths = round(max(0.0, min(1.0, score)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(width)


def verdict_tone(verdict: str, palette: Palette) -> str:
    return {DRIFTED: palette.bad, WARNING: palette.warn, NOT_CHECKED: palette.bad,
            BREAKS_CONTRACT: palette.bad}.get(verdict, palette.good)


@dataclass(frozen=True)
class DriftView:
    """What the pane shows, read on a worker thread (workbench/ui/screens/drift.py)."""

    project: str
    reference: str
    """What batches are compared with, in words (or why there is nothing)."""
    policy: str
    """The retrain policy in words."""
    batches: list[CheckedBatch] = field(default_factory=list)
    """Newest first, with their reports."""
    pending: list[str] = field(default_factory=list)
    """Batch files in the incoming folder not checked yet."""


class DriftPane(Vertical):
    DEFAULT_CSS = """
    DriftPane { height: 1fr; background: $surface; }
    DriftPane > #drift-heading { height: auto; padding: 0 1; color: $text-muted; }
    DriftPane > #drift-progress { height: auto; padding: 0 1; color: $accent; display: none; }
    DriftPane > #drift-batches { height: auto; max-height: 40%; background: $surface; scrollbar-size-horizontal: 0; }
    DriftPane > #drift-columns-title { height: auto; max-height: 3; padding: 0 1; margin-top: 1; color: $foreground; }
    DriftPane > #drift-columns { height: 1fr; min-height: 4; background: $surface; }
    DriftPane > #drift-findings { height: auto; max-height: 6; padding: 0 1; color: $warning; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: DriftView | None = None
        self.batch_id: int | None = None
        """The batch whose columns are shown."""

    def compose(self) -> ComposeResult:
        yield Static("reading drift checks…", id="drift-heading")
        yield Static(id="drift-progress")
        yield DataTable(id="drift-batches", cursor_type="row", zebra_stripes=False)
        yield Static(id="drift-columns-title")
        yield DataTable(id="drift-columns", cursor_type="row", zebra_stripes=False)
        yield Static(id="drift-findings")

    def on_mount(self) -> None:
        self.batches_table.add_columns(*BATCH_COLUMNS)
        self.columns_table.add_columns(*COLUMN_COLUMNS)

    @property
    def batches_table(self) -> DataTable:
        return self.query_one("#drift-batches", DataTable)

    @property
    def columns_table(self) -> DataTable:
        return self.query_one("#drift-columns", DataTable)

    # -- what the screen calls ---------------------------------------------------------------

    def show(self, view: DriftView) -> None:
        """Show a project's batches, keeping the cursor on the batch it was on."""
        self.view = view
        palette = Palette.of(self.app)
        heading = Text(f"reference: {view.reference}\n{view.policy}")
        if view.pending:
            heading.append(f"\n{len(view.pending)} not checked yet: {', '.join(view.pending[:3])}", palette.warn)
        self.query_one("#drift-heading", Static).update(heading)
        keep = self.batch_id
        # At 80 columns the batch's name and the drift words give way, so the retrain stays in view.
        fill_table(self.batches_table, BATCH_COLUMNS,
                   [(str(batch.id), self._batch_row(batch, palette)) for batch in view.batches],
                   room=(self.size.width or self.app.size.width - 2) - 1, squeeze=((1, 10), (4, 12), (6, 14)))
        table = self.batches_table
        if not view.batches:
            self.batch_id = None
            self.query_one("#drift-columns-title", Static).update(
                "no batch checked yet: files landing in the incoming folder are checked while the project is watched")
            fill_table(self.columns_table, COLUMN_COLUMNS, [])
            self.query_one("#drift-findings", Static).update("")
            return
        ids = [b.id for b in view.batches]
        row = ids.index(keep) if keep in ids else 0
        table.move_cursor(row=row)
        self.show_batch(view.batches[row])

    def error(self, message: str) -> None:
        self.query_one("#drift-heading", Static).update(Text(f"✗ {message}", Palette.of(self.app).bad))

    def progress(self, line: str) -> None:
        """A check under way (`checking data/incoming/b.parquet: 23/50 columns`), or "" when none is."""
        shown = self.query_one("#drift-progress", Static)
        shown.update(line)
        shown.display = bool(line)

    @property
    def progress_line(self) -> str:
        shown = self.query_one("#drift-progress", Static)
        return str(shown.render()) if shown.display else ""

    def show_batch(self, batch: CheckedBatch) -> None:
        """The batch's columns, most drifted first, and its findings."""
        palette = Palette.of(self.app)
        self.batch_id = batch.id
        report = batch.report
        title = Text(f"batch {batch.id} · {batch.path}", "bold")
        findings = self.query_one("#drift-findings", Static)
        if report is None:
            fill_table(self.columns_table, COLUMN_COLUMNS, [])
            title.append("  being checked…", palette.muted)
            self.query_one("#drift-columns-title", Static).update(title)
            findings.update("")
            return
        # The verdict on its own lines, at most two: a longer one ends in an ellipsis, never
        # cut mid-word with nothing to say more was there.
        width = max((self.size.width or self.app.size.width - 2) - 2, 20)
        lines = textwrap.wrap(report.summary, width) or [""]
        if len(lines) > VERDICT_LINES:
            lines = lines[:VERDICT_LINES]
            lines[-1] = lines[-1][:width - 1] + "…"
        title.truncate(width, overflow="ellipsis")
        title.append("\n" + "\n".join(lines), verdict_tone(report.status, palette))
        self.query_one("#drift-columns-title", Static).update(title)
        weighed = report.weighed
        fill_table(self.columns_table, WEIGHED_COLUMNS if weighed else COLUMN_COLUMNS,
                   [(column.column, self._column_row(column, palette, weighed))
                    for column in sorted(report.columns, key=lambda c: (not c.drifted, -c.score))])
        notes = Text()
        for finding in report.findings:
            notes.append(("✗ " if finding.blocking else "! ") + finding.message + "\n",
                         palette.bad if finding.blocking else palette.warn)
        if report.importance_line and report.usable:  # where the weights came from, or why there were none
            notes.append(report.importance_line + "\n", palette.muted)
        if report.decay is None and report.decay_note:
            notes.append(f"performance {report.decay_note}\n", palette.muted)
        if batch.retrain_reason and report.usable:  # an unusable batch's reason is its verdict, said above
            notes.append(f"retrain: {batch.retrain_reason}", palette.muted)
        findings.update(notes)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is not self.batches_table or self.view is None or event.row_key is None:
            return
        event.stop()
        wanted = int(event.row_key.value)
        if wanted == self.batch_id:
            return
        found = next((b for b in self.view.batches if b.id == wanted), None)
        if found is not None:
            self.show_batch(found)

    # -- rows --------------------------------------------------------------------------------

    @staticmethod
    def _batch_row(b: CheckedBatch, palette: Palette) -> tuple:
        verdict = b.verdict
        if verdict == "checking":
            drift = Text("being checked", palette.muted)
        elif verdict in (NOT_CHECKED, BREAKS_CONTRACT):
            drift = Text(f"⊘ {verdict}", palette.bad)  # never a bar: none of its numbers count
        else:
            tone = verdict_tone(verdict, palette)
            # The verdict's mark, not only its colour: with weights, a drifted batch and a clean
            # one can show the same share of columns (one heavy column against one light one).
            drift = Text({DRIFTED: "✗ ", WARNING: "! "}.get(verdict, "✓ ") + score_bar(b.share or 0.0, 6), tone)
            drift.append(f" {b.drifted_columns}/{b.compared_columns} {b.share or 0:4.0%}")
            if verdict == WARNING:
                drift.append(" warning", palette.warn)
        if b.decay_value is None:
            decay = Text("—", palette.muted)
        else:
            delta = b.decay_value - (b.decay_baseline or 0.0)
            decay = Text(f"{b.decay_metric} {delta:+.3f}", palette.muted if abs(delta) < 0.01 else
                         (palette.good if delta > 0 else palette.warn))
        if b.retrain_run_id is not None:
            status = b.retrain_status or "running"
            retrain = Text(f"run {b.retrain_run_id} ")
            retrain.append(fmt.GLYPHS.get(status, "?"), palette.tone(fmt.tone(status)))
            if b.retrain_version is not None:
                retrain.append(f" → v{b.retrain_version} {b.retrain_version_status}",
                               palette.good if b.retrain_version_status == "staging" else "")
        elif b.retrain:
            retrain = Text("queued", palette.warn)
        else:
            reason = f"none: {verdict}" if verdict in (NOT_CHECKED, BREAKS_CONTRACT) \
                else b.retrain_reason.split(", but ", 1)[-1]
            retrain = Text(reason if len(reason) <= REASON_WIDTH else reason[:REASON_WIDTH - 1] + "…", palette.muted)
        return (str(b.id), b.name, b.landed_at.astimezone().strftime("%m-%d %H:%M"),
                "—" if b.rows is None else f"{b.rows:,}", drift, decay, retrain)

    @staticmethod
    def _column_row(c: ColumnDrift, palette: Palette, weighed: bool = False) -> tuple:
        tone = palette.bad if c.drifted else (palette.muted if not c.compared else "")
        if c.p_value is not None:
            statistic = f"p {c.p_value:.2g}"
        elif c.statistic is not None:
            statistic = f"{c.statistic:.3g}" + (" sd" if c.test == "wasserstein" else "")
        else:
            statistic = "—"
        name = Text(c.column + (" (target)" if c.role == "target" else ""), tone)
        bar = Text(score_bar(c.score), tone or palette.good)
        label = Text("drifted", palette.bad) if c.drifted else Text()
        if c.major:
            label.append(" major" if c.drifted else "major", palette.warn)
        psi = "—" if c.psi is None else f"{c.psi:.3f}"
        if not weighed:
            return name, TEST_NAMES.get(c.test, c.test), statistic, psi, bar, label
        if c.importance is None:
            importance = Text("—", palette.muted)
        else:
            importance = Text(percent(c.importance), palette.muted if c.importance == 0 else "")
        return name, TEST_NAMES.get(c.test, c.test), statistic, psi, importance, bar, label

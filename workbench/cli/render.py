"""How the CLI shows things: rich on a terminal, plain JSON with `--json`."""

from __future__ import annotations

import os
import sys

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from workbench.core.formatting import duration, metric
from workbench.core.events import (
    BatchChecked, ChangeDetected, ChangeIgnored, EnvironmentLog, ManifestInvalid, ManifestReloaded, RetrainFinished,
    RunEvent, RunFinished, RunStarted, RunSuperseded, StageFinished, StageLog, StageProgress, StageStarted, WatchError,
    WatchStarted, WatchStopped,
)
from workbench.core.model import RunRecord, RunStatus, RunSummary, StageStatus
from workbench.core.ports import DetailLine, StatusLine
from workbench.core.serialize import dumps

GLYPHS = {
    "succeeded": ("✓", "green"),
    "gate_failed": ("✗", "red"),
    "reused": ("↺", "cyan"),
    "failed": ("✗", "red"),
    "skipped": ("–", "dim"),
    "cancelled": ("⊘", "yellow"),
    "superseded": ("⇢", "yellow"),
    "interrupted": ("!", "magenta"),
    "running": ("●", "blue"),
}


def glyph(status: str) -> str:
    mark, colour = GLYPHS.get(str(status), ("?", "white"))
    return f"[{colour}]{mark} {str(status).replace('_', ' ')}[/]"


fmt_duration, fmt_metric = duration, metric


def fmt_paths(paths: tuple[str, ...], shown: int = 3) -> str:
    if not paths:
        return "files"
    more = f" (+{len(paths) - shown} more)" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


def fitted_table(columns: list[tuple[str, str]], rows: list[list[str]], gives_way: str) -> Table:
    """A borderless table in which only the `gives_way` column is cut on a narrow terminal: the
    others keep their widest cell, so a number or a status is never shown as "0.84…"."""
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold", padding=(0, 1))
    for i, (title, justify) in enumerate(columns):
        widest = max([len(title)] + [_cells(row[i]) for row in rows])
        table.add_column(title, justify=justify, no_wrap=True, overflow="ellipsis",
                         min_width=None if title == gives_way else widest)
    for row in rows:
        table.add_row(*row)
    return table


def _cells(markup: str) -> int:
    """Terminal cells of a cell's text (markup parsed only where there is some: a listing can
    have 100,000 rows)."""
    return Text.from_markup(markup).cell_len if "[" in markup else cell_len(markup)


PIPE_WIDTH = 4096
"""Columns for output that is not a terminal (a CI log, a pipe, a file): a table is as wide as
its cells, as in other CLIs, instead of rich's 80-column guess. $COLUMNS, when set, wins."""


def output_width(stream) -> int | None:
    """None (rich measures the terminal, or reads $COLUMNS) unless `stream` is not a terminal
    and $COLUMNS is not set."""
    if os.environ.get("COLUMNS", "").strip().isdigit():
        return None
    try:
        return None if stream.isatty() else PIPE_WIDTH
    except (AttributeError, ValueError):  # a closed or replaced stream
        return PIPE_WIDTH


class Printer:
    def __init__(self, json_mode: bool = False):
        self.json_mode = json_mode
        self.out = Console(highlight=False, soft_wrap=True, width=output_width(sys.stdout))
        self.err = Console(stderr=True, highlight=False, soft_wrap=True, width=output_width(sys.stderr))
        self.show_logs = True
        self.verbose = False
        """-v: also the lines that only say all is as expected (DetailLine)."""
        self._progress_shown: dict[str, int] = {}

    def json(self, value) -> None:
        sys.stdout.write(dumps(value) + "\n")

    def error(self, message: str) -> None:
        self.err.print(f"[bold red]error:[/] {escape(message)}")

    def notice(self, message: str) -> None:
        self.err.print(f"[yellow]note:[/] {escape(message)}")

    # -- live run events -------------------------------------------------------------------
    def event(self, event: RunEvent) -> None:
        if self.json_mode:
            return
        con = self.out
        match event:
            case RunStarted():
                con.print(f"[bold]▶ run {event.run_id}[/] · {escape(event.project)} · {event.runner} · "
                          f"trigger {event.trigger} · stages: {' → '.join(event.stages)}")
            case EnvironmentLog():
                # What the run waits for (an image build, a pull) shows even with -q; that all
                # is as expected only with -v.
                if isinstance(event.line, DetailLine) and not self.verbose:
                    pass
                elif self.show_logs or isinstance(event.line, StatusLine):
                    con.print(f"  [dim]env │ {escape(event.line)}[/]")
            case StageStarted():
                con.print(f"  [blue]● {event.stage}[/] started")
            case StageLog():
                if self.show_logs or isinstance(event.line, StatusLine):
                    con.print(f"  [dim]{escape(event.stage)} │ {escape(event.line)}[/]")
            case StageProgress():
                # Every report a stage makes, unless it reports often: then one a tenth of the
                # way at most (a scrolling log; the TUI shows a bar). Counting from the last
                # line shown, not in fixed buckets: buckets of a quarter dropped 200 of reports
                # every 50 of 300 rounds (50, 100, 150, 250, 300), which read as a skipped step.
                # Keyed by run too: `workbench watch` shows the same stage in run after run.
                key = f"{event.run_id}/{event.stage}"
                last = self._progress_shown.get(key)
                if (last is None or event.done == event.total or event.done < last  # a new pass starts over
                        or event.done - last >= event.total / 10):
                    self._progress_shown[key] = event.done
                    con.print(f"  [dim]{escape(event.stage)} │ {event.done}/{event.total} {escape(event.label)}[/]")
            case StageFinished():
                r = event.result
                detail = fmt_duration(r.duration_s)
                if r.status is StageStatus.REUSED:
                    detail = f"from run {r.reused_from_run}" if r.reused_from_run else "unchanged"
                mark, colour = GLYPHS.get(str(r.status), ("?", "white"))
                line = f"  [{colour}]{mark}[/] [bold]{escape(r.stage)}[/] [{colour}]{r.status}[/] {detail}"
                if r.reason:
                    line += f": {escape(r.reason)}"
                con.print(line)
                if r.status is StageStatus.FAILED and r.log_tail and not self.show_logs:
                    for tail_line in r.log_tail[-5:]:
                        con.print(f"    [dim]{escape(tail_line)}[/]")
            case RunFinished():
                # A superseded run's partial metrics and unevaluated gates are noise: the run
                # that replaces it follows at once.
                self.run_summary(event.record, tables=str(event.record.status) != "superseded")
            case _:
                self.watch_event(event)

    def watch_event(self, event: RunEvent) -> None:
        """The watch service's own events (workbench watch)."""
        con = self.out
        match event:
            case WatchStarted():
                con.print(f"[cyan]◉[/] watching [bold]{escape(event.project)}[/]")
            case WatchStopped():
                why = f": {escape(event.reason)}" if event.reason else ""
                con.print(f"[dim]◌ stopped watching {escape(event.project)}{why}[/]")
            case ChangeDetected():
                con.print(f"[cyan]~[/] {escape(event.project)}: {escape(fmt_paths(event.paths))} changed → "
                          f"rerun {' → '.join(event.stages)}")
            case ChangeIgnored():
                con.print(f"[dim]· {escape(event.project)}: {escape(fmt_paths(event.paths))}: "
                          f"{escape(event.reason)}, nothing to run[/]")
            case ManifestInvalid():
                con.print(f"[red]✗[/] {escape(event.project)}: invalid manifest: {escape(event.message)}")
                con.print("  [dim]still watching with the last valid manifest; runs wait until it is fixed[/]")
            case ManifestReloaded():
                con.print(f"[cyan]↻[/] {escape(event.project)}: manifest reloaded")
            case RunSuperseded():
                con.print(f"[yellow]⇢[/] run {event.run_id} superseded by run {event.by_run_id}")
            case WatchError():
                con.print(f"[bold red]error:[/] {escape(event.project)}: {escape(event.message)}")
            case BatchChecked():
                if event.verdict in ("not checked", "breaks the contract"):
                    con.print(f"[red]⊘[/] {escape(event.project)}: {escape(event.batch)} "
                              f"{escape(event.summary or 'not checked')}")
                elif event.verdict == "warning":
                    con.print(f"[yellow]![/] {escape(event.project)}: {escape(event.batch)} {escape(event.summary)}")
                elif event.drifted:  # the summary says why: which columns, how far, how important
                    con.print(f"[red]⚠[/] {escape(event.project)}: {escape(event.batch)} "
                              f"{escape(event.summary or 'drifted')}")
                else:
                    con.print(f"[green]✓[/] {escape(event.project)}: {escape(event.batch)} checked: "
                              f"{escape(event.summary or 'no drift')}")
                verdict = "[bold]→ retrain[/]" if event.retrain else "[dim]no retrain[/]"
                con.print(f"  {verdict}: {escape(event.reason)}")
            case RetrainFinished():
                if event.version is None:
                    con.print(f"[dim]· {escape(event.project)}: drift retrain run {event.run_id} "
                              f"{str(event.status).replace('_', ' ')}, "
                              "no new model version[/]")
                elif event.gates_failed:
                    con.print(f"[yellow]★[/] {escape(event.project)}: drift retrain run {event.run_id} → version "
                              f"{event.version}, not promotable: gate failed: {escape('; '.join(event.gates_failed))}")
                elif event.staged:
                    con.print(f"[green]★[/] {escape(event.project)}: drift retrain run {event.run_id} → version "
                              f"{event.version}, now in staging ([promotion] auto_staging)")
                else:
                    con.print(f"[green]★[/] {escape(event.project)}: drift retrain run {event.run_id} → version "
                              f"{event.version}, ready for staging (`workbench promote {escape(event.project)} "
                              f"{event.version} --to staging`)")

    def run_summary(self, record: RunRecord, tables: bool = True) -> None:
        con = self.out
        metrics = record.metrics if tables else {}
        if metrics:
            table = Table(title="metrics", title_justify="left", show_edge=False, pad_edge=False)
            table.add_column("metric")
            table.add_column("value", justify="right")
            for key in sorted(metrics):
                table.add_row(escape(key), fmt_metric(metrics[key]))
            con.print(table)
        if record.gates and tables:
            table = Table(title="gates", title_justify="left", show_edge=False, pad_edge=False)
            table.add_column("gate")
            table.add_column("result")
            table.add_column("detail")
            for gate in record.gates:
                result = {True: "[green]✓ pass[/]", False: "[red]✗ fail[/]", None: "[dim]– not evaluated[/]"}[gate.passed]
                table.add_row(escape(gate.rule), result, escape(gate.detail))
            con.print(table)
        for warning in record.warnings:  # the lineage profile's: the run went on regardless
            con.print(f"[yellow]warning:[/] {escape(warning)}")
        reused = f", {len(record.reused_stages)} reused" if record.reused_stages else ""
        headline = f"{glyph(record.status)} · run {record.id} · {fmt_duration(record.duration_s)}{reused}"
        if record.reason:
            headline += f" · {escape(record.reason)}"
        con.print(headline)
        if record.status is RunStatus.GATE_FAILED:
            con.print(f"[dim]no model version registered: a run whose gate failed is not promotable "
                      f"(its model stays in run {record.id}'s outputs and lineage)[/]")

    # -- listings -------------------------------------------------------------------------
    def runs_table(self, runs: list[RunSummary]) -> None:
        rows = []
        for run in runs:
            gates = ""
            if run.gates_passed or run.gates_failed:
                gates = f"[green]{run.gates_passed}✓[/]" + (f" [red]{run.gates_failed}✗[/]" if run.gates_failed else "")
            rows.append([
                str(run.id), escape(run.project),
                escape(f"sweep {run.sweep}#{run.sweep_trial}") if run.sweep else run.trigger, glyph(run.status),
                run.started_at.astimezone().strftime("%m-%d %H:%M:%S"), fmt_duration(run.duration_s),
                f"{run.reused}/{run.stages}", fmt_metric(run.primary_metric), gates,
            ])
        columns = [("run", "right"), ("project", "left"), ("trigger", "left"), ("status", "left"),
                   ("started", "left"), ("took", "right"), ("reused", "right"), ("primary", "right"),
                   ("gates", "left")]
        table = fitted_table(columns, rows, gives_way="project")
        self.out.print(table)

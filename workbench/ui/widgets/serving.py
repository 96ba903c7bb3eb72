"""The Serving view's parts: what one read of a project's servers holds (ServingView), the
reading itself (ServingReader, on a worker thread), the table of rows per alias, version and role,
and the charts of req/s and p99 over time (textual-plotext, like the compare view's chart).

The reader keeps one ScrapeWindow per server container (services/serving_stats.py): req/s over
the last RATE_SPAN_S seconds says what the server does now; latency and errors cover the whole
window (WINDOW_S), which a few requests a minute still fill; `total` counts since the server started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from rich.text import Text
from textual.color import Color
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from workbench.core.errors import WorkbenchError
from workbench.ui.widgets.row_table import fill_table
from workbench.services.live_quality import live_quality
from workbench.services.serving_stats import (
    WINDOW_S, HistoryPoint, RoleStats, ScrapeWindow, ServerStats, latency_ms, totals, with_quality,
)

RATE_SPAN_S = 10.0
"""req/s in the table: over this many of the newest seconds."""
QUALITY_EVERY_S = 10.0
"""Live quality (feedback joined to the traffic log) is measured again this often."""


@dataclass(frozen=True)
class AliasView:
    alias: str
    version: int | None
    url: str
    container: str
    healthy: bool
    problem: str
    owned: bool
    """Started by this app (it stops them when it quits), else by another `workbench serve`."""
    now: ServerStats | None = None
    """Over the last RATE_SPAN_S seconds."""
    window: ServerStats | None = None
    """Over the whole window."""
    since_start: ServerStats | None = None
    history: tuple[HistoryPoint, ...] = ()


@dataclass(frozen=True)
class ServingView:
    project: str
    aliases: tuple[AliasView, ...]
    at: float = field(default_factory=time.monotonic)

    def rows(self) -> list[tuple[AliasView, RoleStats, RoleStats | None, RoleStats | None]]:
        """(alias, the row over the window, the same version and role now, since start)."""
        found = []
        for alias in self.aliases:
            if alias.window is None:
                continue
            now = {(r.version, r.role): r for r in (alias.now.rows if alias.now else ())}
            start = {(r.version, r.role): r for r in (alias.since_start.rows if alias.since_start else ())}
            for row in alias.window.rows:
                key = (row.version, row.role)
                found.append((alias, row, now.get(key), start.get(key)))
        return found


class ServingReader:
    """Reads a project's servers and scrapes each one's /metrics, keeping their windows
    between reads (one reader per open Serving screen; called from one worker at a time)."""

    def __init__(self, service, project: str, owned: set[str]) -> None:
        self.service, self.project, self.owned = service, project, owned
        self.windows: dict[str, ScrapeWindow] = {}
        self.qualities: dict[str, tuple[float, dict]] = {}
        """alias -> (when measured, {version: Quality}): the traffic log is read again only every
        QUALITY_EVERY_S (a 50 MB log takes about half a second)."""

    def quality(self, alias: str) -> dict:
        measured, found = self.qualities.get(alias, (float("-inf"), {}))
        if time.monotonic() - measured >= QUALITY_EVERY_S:
            try:
                found = live_quality(self.service.session, self.project, alias, by_role=True)
            except WorkbenchError:
                found = {}
            self.qualities[alias] = (time.monotonic(), found)
        return found

    def read(self) -> ServingView:
        aliases = []
        statuses = self.service.status(self.project)
        for status in statuses:
            url = status.url.replace("0.0.0.0", "127.0.0.1")
            window = self.windows.get(status.container)
            if window is None or window.url != url:
                window = self.windows[status.container] = ScrapeWindow(url, WINDOW_S)
            view = AliasView(status.alias, status.version, status.url, status.container, status.healthy,
                             status.problem, status.container in self.owned)
            if status.url and status.problem not in ("exited", "dead", "created"):
                window.poll()
                latest = window.scrapes[-1] if window.scrapes else None
                view = replace(view, problem=view.problem or window.problem, now=window.stats(RATE_SPAN_S),
                               window=with_quality(window.stats(), self.quality(status.alias)),
                               since_start=totals(url, latest) if latest else None,
                               history=tuple(window.history()))
            aliases.append(view)
        for gone in set(self.windows) - {s.container for s in statuses}:
            del self.windows[gone]
        return ServingView(self.project, tuple(aliases))


class ServersLine(Static):
    """One line per alias: served version, url, health, and who started it."""
    DEFAULT_CSS = """
    ServersLine > .servers--good { color: $success; }
    ServersLine > .servers--bad { color: $error; }
    ServersLine > .servers--muted { color: $text-muted; }
    """
    COMPONENT_CLASSES = {"servers--good", "servers--bad", "servers--muted"}

    def show(self, view: ServingView | None, note: str = "") -> None:
        style = self.get_component_rich_style
        text = Text()
        if note:
            text.append(note + "\n", style("servers--muted"))
        if view is not None and not view.aliases and not note:
            text.append("not served: nothing answers for this project (Esc, then S starts it)")
        for alias in view.aliases if view else ():
            text.append(f"{alias.alias:<11}", "bold")
            text.append(f"version {alias.version if alias.version is not None else '-':<4} ")
            text.append(f"{alias.url or '-'}  ")
            if alias.healthy and not alias.problem:
                text.append("● healthy", style("servers--good"))
            else:
                text.append(f"✗ {alias.problem or 'unhealthy'}", style("servers--bad"))
            text.append("  started here" if alias.owned else "  served by another `workbench serve` (status only)",
                        style("servers--muted"))
            text.append("\n")
        self.update(text)


class ServingTable(DataTable):
    """A row per alias, version and role, labelled as the charts' lines are (`production v2`,
    `champion`); the quality column only once a version has one. Fits 80 columns."""
    COLUMNS = ("served", "role", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "total")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True

    def show(self, view: ServingView) -> None:
        rows = view.rows()
        columns = self.COLUMNS + (("quality",) if any(row.quality for _, row, _, _ in rows) else ())
        cursor = self.cursor_row
        cells = []
        for alias, row, now, start in rows:
            line = (f"{alias.alias} v{row.version}", row.role, _rate(alias, now), latency_ms(row.p50, unit=False),
                    latency_ms(row.p95, unit=False), latency_ms(row.p99, unit=False),
                    "-" if row.error_rate is None else f"{row.error_rate:.1%}",
                    f"{start.requests:,}" if start else "-")
            cells.append((f"{alias.alias}/{row.version}/{row.role}",
                          line + ((_quality(row),) if len(columns) > len(self.COLUMNS) else ())))
        fill_table(self, columns, cells)  # explicit widths: auto-width columns are sized on the next idle
        if self.row_count:  # redrawn each second: the cursor stays where the user left it
            self.move_cursor(row=min(cursor, self.row_count - 1))


def _rate(alias: AliasView, now: RoleStats | None) -> str:
    """req/s over the newest seconds: 0 for a row quiet over them, - until two scrapes are known."""
    if now is not None and now.rate is not None:
        return f"{now.rate:.1f}"
    return "0.0" if alias.now is not None and alias.now.span_s else "-"


def _quality(row: RoleStats) -> str:
    quality = row.quality
    if quality is None:
        return "-"
    number = "-" if quality.value is None else f"{quality.value:.4g}"  # None: one class labelled so far
    return f"{quality.metric} {number} ({quality.labelled_rows:,})"


class ServingChart(PlotextPlot):
    """One quantity over time (req/s or p99 in ms), one line per alias, version and role."""
    DEFAULT_CSS = """
    ServingChart { height: 1fr; min-height: 8; background: $surface; }
    """

    def __init__(self, quantity: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.quantity = quantity
        self.lines: dict[str, int] = {}
        """Label -> points drawn at the last draw (what a test can check)."""

    def draw(self, view: ServingView) -> None:
        plt = self.plt
        plt.clear_figure()
        self.lines = {}
        series: dict[str, tuple[list[float], list[float]]] = {}
        for alias in view.aliases:
            for point in alias.history:
                value = point.rate if self.quantity == "req/s" else (None if point.p99 is None else point.p99 * 1000)
                if value is None:
                    continue
                xs, ys = series.setdefault(f"{alias.alias} v{point.key[0]} {point.key[1]}", ([], []))
                xs.append(point.at - view.at)
                ys.append(value)
        colours = [self._colour(name) for name in ("primary", "warning", "success", "error", "accent", "secondary")]
        for index, (label, (xs, ys)) in enumerate(sorted(series.items())):
            plt.plot(xs, ys, label=label, marker="braille", color=colours[index % len(colours)])
            self.lines[label] = len(xs)
        plt.title(f"{self.quantity} per version" + ("" if series else ": no requests yet"))
        plt.xlabel("seconds ago")
        if not series:
            plt.xlim(-60, 0)
        self.refresh()

    def _colour(self, variable: str) -> tuple[int, int, int]:
        value = self.app.theme_variables.get(variable, "#4080ff")
        try:
            return Color.parse(value.split()[0]).rgb
        except Exception:  # a theme value Color cannot read: plotext's default
            return (64, 128, 255)

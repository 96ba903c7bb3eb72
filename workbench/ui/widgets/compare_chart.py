"""The compare view's chart (textual-plotext): a metric across the runs, in the table's order,
or a metric against a param (a scatter). The series comes from workbench.core.compare.chart_series;
this only draws it, in the theme's colours (plotext's own background follows the theme)."""

from __future__ import annotations

from textual.color import Color
from textual_plotext import PlotextPlot

from workbench.core.compare import ChartSeries

BARS_UP_TO = 40
"""Up to this many runs a metric across runs is bars; more are points (bars would be hairs)."""


class CompareChart(PlotextPlot):
    DEFAULT_CSS = """
    CompareChart { height: 1fr; min-height: 8; background: $surface; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.series: ChartSeries | None = None
        self.kind = "none"
        """What is drawn now: "bars", "points" (a metric across runs), "scatter" (against a
        param) or "none"."""

    def draw(self, series: ChartSeries | None) -> None:
        self.series = series
        plt = self.plt
        plt.clear_figure()
        if series is None or not series.ys:
            self.kind = "none"
            plt.title("no metric to chart" if series is None else f"{series.metric}: no run has a value")
            self.refresh()
            return
        colour = self._colour("primary")
        left_out = f" · {series.missing} run(s) without a value left out" if series.missing else ""
        if series.against is None:
            if len(series.ys) <= BARS_UP_TO:
                self.kind = "bars"
                plt.bar(series.xs, series.ys, color=colour, width=0.6)
            else:
                self.kind = "points"
                plt.scatter(series.xs, series.ys, color=colour, marker="dot")
            plt.title(f"{series.metric} across runs (in table order){left_out}")
            plt.xlabel("run")
        else:
            self.kind = "scatter"
            plt.scatter(series.xs, series.ys, color=colour, marker="dot" if len(series.ys) > BARS_UP_TO else "●")
            plt.title(f"{series.metric} against {series.against}{left_out}")
            plt.xlabel(series.against)
        if series.ticks:
            plt.xticks([x for x, _ in series.ticks], [label for _, label in series.ticks])
        low, high = min(series.ys), max(series.ys)
        if low == high:  # a flat series still gets a visible range
            low, high = low - 0.5, high + 0.5
        elif self.kind == "bars":
            low -= (high - low) * 0.1
        plt.ylim(low, high)
        self.refresh()

    def _colour(self, variable: str) -> tuple[int, int, int]:
        value = self.app.theme_variables.get(variable, "#4080ff")
        try:
            return Color.parse(value.split()[0]).rgb
        except Exception:  # a theme value Color cannot read: plotext's default
            return (64, 128, 255)

"""The primary metric across a project's runs, one bar per run, oldest to newest:

    auc ▃▅▅▆▇▇▆▂  0.8123  ▼ 0.036 vs best

A bar lower than the run before it (worse, for the metric's goal) takes the error colour, so a
regression is seen, not read; the latest value and its distance from the best follow.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from workbench.ui import format as fmt

LEVELS = "▁▂▃▄▅▆▇█"


class TrendLine(Widget):
    DEFAULT_CSS = """
    TrendLine { height: 1; background: $surface; }
    TrendLine > .trend--bar { color: $primary; }
    TrendLine > .trend--worse { color: $error; }
    TrendLine > .trend--better { color: $success; }
    TrendLine > .trend--label { color: $text-muted; }
    """
    COMPONENT_CLASSES = {"trend--bar", "trend--worse", "trend--better", "trend--label"}

    values: reactive[tuple[float, ...]] = reactive(tuple)
    """Oldest first; runs without a value are left out."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.metric_name: str | None = None
        self.maximize = True
        self.loaded = False
        """False until the first values arrive: until then it says so, not "no values"."""
        self.note: str | None = None
        """Shown instead of a trend (the project's manifest is unusable)."""

    def show(self, metric_name: str | None, maximize: bool, values: list[float]) -> None:
        self.metric_name, self.maximize, self.note = metric_name, maximize, None
        self.loaded = True
        self.values = tuple(v for v in values if v is not None and not math.isnan(v))
        self.refresh()

    def say(self, note: str) -> None:
        """No trend, and why."""
        self.note, self.loaded, self.values = note, True, ()
        self.refresh()

    def render(self) -> Text:
        style = self.get_component_rich_style
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.note:
            text.append(f" {self.note}", style("trend--label"))
            return text
        if not self.loaded:
            text.append(" loading…", style("trend--label"))
            return text
        if not self.metric_name:
            text.append(" no primary metric in the manifest: no trend", style("trend--label"))
            return text
        text.append(f" {self.metric_name} ", style("trend--label"))
        if not self.values:
            text.append("no values yet", style("trend--label"))
            return text
        latest = self.values[-1]
        tail = f"  {fmt.metric(latest)}"
        best_before = (max if self.maximize else min)(self.values[:-1]) if len(self.values) > 1 else None
        worse_by = None
        if best_before is not None:
            worse_by = (best_before - latest) if self.maximize else (latest - best_before)
        # What follows the bars is sized first, shortest form when the pane is narrow (80
        # columns): "  ▼ 0.00099 vs best", then "  ▼0.00099"; the bars take what is left.
        if worse_by is not None and worse_by > 0:
            words = [(f"  ▼ {_short(worse_by)} vs best", "trend--worse"), (f"  ▼{_short(worse_by)}", "trend--worse")]
        elif best_before is not None:
            words = [("  ▲ best so far", "trend--better"), ("  ▲ best", "trend--better")]
        else:
            words = [("", "trend--label")]
        fits = [w for w in words if self.size.width - len(text) - len(tail) - len(w[0]) >= 8]
        suffix, suffix_style = fits[0] if fits else words[-1]
        room = max(self.size.width - len(text) - len(tail) - len(suffix), 4)
        shown = self.values[-room:]
        low, high = min(shown), max(shown)
        span = high - low
        previous = None
        for value in shown:
            level = LEVELS[min(int((value - low) / span * (len(LEVELS) - 1) + 0.5), len(LEVELS) - 1)] if span else LEVELS[3]
            worse = previous is not None and ((value < previous) if self.maximize else (value > previous))
            text.append(level, style("trend--worse" if worse else "trend--bar"))
            previous = value
        text.append(tail)
        text.append(suffix, style(suffix_style))
        return text


def _short(value: float) -> str:
    """A distance in two significant digits (0.00099, 0.036, 1.2, 340): how far, not exactly."""
    if value >= 100:
        return f"{value:.0f}"
    return f"{float(f'{value:.2g}'):g}" if value >= 1e-4 else f"{value:.1e}"

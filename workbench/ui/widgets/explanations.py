"""The run detail's Explanations tab: each feature's importance in the run's LightGBM model.

    model.txt · sha256 1f2e3d4c5b6a · mean |SHAP| on 500 rows · sorted by mean |SHAP|
    FEATURE          MEAN |SHAP|                 GAIN                    SPLITS
    tenure           ██████████████ 0.812        █████████████▌ 1,204.5     311
    monthly_charges  ███████▍       0.421        ██████████     880.1       402

Hand-drawn bars, not a plotext chart: the feature names must stay readable, and three measures
side by side in a table read better than three charts. `o` changes the measure it is sorted by.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from workbench.ui import format as fmt
from workbench.ui.widgets.run_views import Palette

NO_EXPLANATIONS = ("no explanations recorded: a stage that writes a LightGBM model file gets gain, split "
                   "and mean |SHAP| importance per feature here")
EIGHTHS = " ▏▎▍▌▋▊▉"
SORTS = ("mean_abs_shap", "gain", "split")
SORT_NAMES = {"mean_abs_shap": "mean |SHAP|", "gain": "gain", "split": "splits"}


def bar(value: float | None, top: float, width: int) -> str:
    """`███▌` for value/top of `width` cells, in eighths of a cell."""
    if value is None or top <= 0 or value <= 0:
        return ""
    eighths = round(min(value / top, 1.0) * width * 8)
    return "█" * (eighths // 8) + (EIGHTHS[eighths % 8] if eighths % 8 else "")


def sort_key(payload: dict, wanted: str) -> str:
    """The measure to sort by: the one asked, unless no feature has it (mean |SHAP| without a sample)."""
    features = payload.get("features") or []
    if any(f.get(wanted) is not None for f in features):
        return wanted
    return "gain"


def importance_table(payload: dict, palette: Palette, by: str, bar_width: int = 12) -> Table:
    features = list(payload.get("features") or [])
    by = sort_key(payload, by)
    features.sort(key=lambda f: -(f.get(by) or 0.0))
    tops = {name: max((f.get(name) or 0.0 for f in features), default=0.0) for name in SORTS}
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    table.add_column("feature", no_wrap=True, overflow="ellipsis", max_width=22)
    has_shap = any(f.get("mean_abs_shap") is not None for f in features)
    colours = {"mean_abs_shap": palette.live, "gain": palette.info}
    measures = (["mean_abs_shap"] if has_shap else []) + ["gain"]
    for name in measures:
        title = SORT_NAMES[name] + (" ▼" if name == by else "")
        table.add_column(title, no_wrap=True, min_width=bar_width)
        table.add_column("", justify="right", no_wrap=True)
    table.add_column(SORT_NAMES["split"] + (" ▼" if by == "split" else ""), justify="right", no_wrap=True)
    for f in features:
        cells: list = [str(f.get("feature", "?"))]
        for name in measures:
            value = f.get(name)
            cells += [Text(bar(value, tops[name], bar_width), colours[name]),
                      fmt.metric(value) if value is not None else "—"]
        cells.append(f"{int(f.get('split') or 0):,}")
        table.add_row(*cells)
    return table


def heading_text(stage: str, payload: dict, palette: Palette, by: str, others: list[str]) -> Text:
    text = Text()
    text.append(stage, "bold")
    text.append(f" · {payload.get('model', 'model')} · sha256 {fmt.short_hash(payload.get('model_sha256'))}")
    rows = payload.get("shap_rows")
    text.append(f" · mean |SHAP| on {rows:,} rows" if rows else " · no SHAP sample", palette.muted if not rows else "")
    text.append(f" · sorted by {SORT_NAMES[sort_key(payload, by)]} (o changes)", palette.muted)
    if others:
        text.append(f"\n(also explained: {', '.join(others)})", palette.muted)
    return text


class ExplanationsView(VerticalScroll):
    DEFAULT_CSS = """
    ExplanationsView { height: 1fr; background: $surface; padding: 0 1; }
    ExplanationsView > Static { height: auto; color: $foreground; }
    """
    BINDINGS = [Binding("o", "sort_next", "Sort by", id="explanations_sort",
                        tooltip="Sort the features by the next measure (mean |SHAP|, gain, splits)")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.payloads: dict[str, dict] = {}
        self.problem: str | None = None
        self.notes = ""
        self.by = "mean_abs_shap"

    def compose(self) -> ComposeResult:
        yield Static(NO_EXPLANATIONS, id="explain-heading")
        yield Static(id="explain-table")

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._draw())

    def show(self, payloads: dict[str, dict] | None, problem: str | None = None, notes: str = "") -> None:
        """Stage -> explanations payload (the last stage's is drawn); `problem`: why they could
        not be read; `notes`: why a stage's model has none (not LightGBM, ...)."""
        self.payloads, self.problem, self.notes = dict(payloads or {}), problem, notes
        self._draw()

    def action_sort_next(self) -> None:
        self.by = SORTS[(SORTS.index(self.by) + 1) % len(SORTS)]
        payload = self._payload()
        if payload is not None and sort_key(payload, self.by) != self.by:  # no SHAP sample: skip it
            self.by = SORTS[(SORTS.index(self.by) + 1) % len(SORTS)]
        self._draw()

    def _payload(self) -> dict | None:
        return self.payloads[list(self.payloads)[-1]] if self.payloads else None

    def _draw(self) -> None:
        palette = Palette.of(self.app)
        heading, table = self.query_one("#explain-heading", Static), self.query_one("#explain-table", Static)
        payload = self._payload()
        if payload is None:
            heading.update(Text(self.problem, palette.bad) if self.problem else
                           Text(NO_EXPLANATIONS + (f"\n{self.notes}" if self.notes else ""), palette.muted))
            table.update("")
            return
        stage = list(self.payloads)[-1]
        text = heading_text(stage, payload, palette, self.by, list(self.payloads)[:-1])
        if self.notes:
            text.append(f"\n{self.notes}", palette.muted)
        heading.update(text)
        table.update(importance_table(payload, palette, self.by))

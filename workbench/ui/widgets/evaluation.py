"""The run detail's Evaluation tab: what the workbench computed from a stage's predictions file.

    evaluate · binary · 1,409 rows · threshold 0.5 · AUC 0.8412 · AP 0.6523 · ECE 0.021
    ┌ ROC ──────────────┐ ┌ precision-recall ─┐     (plotext curves, theme colours)
    reliability curve     confusion matrix at the threshold
    residual histogram    (regression only)
    per-group table for each `data.sensitive` column, with the parity differences

Curves are drawn with textual-plotext (they need axes); tables are Rich. The payload is the
evaluation store's dict (see `EvaluationView.show`); a part it lacks is hidden, not drawn empty.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static
from textual_plotext import PlotextPlot

from workbench.ui import format as fmt
from workbench.ui.widgets.run_views import Palette

NO_EVALUATION = ("no evaluation recorded: a stage that declares a predictions file "
                 "(predictions = \"predictions.parquet\") gets curves, calibration and per-group metrics here")
FAIRNESS_WARN = 0.1
"""A parity difference above this is drawn in the warning colour (the common 80% rule's scale)."""


def theme_rgb(app, variable: str, fallback: str = "white") -> tuple[int, int, int]:
    """A theme variable as an RGB triple, for plotext (which takes colours, not CSS)."""
    value = (getattr(app, "theme_variables", None) or {}).get(variable) or fallback
    try:
        return Color.parse(value.split()[0]).rgb
    except Exception:  # an `auto` or odd value: the fallback still draws
        return Color.parse(fallback).rgb


class CurvePlot(PlotextPlot):
    """One plotext chart that keeps what it draws, so a theme change redraws it in the new colours."""

    DEFAULT_CSS = """
    CurvePlot { height: 12; width: 1fr; min-width: 24; background: $surface; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._spec: dict[str, Any] | None = None

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._draw())

    def curves(self, title: str, xlabel: str, ylabel: str, series: list[tuple[list, list, str, str]],
               diagonal: bool = False) -> None:
        """`series`: (xs, ys, label, theme variable for its colour)."""
        self._spec = {"kind": "curves", "title": title, "xlabel": xlabel, "ylabel": ylabel, "series": series,
                      "diagonal": diagonal}
        self._draw()

    def histogram(self, title: str, xlabel: str, edges: list[float], counts: list[int]) -> None:
        self._spec = {"kind": "histogram", "title": title, "xlabel": xlabel, "edges": edges, "counts": counts}
        self._draw()

    def _draw(self) -> None:
        spec, plt = self._spec, self.plt
        if spec is None or not self.is_mounted:
            return
        plt.clear_figure()
        muted = theme_rgb(self.app, "foreground")
        if spec["kind"] == "curves":
            if spec["diagonal"]:
                plt.plot([0, 1], [0, 1], color=muted, marker="dot")
            for xs, ys, label, colour in spec["series"]:
                plt.plot(list(xs), list(ys), color=theme_rgb(self.app, colour), marker="braille")  # the title names it
            plt.xlim(0, 1)
            plt.ylim(0, 1)
            plt.xticks([0, 0.5, 1])
            plt.yticks([0, 0.5, 1])
        else:
            edges, counts = spec["edges"], spec["counts"]
            centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
            width = (edges[-1] - edges[0]) / max(len(counts), 1) if len(edges) > 1 else 1
            plt.bar(centres, counts, color=theme_rgb(self.app, "primary"), width=width * 0.9, marker="sd")
        self.refresh()

    def render(self):
        # The axes are named in the title, when it fits: plotext puts both axis labels on the
        # bottom row, where "precision   recall" reads as one phrase, and drops a title wider
        # than the plot.
        spec = self._spec
        if spec is not None:
            title = spec["title"]
            if spec["kind"] == "curves":
                full = f"{title} · {spec['ylabel']} by {spec['xlabel']}"
                title = full if len(full) <= self.size.width - 8 else title
            self.plt.title(title)
        return super().render()


def summary_text(stage: str, payload: dict, palette: Palette, others: list[str]) -> Text:
    """`evaluate · binary · 1,409 rows · threshold 0.5 · AUC 0.8412 · AP 0.6523 · ECE 0.0213 · log loss 0.41`"""
    text = Text()
    text.append(stage, "bold")
    text.append(f" · {payload.get('task', '?')} · {payload.get('rows', 0):,} rows")
    if payload.get("label"):
        text.append(f" · label {payload['label']}")
    if payload.get("threshold") is not None:
        text.append(f" · threshold {fmt.metric(payload['threshold'])}")
    facts = []
    if payload.get("roc"):
        facts.append(("AUC", payload["roc"].get("auc")))
    if payload.get("pr"):
        facts.append(("AP", payload["pr"].get("average_precision")))
    if payload.get("calibration"):
        facts.append(("ECE", payload["calibration"].get("ece")))
    if payload.get("log_loss") is not None:
        facts.append(("log loss", payload["log_loss"]))
    regression = payload.get("regression") or {}
    facts += [(name.upper() if name != "r2" else "R²", regression.get(name)) for name in ("mae", "rmse", "r2")
              if name in regression]
    for name, value in facts:
        text.append(" · ")
        text.append(f"{name} {fmt.metric(value)}", palette.info)
    if others:
        text.append(f"\n(also evaluated: {', '.join(others)})", palette.muted)
    return text


def confusion_table(confusion: dict, threshold: float | None) -> RenderableType:
    """The confusion matrix at the threshold, with each cell's share of its actual class."""
    labels = [str(label) for label in confusion.get("labels", ["0", "1"])]
    matrix = confusion.get("matrix") or [[0, 0], [0, 0]]
    at = f" at {fmt.metric(threshold)}" if threshold is not None else ""
    table = Table(title=f"confusion{at}", title_justify="left", box=None, pad_edge=False, header_style="bold",
                  title_style="bold")
    table.add_column("actual \\ predicted", no_wrap=True)
    for label in labels:
        table.add_column(label, justify="right", no_wrap=True)
    for label, row in zip(labels, matrix):
        total = sum(row) or 1
        table.add_row(label, *(f"{count:,} ({count / total:.0%})" for count in row))
    return table


def _rate(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def groups_view(payload: dict, palette: Palette) -> RenderableType:
    """One table per sensitive column: each group's size, rates and AUC (or MAE), and the
    demographic parity and equalized odds differences across its groups."""
    groups, fairness = payload.get("groups") or {}, payload.get("fairness") or {}
    if not groups:
        return Text("no data.sensitive columns: per-group metrics are measured over the columns "
                    "[data] sensitive names", palette.muted)
    regression = payload.get("task") == "regression"
    parts: list[RenderableType] = []
    for column, rows in groups.items():
        head = Text()
        head.append(f"\n{column}", "bold")
        for name, key in (("demographic parity diff", "demographic_parity_difference"),
                          ("equalized odds diff", "equalized_odds_difference")):
            value = (fairness.get(column) or {}).get(key)
            if value is not None:
                head.append(" · ")
                head.append(f"{name} {value:.3f}", palette.warn if value > FAIRNESS_WARN else palette.good)
        table = Table(box=None, pad_edge=False, header_style="bold")
        columns = ["group", "size", "base rate", "pred rate"] + (["MAE"] if regression else ["TPR", "FPR", "AUC"])
        for name in columns:
            table.add_column(name, justify="left" if name == "group" else "right", no_wrap=True)
        for row in rows:
            values = [str(row.get("group")), f"{row.get('size', 0):,}", _rate(row.get("base_rate")),
                      _rate(row.get("prediction_rate"))]
            values += [_rate(row.get("mae"))] if regression else [_rate(row.get(k)) for k in ("tpr", "fpr", "auc")]
            table.add_row(*values)
        parts += [head, table]
    return Group(*parts)


class EvaluationView(VerticalScroll):
    """Scrolls as one page: at 80x24 a person reads the summary, then scrolls to the curves."""

    DEFAULT_CSS = """
    EvaluationView { height: 1fr; background: $surface; padding: 0 1; }
    EvaluationView #eval-summary { height: auto; color: $foreground; }
    EvaluationView .eval-row { height: auto; }
    EvaluationView #eval-confusion { width: 1fr; height: auto; padding: 1 1 0 1; color: $foreground; }
    EvaluationView #eval-groups { height: auto; color: $foreground; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.payloads: dict[str, dict] = {}
        self.shown_stage: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(NO_EVALUATION, id="eval-summary")
        with Horizontal(classes="eval-row", id="eval-curves"):
            yield CurvePlot(id="eval-roc")
            yield CurvePlot(id="eval-pr")
        with Horizontal(classes="eval-row", id="eval-more"):
            yield CurvePlot(id="eval-calibration")
            yield Static(id="eval-confusion")
        yield CurvePlot(id="eval-residuals")
        yield Static(id="eval-groups")

    def on_mount(self) -> None:
        self._layout(None)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._text())

    def show(self, payloads: dict[str, dict] | None, problem: str | None = None) -> None:
        """Stage -> evaluation payload (the last stage's is drawn); empty or None: nothing was
        recorded, and `problem` says why when reading failed."""
        self.payloads = dict(payloads or {})
        self.shown_stage = list(self.payloads)[-1] if self.payloads else None
        payload = self.payloads.get(self.shown_stage) if self.shown_stage else None
        self._layout(payload)
        if payload is None:
            palette = Palette.of(self.app)
            self.query_one("#eval-summary", Static).update(
                Text(problem, palette.bad) if problem else Text(NO_EVALUATION, palette.muted))
            return
        self._text()
        roc, pr, cal = payload.get("roc"), payload.get("pr"), payload.get("calibration")
        if roc:
            self.query_one("#eval-roc", CurvePlot).curves(
                f"ROC · AUC {fmt.metric(roc.get('auc'))}", "FPR", "TPR",
                [(roc["fpr"], roc["tpr"], "ROC", "primary")], diagonal=True)
        if pr:
            self.query_one("#eval-pr", CurvePlot).curves(
                f"PR · AP {fmt.metric(pr.get('average_precision'))}", "recall", "precision",
                [(pr["recall"], pr["precision"], "PR", "accent")])
        if cal:
            self.query_one("#eval-calibration", CurvePlot).curves(
                f"reliability · ECE {fmt.metric(cal.get('ece'))}", "predicted", "observed",
                [(cal["prob_pred"], cal["prob_true"], "calibration", "secondary")], diagonal=True)
        residuals = (payload.get("regression") or {}).get("residuals")
        if residuals:
            self.query_one("#eval-residuals", CurvePlot).histogram(
                "residuals: label - prediction", "residual", residuals["edges"], residuals["counts"])

    def _layout(self, payload: dict | None) -> None:
        """Show the parts the payload has."""
        has = payload or {}
        self.query_one("#eval-curves").display = bool(has.get("roc") or has.get("pr"))
        self.query_one("#eval-roc").display = bool(has.get("roc"))
        self.query_one("#eval-pr").display = bool(has.get("pr"))
        self.query_one("#eval-more").display = bool(has.get("calibration") or has.get("confusion"))
        self.query_one("#eval-calibration").display = bool(has.get("calibration"))
        self.query_one("#eval-confusion").display = bool(has.get("confusion"))
        self.query_one("#eval-residuals").display = bool((has.get("regression") or {}).get("residuals"))
        self.query_one("#eval-groups").display = payload is not None

    def _text(self) -> None:
        payload = self.payloads.get(self.shown_stage) if self.shown_stage else None
        if payload is None:
            return
        palette = Palette.of(self.app)
        others = [stage for stage in self.payloads if stage != self.shown_stage]
        self.query_one("#eval-summary", Static).update(summary_text(self.shown_stage, payload, palette, others))
        if payload.get("confusion"):
            self.query_one("#eval-confusion", Static).update(confusion_table(payload["confusion"],
                                                                            payload.get("threshold")))
        self.query_one("#eval-groups", Static).update(groups_view(payload, palette))

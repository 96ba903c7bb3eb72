"""`d`: what changed between two runs: params, code (with text diffs), data, image, metrics."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from workbench.core.rundiff import RunDiff
from workbench.ui import format as fmt
from workbench.ui.widgets.run_views import Palette


class DiffScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    DiffScreen { align: center middle; }
    DiffScreen > VerticalScroll {
        width: 100%; height: 1fr; border: round $primary; background: $surface; padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape,q,d", "close", "Close", id="diff_close")]

    def __init__(self, diff: RunDiff, base_label: str, primary_metric: str | None = None,
                 maximize: bool = True) -> None:
        super().__init__()
        self.diff, self.base_label = diff, base_label
        self.primary_metric, self.maximize = primary_metric, maximize

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="diff-scroll") as scroll:
            scroll.border_title = (f"{self.diff.project} · run {self.diff.run} against run {self.diff.base}"
                                   f" ({self.base_label})")
            scroll.border_subtitle = "Esc closes"
            yield Static(self.render_diff(Palette.of(self.app)), id="diff-body")
        yield Footer(compact=True, show_command_palette=False)

    def render_diff(self, palette: Palette) -> RenderableType:
        diff = self.diff
        parts: list[RenderableType] = []

        def section(title: str, empty: str, rows: list) -> None:
            parts.append(Text(f"\n{title}", "bold underline"))
            if not rows:
                parts.append(Text(f"  {empty}", palette.muted))
                return
            table = Table(box=None, pad_edge=False, show_header=False, padding=(0, 1))
            table.add_column(no_wrap=True)
            table.add_column(overflow="fold")
            table.add_column(overflow="fold")
            for row in rows:
                table.add_row(*row)
            parts.append(table)

        mark = {"added": ("+", palette.good), "removed": ("-", palette.bad), "changed": ("~", palette.warn)}
        # The keys stages name (`params.toml:train.lr`, their cache keys' values) come first,
        # then what the stages logged.
        section("params", "no param changed", [
            (Text(f"  {mark[c.kind][0]}", mark[c.kind][1]), c.name,
             Text(f"{c.before if c.before is not None else '∅'} → {c.after if c.after is not None else '∅'}"))
            for c in [*diff.param_keys, *diff.params]])
        section("code", "no code file changed", [
            (Text(f"  {mark[c.kind][0]}", mark[c.kind][1]), c.name,
             Text(f"{fmt.short_hash(c.before)} → {fmt.short_hash(c.after)}", palette.muted)) for c in diff.code])
        for path, lines in diff.text_diffs.items():
            body = Text()
            for line in lines:
                tone = palette.good if line.startswith("+") else palette.bad if line.startswith("-") else \
                    palette.info if line.startswith("@@") else ""
                body.append("    " + line + "\n", tone)
            parts.append(body)
        section("data", "no data file changed", [
            (Text(f"  {mark[c.kind][0]}", mark[c.kind][1]), c.name,
             Text(f"{fmt.short_hash(c.before)} → {fmt.short_hash(c.after)}", palette.muted)) for c in diff.data])
        image = diff.image
        section("image", "same image", [] if image is None else [
            (Text("  ~", palette.warn), image.name, Text(f"{fmt.short_hash(image.before)} → {fmt.short_hash(image.after)}"))])
        rows = []
        for m in diff.metrics:
            delta = m.delta
            tone = palette.muted
            if delta and m.name == self.primary_metric:  # only its direction is known
                tone = palette.good if (delta > 0) == self.maximize else palette.bad
            elif delta:
                tone = palette.warn
            if m.before is None or m.after is None:
                change = "new" if m.before is None else "gone"
            else:
                change = f"{'+' if delta and delta > 0 else ''}{fmt.metric(delta)}" if delta else "="
            rows.append((Text(f"  {m.name}"), Text(f"{fmt.metric(m.before)} → {fmt.metric(m.after)}"), Text(change, tone)))
        section("metrics", "no metrics", rows)
        if diff.importance or diff.importance_note:
            section("feature importance (gain share)", diff.importance_note or "no feature moved",
                    _importance_rows(diff, palette))
        if diff.unchanged:
            parts.insert(0, Text("same code, data, params and image", palette.good))
        return Group(*parts)

    def action_close(self) -> None:
        self.dismiss(None)


IMPORTANCE_ROWS = 15
"""Features shown in the diff's importance section: those that moved, most important first."""


def _importance_rows(diff: RunDiff, palette: Palette) -> list[tuple]:
    """A row per feature whose gain rank changed (or that one model lacks), in the newer run's
    order: which way it moved, its rank and its share of the gain in each run."""
    rows = []
    for shift in diff.importance:
        change = shift.rank_change
        if change == 0:
            continue
        if change is None:
            mark = Text("  new" if shift.rank_before is None else "  gone", palette.warn)
        else:
            mark = Text(f"  ↑{change}" if change > 0 else f"  ↓{-change}", palette.good if change > 0 else palette.bad)
        rank = f"#{shift.rank_before or '∅'} → #{shift.rank_after or '∅'}"
        share = " → ".join(f"{v:.1%}" if v is not None else "∅" for v in (shift.share_before, shift.share_after))
        rows.append((mark, shift.feature, Text(f"{rank}   {share}", palette.muted)))
    if len(rows) > IMPORTANCE_ROWS:
        rows = rows[:IMPORTANCE_ROWS] + [(Text("  …"), f"{len(rows) - IMPORTANCE_ROWS} more moved", Text(""))]
    return rows

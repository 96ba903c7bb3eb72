"""Confirm a promotion or rollback: the dry run's decision, shown before anything changes.

What will happen (version N -> alias, replacing version M), every rule with ✓/✗ and its
numbers, the manifest's gates on the version's metrics, and champion/challenger on the primary
metric, then an optional one-line reason for the audit trail. A refused dry run says why (the
failed rules) and offers Close, or recording the refusal with the reason, as the CLI would.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from workbench.core.promotion import Decision
from workbench.ui import format as fmt
from workbench.ui.widgets.run_views import Palette


def _version(number: int | None) -> str:
    return f"version {number}" if number is not None else "nobody"


def headline(decision: Decision) -> str:
    """`Promote version 2 to production?`, or what cannot happen."""
    if decision.action == "rollback":
        what = f"Roll {decision.alias} back to {_version(decision.version)}"
    else:
        what = f"Promote version {decision.version} to {decision.alias}"
    return f"{what}?" if decision.allowed else f"Refused: {what[0].lower()}{what[1:]}"


def consequence(decision: Decision) -> str:
    """`production: version 2 replaces version 1` (or, refused, the decision's reasons)."""
    if not decision.allowed:
        return f"Nothing changes. {decision.message}"
    if decision.from_version is None:
        return f"{decision.alias}: {_version(decision.version)} (nobody holds it now)"
    return f"{decision.alias}: {_version(decision.version)} replaces version {decision.from_version}"


def decision_view(decision: Decision, palette: Palette) -> Group:
    """Checks, gates and the comparison, as Rich renderables (also handy in tests)."""
    parts = []

    def mark(passed: bool | None) -> Text:
        return Text(*{True: ("✓", palette.good), False: ("✗", palette.bad)}.get(passed, ("–", palette.muted)))

    checks = Table.grid(padding=(0, 1))
    checks.add_column(no_wrap=True)
    checks.add_column(no_wrap=True, style="bold")
    checks.add_column(overflow="fold")
    for check in decision.checks:
        checks.add_row(mark(check.passed), check.label, check.detail)
    parts += [Text("Checks", "bold underline"), checks]

    if decision.gates:
        gates = Table.grid(padding=(0, 1))
        gates.add_column(no_wrap=True)
        gates.add_column(no_wrap=True)
        gates.add_column(overflow="fold")
        for gate in decision.gates:
            gates.add_row(mark(gate.passed), gate.rule, gate.detail or fmt.metric(gate.value))
        parts += [Text(""), Text("Gates", "bold underline"), gates]

    c = decision.comparison
    if c is not None:
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, justify="right")
        table.add_row(f"champion ({_version(c.champion_version)}, production)", fmt.metric(c.champion_value))
        table.add_row(f"challenger (version {c.challenger_version})", fmt.metric(c.challenger_value))
        # One sign convention with the `champion` check above: + is better, in the metric's
        # direction (challenger − champion when higher is better, champion − challenger when lower).
        table.add_row("delta (+ is better)", fmt.signed(c.improvement))
        tone = {"better": palette.good, "equal": palette.good, "worse within tolerance": palette.warn,
                "worse": palette.bad}.get(c.verdict, palette.muted)
        table.add_row("verdict", Text(c.verdict, tone))
        goal = "higher" if c.goal == "maximize" else "lower"
        parts += [Text(""), Text(f"Champion/challenger · {c.metric} ({goal} is better, tolerance {c.tolerance:g})",
                                 "bold underline"), table]
    return Group(*parts)


class PromoteScreen(ModalScreen[str | None]):
    """The decision, a one-line reason for the audit trail, and the answer.

    Dismissed with the reason (`""` when none was typed) to go ahead, or None to leave
    everything as it is. Going ahead with a refused decision records the refusal (the CLI
    records every refused attempt; here the preview was a dry run, so it takes a yes).
    Focus starts on No, so Enter alone never promotes; Tab reaches the reason, where Enter
    answers yes.
    """

    DEFAULT_CSS = """
    PromoteScreen { align: center middle; }
    PromoteScreen > Vertical {
        width: 96; max-width: 96%; height: auto; max-height: 100%; margin: 1 0;
        border: thick $warning; background: $panel; padding: 0 2;
    }
    PromoteScreen.-refused > Vertical { border: thick $error; }
    PromoteScreen #promote-title { text-style: bold; color: $warning; }
    PromoteScreen.-refused #promote-title { color: $error; }
    PromoteScreen #promote-what { margin-bottom: 1; }
    PromoteScreen VerticalScroll { height: auto; }
    PromoteScreen Horizontal { height: auto; margin-top: 1; }
    PromoteScreen #reason { width: 1fr; }
    PromoteScreen Button { margin-left: 1; min-width: 10; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="promote_yes"),
        Binding("n,escape", "answer(False)", "No", id="promote_no"),
        # The details scroll from anywhere: the buttons and the reason do not use these keys.
        Binding("up", "scroll('up')", "Scroll up", show=False, id="promote_scroll_up"),
        Binding("down", "scroll('down')", "Scroll down", show=False, id="promote_scroll_down"),
        Binding("pageup", "scroll('page_up')", "Page up", show=False, id="promote_page_up"),
        Binding("pagedown", "scroll('page_down')", "Page down", show=False, id="promote_page_down"),
    ]
    DETAIL_ROWS = 24
    """The details' height at most; on a short terminal, what is left (they scroll)."""

    def __init__(self, preview: Decision) -> None:
        super().__init__()
        self.preview = preview

    def compose(self) -> ComposeResult:
        preview = self.preview
        with Vertical(id="promote-dialog"):
            yield Static(headline(preview), id="promote-title", markup=False)
            yield Static(consequence(preview), id="promote-what", markup=False)
            with VerticalScroll(can_focus=False):
                yield Static(id="promote-detail")
            with Horizontal():
                yield Input(placeholder="audit reason (optional)", id="reason",
                            tooltip="Kept with the audit row (workbench history); Enter answers yes")
                if preview.allowed:
                    verb = "Roll back" if preview.action == "rollback" else "Promote"
                    yield Button(f"{verb} (y)", variant="warning", id="yes")
                    yield Button("No (n)", id="no")
                else:
                    yield Button("Record refusal (y)", variant="error", id="yes")
                    yield Button("Close (esc)", id="no")

    def on_mount(self) -> None:
        self.set_class(not self.preview.allowed, "-refused")
        self.query_one("#promote-detail", Static).update(decision_view(self.preview, Palette.of(self.app)))
        self.query_one("#no", Button).focus()
        self.call_after_refresh(self._fit)

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit)

    def _fit(self) -> None:
        """Give the details the rows the rest of the dialog leaves (the headline may wrap), so
        the reason and the buttons show on any terminal, 80x24 included."""
        dialog = self.query_one("#promote-dialog")
        details = self.query_one(VerticalScroll)
        rest = sum(w.outer_size.height + w.styles.margin.height for w in dialog.children if w is not details)
        room = self.size.height - dialog.styles.margin.height - dialog.styles.gutter.height - rest
        details.styles.max_height = max(3, min(self.DETAIL_ROWS, room))

    @property
    def reason(self) -> str:
        return self.query_one("#reason", Input).value.strip()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id == "yes")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_answer(True)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(self.reason if yes else None)

    def action_scroll(self, where: str) -> None:
        getattr(self.query_one(VerticalScroll), f"scroll_{where}")()

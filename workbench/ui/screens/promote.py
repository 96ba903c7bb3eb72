"""Confirm a promotion or rollback: the dry run's decision, shown before anything changes.

What will happen (version N -> alias, replacing version M), every rule with ✓/✗ and its
numbers, the manifest's gates on the version's metrics, and champion/challenger on the primary
metric. A refused dry run offers only Close: the failed rules say why.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

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
        checks.add_row(mark(check.passed), check.rule, check.detail)
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
        delta = "—" if c.delta is None else f"{c.delta:+.4g}"
        table.add_row("delta (challenger − champion)", delta)
        tone = {"better": palette.good, "equal": palette.good, "worse within tolerance": palette.warn,
                "worse": palette.bad}.get(c.verdict, palette.muted)
        table.add_row("verdict", Text(c.verdict, tone))
        goal = "higher" if c.goal == "maximize" else "lower"
        parts += [Text(""), Text(f"Champion/challenger · {c.metric} ({goal} is better, tolerance {c.tolerance:g})",
                                 "bold underline"), table]
    return Group(*parts)


class PromoteScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    PromoteScreen { align: center middle; }
    PromoteScreen > Vertical {
        width: 96; max-width: 96%; height: auto; max-height: 90%;
        border: thick $warning; background: $panel; padding: 1 2;
    }
    PromoteScreen.-refused > Vertical { border: thick $error; }
    PromoteScreen #promote-title { text-style: bold; color: $warning; }
    PromoteScreen.-refused #promote-title { color: $error; }
    PromoteScreen #promote-what { margin-bottom: 1; }
    PromoteScreen VerticalScroll { height: auto; max-height: 24; }
    PromoteScreen Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    PromoteScreen Button { margin-left: 2; min-width: 12; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="promote_yes"),
        Binding("n,escape", "answer(False)", "No", id="promote_no"),
    ]

    def __init__(self, preview: Decision) -> None:
        super().__init__()
        self.preview = preview

    def compose(self) -> ComposeResult:
        preview = self.preview
        with Vertical():
            yield Static(headline(preview), id="promote-title", markup=False)
            yield Static(consequence(preview), id="promote-what", markup=False)
            with VerticalScroll():
                yield Static(id="promote-detail")
            with Horizontal():
                if preview.allowed:
                    verb = "Roll back" if preview.action == "rollback" else "Promote"
                    yield Button(f"{verb} (y)", variant="warning", id="yes")
                    yield Button("No (n)", id="no")
                else:
                    yield Button("Close (esc)", id="no")

    def on_mount(self) -> None:
        self.set_class(not self.preview.allowed, "-refused")
        self.query_one("#promote-detail", Static).update(decision_view(self.preview, Palette.of(self.app)))
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        if yes and not self.preview.allowed:
            return  # a refusal has nothing to confirm
        self.dismiss(yes)

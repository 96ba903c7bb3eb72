"""Every one-key action of the app, in one table: the footer, the help screen, the command
palette and the config's `[keys]` validation all read it, so they cannot disagree.

An action's id is what a user remaps in config (`[keys] run_now = "f5"`); `scope` says which
object runs it: the main screen (project and run actions) or the app (help, theme, quit).
The promotion keys (`promote_staging`, `promote_production`, `rollback`, `rollback_staging`) act on the Models tab
of the run detail; they stay out of the footer (it must fit 80 columns) but not out of help.
Their confirmation screen takes an optional reason, kept in the audit row as the CLI's --reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    id: str
    key: str
    """Default key(s), Textual names, comma-separated."""
    label: str
    """Short, for the footer."""
    description: str
    """For the help screen and the command palette."""
    scope: str = "screen"
    show: bool = True
    key_display: str | None = None


ACTIONS: tuple[Action, ...] = (
    Action("run_now", "r", "Run", "Run the selected project now (supersedes a run in flight)"),
    Action("toggle_watch", "w", "Watch", "Start or stop watching the selected project's files"),
    Action("cancel_run", "c", "Cancel", "Cancel the selected project's run in flight"),
    Action("rerun_cold", "R", "Cold", "Rerun the selected run cold, nothing reused, and compare (reproducibility)"),
    Action("open_diff", "d", "Diff", "Diff code, data and params: selected run against the marked or previous run"),
    Action("mark_run", "m", "Mark", "Mark the selected run as the diff base (press again to unmark)"),
    Action("pick_run", "space", "Pick", "Pick the selected run for compare, C (press again to unpick)",
           show=False, key_display="Space"),
    Action("open_compare", "C", "Compare", "Compare runs side by side (params x metrics, sortable, charts): the "
           "picked (Space) and marked runs, else the filtered or newest ones", show=False),
    # The compare view's keys (workbench/ui/screens/compare.py).
    Action("compare_sort", "s", "Sort", "Compare view: sort by the column under the cursor (again: the other way; "
           "a click on a header too)", scope="compare"),
    Action("compare_metric", "m", "Metric", "Compare view: chart the next metric (moving onto a metric column "
           "charts it too)", scope="compare"),
    Action("compare_against", "x", "Against", "Compare view: chart the metric against the param under the cursor "
           "(again: across runs; off a param column: the next param in turn)", scope="compare"),
    Action("filter", "slash", "Filter", "Filter runs by id, status, trigger or runner", key_display="/"),
    Action("drift", "D", "Drift", "Drift checks of the selected project: batches, column scores, retrains",
           show=False),
    # Promotion keys act on the version under the cursor in the Models tab; each asks first.
    Action("promote_staging", "s", "Staging", "Promote the selected model version to staging (shows the gates, "
           "asks first, takes a reason for the audit trail)", show=False),
    Action("promote_production", "p", "Prod", "Promote the selected model version to production (gates and "
           "champion/challenger, asks first, takes a reason)", show=False),
    Action("rollback", "b", "Rollback", "Roll production back to the version it replaced (asks first, takes a "
           "reason)", show=False),
    Action("rollback_staging", "B", "Rollback stg", "Roll staging back to the version it replaced (asks first, "
           "takes a reason)", show=False),
    Action("switch_theme", "t", "Theme", "Pick a theme (the choice is remembered)", scope="app"),
    Action("help", "question_mark,f1", "Help", "Show every key and action id", scope="app", key_display="?"),
    Action("quit", "q", "Quit", "Quit (asks first while a run is in flight)", scope="app"),
)
ACTION_IDS: tuple[str, ...] = tuple(a.id for a in ACTIONS)
BY_ID = {a.id: a for a in ACTIONS}


def bindings(scope: str) -> list[Binding]:
    """Textual bindings for one scope; each carries its action id, so a keymap can remap it."""
    return [Binding(a.key, a.id, a.label, show=a.show, key_display=a.key_display, id=a.id, tooltip=a.description)
            for a in ACTIONS if a.scope == scope]

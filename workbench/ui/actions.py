"""Every one-key action of the app, in one table: the footer, the help screen, the command
palette and the config's `[keys]` validation all read it, so they cannot disagree.

An action's id is what a user remaps in config (`[keys] run_now = "f5"`); `scope` says which
object runs it: the main screen (project and run actions) or the app (help, theme, quit).
The promotion keys (`promote_staging`, `promote_production`, `rollback`, `rollback_staging`) act on the Models tab
of the run detail. Their confirmation screen takes an optional reason, kept in the audit row as the CLI's --reason.

The footer shows the keys of the focused view, as k9s and lazygit do: a screen action's key
works wherever the focus is (its screen binding, hidden), and the views named in its `views`
carry a shown copy (`view_bindings`), so the Models tab's focus shows s p b B, the projects
pane's shows D, H and S, the run detail's other tabs R d m, and every footer fits 80 columns. App actions always show.
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
    views: tuple[str, ...] = ()
    """The views whose footer shows this key while they hold the focus (see view_bindings)."""


PROJECT, RUNS, MODELS, DETAIL = "projects", "runs", "models", "detail"
"""DETAIL: the run detail's tabs about the run (all but Models, whose footer holds s p b B)."""
DETAIL_TABS = (("stages", "Stages"), ("log", "Log"), ("metrics", "Metrics"), ("gates", "Gates"),
               ("evaluation", "Evaluation"), ("explanations", "Explanations"), ("validation", "Validation"),
               ("lineage", "Lineage"), ("models", "Models"))
"""The run detail's tabs in order: (tab id, what it shows); key n opens the nth."""

ACTIONS: tuple[Action, ...] = (
    Action("run_now", "r", "Run", "Run the selected project now (supersedes a run in flight)", views=(PROJECT, RUNS)),
    Action("toggle_watch", "w", "Watch", "Start or stop watching the selected project's files",
           views=(PROJECT,)),  # not in the runs footer too: it must fit 80 columns
    Action("cancel_run", "c", "Cancel", "Cancel the selected project's run in flight", views=(PROJECT, RUNS)),
    Action("rerun_cold", "R", "Cold", "Rerun the selected run cold, nothing reused, and compare (reproducibility)",
           views=(RUNS, DETAIL)),
    Action("open_diff", "d", "Diff", "Diff code, data and params: selected run against the marked or previous run",
           views=(RUNS, DETAIL)),
    Action("mark_run", "m", "Mark", "Mark the selected run as the diff base (press again to unmark)", views=(RUNS, DETAIL)),
    Action("pick_run", "space", "Pick", "Pick the selected run for compare, C (press again to unpick)",
           show=False, key_display="Space"),
    Action("open_compare", "C", "Compare", "Compare runs side by side (params x metrics, sortable, charts): the "
           "picked (Space) and marked runs, else the filtered or newest ones", views=(RUNS,)),
    # Not in the runs footer (it must fit 80 columns): the help screen and the palette list it.
    Action("open_sweep", "W", "Sweep", "The selected run's sweep (a trial's run): the compare view on all its "
           "trials as they run, the best so far, the metric against each param", show=False),
    # The compare view's keys (workbench/ui/screens/compare.py).
    Action("compare_sort", "s", "Sort", "Compare view: sort by the column under the cursor (again: the other way; "
           "a click on a header too)", scope="compare"),
    Action("compare_metric", "m", "Metric", "Compare view: chart the next metric (moving onto a metric column "
           "charts it too)", scope="compare"),
    Action("compare_against", "x", "Against", "Compare view: chart the metric against the param under the cursor "
           "(again: across runs; off a param column: the next param in turn)", scope="compare"),
    # The Serving view's key (workbench/ui/screens/serving.py).
    Action("serving_stop", "x", "Stop serving", "Serving view: stop the servers this app started (asks first; "
           "another `workbench serve`'s are status only)", scope="serving"),
    Action("filter", "slash", "Filter", "Filter runs by id, status, trigger or runner", key_display="/",
           views=(RUNS,)),
    Action("drift", "D", "Drift", "Drift checks of the selected project: batches, column scores, retrains",
           views=(PROJECT,)),
    Action("history", "H", "History", "The selected project's audit trail: every promotion, rollback and refusal, "
           "and whether the trail verifies", views=(PROJECT,)),
    Action("serve", "S", "Serve", "Serve the selected project's production (and staging) model and watch it: "
           "req/s, p50/p95/p99 and errors per version, charts (servers started here stop when the app quits)",
           views=(PROJECT,)),
    # Promotion keys act on the version under the cursor in the Models tab; each asks first.
    Action("promote_staging", "s", "Staging", "Promote the selected model version to staging (shows the gates, "
           "asks first, takes a reason for the audit trail)", views=(MODELS,)),
    Action("promote_production", "p", "Prod", "Promote the selected model version to production (gates and "
           "champion/challenger, asks first, takes a reason)", views=(MODELS,)),
    Action("rollback", "b", "Rollback", "Roll production back to the version it replaced (asks first, takes a "
           "reason)", views=(MODELS,)),
    Action("rollback_staging", "B", "Rollback stg", "Roll staging back to the version it replaced (asks first, "
           "takes a reason)", views=(MODELS,)),
    *(Action(f"tab_{tab}", str(n), what, f"Run detail: open the {what} tab", show=False)
      for n, (tab, what) in enumerate(DETAIL_TABS, start=1)),
    Action("switch_theme", "t", "Theme", "Pick a theme (the choice is remembered)", scope="app"),
    Action("help", "question_mark,f1", "Help", "Show every key and action id", scope="app", key_display="?"),
    Action("quit", "q", "Quit", "Quit (asks first while a run is in flight)", scope="app"),
)
ACTION_IDS: tuple[str, ...] = tuple(a.id for a in ACTIONS)
BY_ID = {a.id: a for a in ACTIONS}


def bindings(scope: str) -> list[Binding]:
    """Textual bindings for one scope; each carries its action id, so a keymap can remap it.
    A screen action shown by views is hidden here: its views show it while focused."""
    return [Binding(a.key, a.id, a.label, show=a.show and not a.views, key_display=a.key_display, id=a.id,
                    tooltip=a.description)
            for a in ACTIONS if a.scope == scope]


def view_bindings(view: str) -> list[Binding]:
    """The shown copies of the screen actions `view` lists in the footer while it has the focus;
    they call the screen's action, so the key does the same thing wherever it is pressed."""
    return [Binding(a.key, f"screen.{a.id}", a.label, key_display=a.key_display, id=a.id, tooltip=a.description)
            for a in ACTIONS if view in a.views]

"""The main screen: projects, their runs, the selected run's detail; its layout, the wiring of
the panes (selection, the filter box, the status line) and the worker plumbing. The keys and
the service events are handled by the mixins it is made of:

- run_actions.RunActions: run now, watch, cancel, rerun cold, mark, diff, drift;
- model_actions.ModelActions: the Models tab, aliases, the MLflow mirror, promotion and rollback;
- detail_keys.DetailKeys: the run detail's tab keys and the audit history;
- service_events.ServiceEvents: runs starting, streaming and finishing; watch and drift events.

Everything slow (the lineage store, Docker, the watch service) runs in thread workers through
`_in_thread`, whose results come back as WorkDone / WorkFailed messages (to the `_done_<kind>`
method of whichever part asked); service events arrive as ServiceEvent / LogLines messages
from the EventBridge. The UI thread never waits on either.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, OptionList, Static

from workbench.core.errors import WorkbenchError
from workbench.core.ports import CancelToken
from workbench.ui.actions import bindings
from workbench.ui.live import LiveRun
from workbench.ui.messages import Notice, WorkDone, WorkFailed
from workbench.ui.screens import loaders
from workbench.ui.screens.alert_status import ALERTS_EVERY_S, AlertStatus
from workbench.ui.screens.cluster_status import CLUSTER_EVERY_S, ClusterStatus
from workbench.ui.screens.detail_keys import DetailKeys
from workbench.ui.screens.drift import DriftScreen
from workbench.ui.screens.model_actions import ModelActions
from workbench.ui.screens.run_actions import RunActions
from workbench.ui.screens.service_events import ServiceEvents
from workbench.ui.screens.sweep import SweepScreen
from workbench.ui.widgets.projects import ProjectRow, ProjectsList
from workbench.ui.widgets.run_detail import RunDetail
from workbench.ui.widgets.runs_table import RunsTable
from workbench.ui.widgets.trend import TrendLine

log = logging.getLogger(__name__)
DETAIL_DELAY_S = 0.08
"""Wait this long after the cursor stops before loading a run's detail (holding ↓ loads none)."""
FILTER_DELAY_S = 0.15
MIRROR_EVERY_S = 10.0


class MainScreen(RunActions, ModelActions, DetailKeys, ServiceEvents, ClusterStatus, AlertStatus, Screen):
    BINDINGS = bindings("screen") + [Binding("escape", "escape", "Back", show=False)]

    def __init__(self, session, watch, bridge, watch_on_start: bool = True) -> None:
        super().__init__()
        self.session, self.watch, self.bridge = session, watch, bridge
        self.watch_on_start = watch_on_start
        self.project: ProjectRow | None = None
        self.live: dict[int, LiveRun] = {}
        self.cold_runs: dict[str, CancelToken] = {}
        """Project -> the token of its cold rerun (R) in flight: `c` cancels it."""
        self.runner_name = "…"
        self._detail_timer: Timer | None = None
        self._reload_timer: Timer | None = None
        self._filter_timer: Timer | None = None
        self._trend_for: str | None = None
        self._generation: dict[str, tuple] | None = None
        """What the store held at the last poll (see _poll_workspace)."""
        self._polling = False
        self._projects_asked = self._projects_shown = 0
        """The number of the last projects read asked for, and of the one on screen."""
        self.mirror = ""
        """The MLflow mirror's state in a few words, for the status line and the Models tab."""

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Horizontal(id="top"):
            yield ProjectsList(id="projects")
            with Vertical(id="runs-pane"):
                yield TrendLine(id="trend")
                yield Input(placeholder="filter runs: failed  watch  42 … (Enter keeps, Esc clears)", id="filter")
                yield RunsTable(self.session, id="runs")
        yield RunDetail(id="detail")
        yield Footer(compact=True, show_command_palette=False)

    @property
    def projects(self) -> ProjectsList:
        return self.query_one(ProjectsList)

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    @property
    def detail(self) -> RunDetail:
        return self.query_one(RunDetail)

    def on_mount(self) -> None:
        self.bridge.target = self
        self.projects.border_title = "Projects"
        self.query_one("#runs-pane").border_title = "Runs"
        self.detail.border_title = "Run"
        self._status()
        self.projects.focus()
        self._in_thread("start", None, loaders.read_start, self.session, self.watch, group="projects")
        # Docker, recovery and watching start once the first runs are on screen (or after a
        # second): they contend for the same store, and first paint matters more.
        self._services_timer: Timer | None = self.set_timer(1.0, self._start_services)
        self.set_interval(1.0, self._tick)
        self.set_interval(MIRROR_EVERY_S, self._read_mirror)
        self.set_interval(CLUSTER_EVERY_S, self._read_cluster)
        self.set_interval(ALERTS_EVERY_S, self._read_alerts)

    def _start_services(self) -> None:
        if self._services_timer is None:
            return
        self._services_timer.stop()
        self._services_timer = None
        self._in_thread("services", None, loaders.start_services, self.session, self.watch, self.watch_on_start)

    # -- workers ------------------------------------------------------------------------------

    def _in_thread(self, kind: str, key, fn, *args, group: str | None = None) -> None:
        """Run fn(*args) on a worker thread; its result comes back as WorkDone(kind, result, key)."""

        def work() -> None:
            try:
                result = fn(*args)
            except WorkbenchError as exc:
                self.post_message(WorkFailed(kind, str(exc), key))
            except Exception as exc:  # a bug must not take the app down
                log.exception("%s failed", kind)
                self.post_message(WorkFailed(kind, f"internal error: {exc!r}", key))
            else:
                self.post_message(WorkDone(kind, result, key))

        self.run_worker(work, thread=True, group=group or kind, exit_on_error=False, name=kind)

    def on_work_done(self, message: WorkDone) -> None:
        handler = getattr(self, f"_done_{message.kind}", None)
        if handler is not None:
            handler(message.payload, message.key)

    def on_work_failed(self, message: WorkFailed) -> None:
        if message.kind == "generation":  # the next tick asks again; the panes say what is wrong
            self._polling = False
            log.warning("polling the workspace failed: %s", message.error)
            return
        title = "projects" if message.kind == "start" else message.kind.replace("_", " ")
        self.notify(message.error, title=title, severity="error", timeout=8)
        if message.kind == "run" and message.key == self._wanted_run():
            self.detail.clear(f"✗ {message.error}")
        elif message.kind in ("projects", "start"):
            self.query_one("#status", Static).update(Text(f" ✗ {message.error}", "bold red"))

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, title=message.title, severity=message.severity, timeout=8)

    def _done_start(self, payload, _key) -> None:
        generation, rows = payload
        if self._generation is None:
            self._generation = generation
        self._done_projects(rows, None)

    def _done_projects(self, rows: list[ProjectRow], asked) -> None:
        if asked is not None:
            if asked < self._projects_shown:
                return
            self._projects_shown = asked
        known = self.projects.rows
        fresh: dict[str, ProjectRow] = {}
        for key, row in ProjectsList.keyed(rows).items():
            # What this app learnt from events is newer than what the worker read.
            old = known.get(key) if key in known and known[key].path == row.path else None
            # Runs of this app: its events say when they start and end (the watch service may
            # still be settling a run that ended); another process's run shows by its status.
            busy = (old.busy if old is not None else row.busy) or self._has_run_in_flight(row.name)
            fresh[key] = replace(row, busy=busy, production=old.production if old else None,
                                 staging=old.staging if old else None, note=old.note if old else row.note)
        if [(k, r.path) for k, r in fresh.items()] == [(k, r.path) for k, r in known.items()]:
            for key, row in fresh.items():  # the same projects: redraw rows in place (the list keeps its scroll)
                if row != known[key]:
                    self.projects.update_row(key, **{f: getattr(row, f) for f in row.__dataclass_fields__
                                                     if f != "name"})
        else:
            self.projects.set_rows(list(fresh.values()))
            self._load_all_aliases()
        self._reselect()
        if not rows:
            self._start_services()
            self.detail.clear(f"no projects (folders with a workbench.toml) in {self.session.workspace.root}")
            self.table.show(None)

    def _done_services(self, result, _key) -> None:
        self.runner_name, interrupted, problems = result
        for problem in problems:
            self.notify(problem, severity="error", timeout=10)
        if interrupted:
            self.notify(f"marked run(s) {', '.join(map(str, interrupted))} interrupted: the workbench that ran "
                        "them stopped", severity="warning")
        self._status()
        self._read_mirror()
        self._read_cluster()
        self._read_alerts()

    def _done_run(self, payload, run_id) -> None:
        if run_id != self._wanted_run():
            return  # the cursor moved on
        record, report, insights = payload
        self.detail.show_record(record, report, self.live.get(run_id), insights)
        self.detail.border_title = f"Run {record.id}"

    def _done_trend(self, values, project) -> None:
        if self.project and project == self.project.name:
            self.query_one(TrendLine).show(self.project.primary_metric, self.project.maximize, values)

    # -- selection ----------------------------------------------------------------------------

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        row = self.projects.rows.get(event.option.id)
        if row is None or (self._same_project(row) and self.table.project == row.name):
            return
        self._select(row)

    def _same_project(self, row: ProjectRow) -> bool:
        old = self.project
        return old is not None and (old.name, old.path, old.error, old.primary_metric, old.maximize) == \
            (row.name, row.path, row.error, row.primary_metric, row.maximize)

    def _reselect(self) -> None:
        """The projects were read again: act on the selected project as it is now. A manifest
        broken, fixed or renamed (a name clash resolved) shows its runs, error and trend anew;
        the keys (`r`) then act on the current state, not on the row read before."""
        row = self.projects.selected
        if row is None or self.project is None:
            return
        if self._same_project(row):
            self.project = row
        else:
            self._select(row)

    def _select(self, row: ProjectRow) -> None:
        self.project = row
        self._show_runs()
        self._trend_for = None  # read once its first runs are on screen (see _after_first_rows)
        trend = self.query_one(TrendLine)
        if row.error:  # no runs can be read for it: loading… would never end
            trend.say("no trend until the manifest is fixed")
        else:
            trend.loaded, trend.note = False, None  # not the previous project's values meanwhile
            trend.refresh()
        self._status()

    def on_option_list_option_selected(self, _event: OptionList.OptionSelected) -> None:
        self.table.focus()

    def _show_runs(self) -> None:
        row, match = self.project, self.query_one("#filter", Input).value.strip() or None
        if row is None:
            return
        self.table.show(row.name, match, row.primary_metric)
        self._runs_title()
        if row.error:
            self.detail.clear(f"✗ {row.error}")

    def _runs_title(self) -> None:
        row, table = self.project, self.table
        if row is None:
            return
        count = f"{table.total:,}" if table.loaded else "…"
        title = f"Runs · {row.name} · {count}"
        if table.match:
            title += f" matching “{table.match}”"
        self.query_one("#runs-pane").border_title = title

    def _after_first_rows(self) -> None:
        """What can wait until a project's first runs are drawn (it contends for the store)."""
        self._start_services()
        row = self.project
        if row is not None and self._trend_for != row.name:
            self._trend_for = row.name
            self._load_trend(row.name)
            self._load_models(row.name)

    def on_runs_table_highlighted(self, message: RunsTable.Highlighted) -> None:
        self._after_first_rows()
        self._runs_title()
        if self._detail_timer is not None:
            self._detail_timer.stop()
        if message.run is None:
            self.detail.clear("no runs yet: r runs the project" if not self.table.match else "no run matches the filter")
            self.detail.border_title = "Run"
            return
        self._detail_timer = self.set_timer(DETAIL_DELAY_S, partial(self._load_detail, message.run.id))

    def on_runs_table_counted(self, _message: RunsTable.Counted) -> None:
        self._runs_title()

    def on_runs_table_selected(self, message: RunsTable.Selected) -> None:
        if self._detail_timer is not None:  # loading now: the delayed load would read it again
            self._detail_timer.stop()
        if self.detail.run_id != message.run.id or message.run.status == "running":
            self._load_detail(message.run.id)
        # Into the open tab's content (RunDetail itself takes no focus: focusing it did nothing).
        self.detail.focus_content()

    def _wanted_run(self) -> int | None:
        run = self.table.current
        return run.id if run is not None else None

    def _load_projects(self) -> None:
        # Reads run on worker threads and may finish out of order: each carries its number, and
        # one older than what the pane shows is dropped (a manifest broken then fixed must not
        # end on "broken").
        self._projects_asked += 1
        self._in_thread("projects", self._projects_asked, loaders.read_projects, self.session, self.watch)

    def _load_trend(self, project: str) -> None:
        self._in_thread("trend", project, loaders.read_trend, self.session, project)

    def _load_detail(self, run_id: int) -> None:
        self._in_thread("run", run_id, loaders.read_run, self.session, run_id, group="detail")

    def _load_all_aliases(self) -> None:
        names = [name for name, row in self.projects.rows.items() if not row.error]
        if names:
            self._in_thread("all_aliases", None, loaders.read_all_aliases, self.session, names)

    def _done_all_aliases(self, found: dict[str, dict[str, int]], _key) -> None:
        for name, aliases in found.items():
            self._done_aliases(aliases, name)

    # -- the workspace, as any process changes it ---------------------------------------------

    def _poll_workspace(self) -> None:
        """Once a second (from _tick): has any process (this one, a CLI, another TUI) recorded
        something? One cheap read on a worker; only the panes whose part changed read again."""
        if self._polling:
            return
        self._polling = True
        self._in_thread("generation", None, loaders.read_generation, self.session)

    def _done_generation(self, generation: dict[str, tuple] | None, _key) -> None:
        self._polling = False
        if generation is None:
            return
        previous, self._generation = self._generation, generation
        if previous is None:
            # The first answer: what the panes read at start may be older than it.
            changed = set(generation)
        else:
            changed = {part for part, value in generation.items() if previous.get(part) != value}
        if changed:
            self._workspace_changed(changed)

    def _workspace_changed(self, parts: set[str]) -> None:
        row = self.project
        if "runs" in parts:
            self._load_projects()  # each project's last status
            if row is not None:
                self._project_changed(row.name, trend=True)
            record = self.detail.record
            if record is not None and str(record.status) == "running":
                self._load_detail(record.id)  # a run of another process: its outcome
        if parts & {"runs", "registry"}:
            self._load_all_aliases()
            if row is not None:
                self._load_models(row.name)
        if "projects" in parts and "runs" not in parts:
            self._load_projects()  # a folder made, removed or renamed, a manifest edited
        if "runs" in parts and isinstance(self.app.screen, SweepScreen):
            self.app.screen.reload()  # a trial started or ended: the sweep view reads its trials again
        if "drift" in parts:
            screen = self.app.screen
            if isinstance(screen, DriftScreen) and hasattr(screen, "reload"):
                screen.reload()

    # -- what the keys act on -----------------------------------------------------------------

    def _runnable(self) -> ProjectRow | None:
        row = self.project
        if row is None:
            self.notify("no project selected", severity="warning")
        elif row.error:
            self.notify(f"{row.name}: fix the manifest first: {row.error}", severity="error", timeout=10)
            return None
        return row

    def _has_run_in_flight(self, project: str) -> bool:
        """Whether this app has seen a run of the project start and not yet finish."""
        return any(not live.finished for live in self.live.values() if live.project == project)

    def busy_projects(self) -> list[str]:
        return sorted({l.project for l in self.live.values() if not l.finished})

    # -- the filter box (`/`, ids in workbench/ui/actions.py) ---------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-visible")
        box.focus()

    def action_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("-visible"):
            had_filter = bool(box.value)
            box.value = ""
            box.remove_class("-visible")
            self.table.focus()
            if had_filter:
                self._show_runs()
        elif self.detail.has_focus_within:  # back from the run's detail to the runs
            self.table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY_S, self._show_runs)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.remove_class("-visible")
        self.table.focus()

    # -- status line --------------------------------------------------------------------------

    def _status(self) -> None:
        """` workbench  ~/ws  runner docker  watching 1 of 3          ? keys · ctrl+p commands`;
        the workspace path gives way first (from its left) when the terminal is narrow."""
        rows = self.projects.rows.values()
        watched = sum(1 for row in rows if row.watching)
        facts = Text(f"  runner {self.runner_name}")
        if self.cluster_text is not None:
            facts.append_text(self.cluster_text)
        if rows:
            facts.append(f"  watching {watched} of {len(rows)}")
        if self.mirror:  # the Models tab has the whole error
            facts.append(f"  {self.mirror if len(self.mirror) <= 32 else self.mirror[:31] + '…'}")
        facts.append(self.alerts_fact(), "bold red" if self.alerts_pending else "")
        hint = "? keys · ctrl+p commands "
        width = self.query_one("#status", Static).size.width or self.app.size.width
        path = str(self.session.workspace.root)
        home = str(Path.home())
        if path.startswith(home + "/"):
            path = "~" + path[len(home):]
        room = width - len(" workbench  ") - len(facts) - len(hint) - 2
        if len(path) > room:
            path = "…" + path[-max(room - 1, 0):] if room > 1 else ""
        text = Text(no_wrap=True, overflow="crop")
        text.append(" workbench ", "bold")
        text.append(f" {path}")
        text.append_text(facts)
        gap = width - len(text) - len(hint)
        if gap > 0:
            text.append(" " * gap)
            text.append(hint, "dim")
        self.query_one("#status", Static).update(text)

    def on_resize(self) -> None:
        self._status()

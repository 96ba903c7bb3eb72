"""The main screen: projects, their runs, the selected run's detail; the one-key actions.

Everything slow (the lineage store, Docker, the watch service) runs in thread workers through
`_in_thread`, whose results come back as WorkDone / WorkFailed messages; service events arrive
as ServiceEvent / LogLines messages from the EventBridge. The UI thread never waits on either.
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
from textual.widgets import Footer, Input, OptionList, Static, TabbedContent

from workbench.core.errors import WorkbenchError
from workbench.core.events import (
    BatchChecked, ChangeDetected, ManifestInvalid, ManifestReloaded, RetrainFinished, RunFinished, RunStarted,
    RunSuperseded, WatchError, WatchStarted, WatchStopped,
)
from workbench.services.inspect import compare_runs
from workbench.ui.actions import bindings
from workbench.ui.live import LiveRun
from workbench.ui.messages import EventsPending, LogLines, Notice, ServiceEvent, WorkDone, WorkFailed
from workbench.ui.screens import loaders
from workbench.ui.screens.diff import DiffScreen
from workbench.ui.screens.drift import DriftScreen
from workbench.ui.screens.promote import PromoteScreen
from workbench.ui.widgets.models import ModelsView
from workbench.ui.widgets.projects import ProjectRow, ProjectsList
from workbench.ui.widgets.run_detail import RunDetail
from workbench.ui.widgets.runs_table import RunsTable
from workbench.ui.widgets.trend import TrendLine

log = logging.getLogger(__name__)
DETAIL_DELAY_S = 0.08
"""Wait this long after the cursor stops before loading a run's detail (holding ↓ loads none)."""
RELOAD_DELAY_S = 0.15
FILTER_DELAY_S = 0.15
MIRROR_EVERY_S = 10.0


class MainScreen(Screen):
    BINDINGS = bindings("screen") + [Binding("escape", "escape", "Back", show=False)]

    def __init__(self, session, watch, bridge, watch_on_start: bool = True) -> None:
        super().__init__()
        self.session, self.watch, self.bridge = session, watch, bridge
        self.watch_on_start = watch_on_start
        self.project: ProjectRow | None = None
        self.live: dict[int, LiveRun] = {}
        self.runner_name = "…"
        self._detail_timer: Timer | None = None
        self._reload_timer: Timer | None = None
        self._filter_timer: Timer | None = None
        self._trend_for: str | None = None
        self._aliases_read = False
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
        self._in_thread("projects", None, loaders.read_projects, self.session, self.watch)
        # Docker, recovery and watching start once the first runs are on screen (or after a
        # second): they contend for the same store, and first paint matters more.
        self._services_timer: Timer | None = self.set_timer(1.0, self._start_services)
        self.set_interval(1.0, self._tick)
        self.set_interval(MIRROR_EVERY_S, self._read_mirror)

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
        self.notify(message.error, title=message.kind.replace("_", " "), severity="error", timeout=8)
        if message.kind == "run" and message.key == self._wanted_run():
            self.detail.clear(f"✗ {message.error}")
        elif message.kind == "projects":
            self.query_one("#status", Static).update(Text(f" ✗ {message.error}", "bold red"))

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, title=message.title, severity=message.severity, timeout=8)

    def _done_projects(self, rows: list[ProjectRow], _key) -> None:
        known = self.projects.rows
        fresh = []
        for row in rows:  # what this app learnt from events is newer than what the worker read
            old = known.get(row.name)
            busy = any(not live.finished for live in self.live.values() if live.project == row.name)
            fresh.append(replace(row, busy=row.busy or busy, production=old.production if old else None,
                                 staging=old.staging if old else None))
        self.projects.set_rows(fresh)
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

    def _done_run(self, payload, run_id) -> None:
        if run_id != self._wanted_run():
            return  # the cursor moved on
        record, report = payload
        self.detail.show_record(record, report, self.live.get(run_id))
        self.detail.border_title = f"Run {record.id}"

    def _done_trend(self, values, project) -> None:
        if self.project and project == self.project.name:
            self.query_one(TrendLine).show(self.project.primary_metric, self.project.maximize, values)

    def _done_aliases(self, aliases: dict, project) -> None:
        self.projects.update_row(project, production=aliases.get("production"), staging=aliases.get("staging"))

    def _done_models(self, versions, project) -> None:
        holders = {alias: v.version for v in versions for alias in v.aliases}
        self.projects.update_row(project, production=holders.get("production"), staging=holders.get("staging"))
        if self.project and project == self.project.name:
            self.query_one(ModelsView).show(project, versions, self.project.primary_metric)

    def _done_mirror(self, summary: str, _key) -> None:
        self.mirror = summary
        self.query_one(ModelsView).show_mirror(summary)
        self._status()

    def _done_preview(self, preview, project) -> None:
        def answer(reason: str | None) -> None:
            if reason is not None:
                self._in_thread("promotion", project, loaders.apply_promotion, self.session, project, preview,
                                reason)

        self.app.push_screen(PromoteScreen(preview), answer)

    def _done_promotion(self, decision, project) -> None:
        if decision.allowed and not decision.applied:
            # A refusal the user chose to record would now go through: nothing was written;
            # show the new decision, so nobody promotes what they did not see.
            self.notify("not recorded: it would go through now, so here it is again", title=project,
                        severity="warning", timeout=8)
            self._done_preview(decision, project)
            return
        if decision.applied:
            self.notify(decision.message, title=project, timeout=8)
        else:
            self.notify(f"refused (recorded): {decision.message}", title=project, severity="error", timeout=12)
        self._load_models(project)
        self._read_mirror()

    def _done_diff(self, payload, _key) -> None:
        diff, label = payload
        maximize = self.project.maximize if self.project else True
        metric = self.project.primary_metric if self.project else None
        self.app.push_screen(DiffScreen(diff, label, metric, maximize))

    def _done_reproduce(self, payload, run_id) -> None:
        record, result = payload
        if str(record.status) != "succeeded":
            self.notify(f"cold rerun {record.id} of run {run_id} {record.status}: {record.reason}",
                        severity="error", timeout=10)
        elif result.matched:
            self.notify(f"run {run_id} reproduced by run {record.id}: {len(result.compared)} metrics equal, "
                        "model files byte-identical", title="reproduced", timeout=10)
        else:
            problems = [str(d) for d in result.differences] + [
                f"{name} differs" for name, same in result.artifacts_identical.items() if not same]
            self.notify(f"run {run_id} NOT reproduced by run {record.id}: " + "; ".join(problems[:4]),
                        title="not reproduced", severity="error", timeout=15)

    def _done_watch_toggled(self, watching: bool, project) -> None:
        self.projects.update_row(project, watching=watching)
        self._status()

    def _done_cancel(self, had_run: bool, project) -> None:
        if not had_run:
            self.notify(f"{project}: no run in flight", severity="information")

    # -- service events -----------------------------------------------------------------------

    def on_events_pending(self, _message: EventsPending) -> None:
        self._drain_events()

    def _drain_events(self) -> None:
        wait = self.bridge.drain()
        if wait is not None:
            self.set_timer(wait, self._drain_events)

    def on_log_lines(self, message: LogLines) -> None:
        live = self.live.get(message.run_id)
        if live is not None:
            live.log.extend(message.lines)
        self.detail.append_log(message.run_id, message.lines)

    def on_service_event(self, message: ServiceEvent) -> None:
        event = message.event
        if isinstance(event, RunStarted):
            self.live[event.run_id] = LiveRun.from_event(event)
            self.projects.update_row(event.project, busy=True)
            self._project_changed(event.project)
            self._after_run_event(event.run_id)
        elif isinstance(event, RunFinished):
            record = event.record
            live = self.live.get(record.id)
            if live is not None:
                live.apply(event)
            self.table.live.pop(record.id, None)
            busy = any(not l.finished for l in self.live.values() if l.project == record.project)
            self.projects.update_row(record.project, busy=busy, last_status=str(record.status))
            self._project_changed(record.project, trend=True)
            self._in_thread("aliases", record.project, loaders.read_aliases, self.session, record.project)
            self._load_models(record.project)
            self._read_mirror()
            if record.id == self.detail.run_id:
                self._load_detail(record.id)
        elif hasattr(event, "run_id") and event.run_id in self.live:  # stage events
            live = self.live[event.run_id]
            live.apply(event)
            self.table.live[event.run_id] = live.summary()
            self.table.refresh()
            self._after_run_event(event.run_id)
        else:
            self._watch_event(event)

    def _after_run_event(self, run_id: int) -> None:
        live = self.live.get(run_id)
        if live is not None and run_id == self.detail.run_id:
            self.detail.show_live(live)

    def _watch_event(self, event) -> None:
        if isinstance(event, WatchStarted):
            self.projects.update_row(event.project, watching=True, note="")
        elif isinstance(event, WatchStopped):
            self.projects.update_row(event.project, watching=False, note=event.reason)
            if event.reason:
                self.notify(f"{event.project}: stopped watching: {event.reason}", severity="error", timeout=10)
        elif isinstance(event, ChangeDetected):
            self.notify(f"{', '.join(event.paths[:3])} changed → {' → '.join(event.stages)}",
                        title=event.project, timeout=4)
        elif isinstance(event, ManifestInvalid):
            self.projects.update_row(event.project, note="manifest invalid")
            self.notify(event.message, title=f"{event.project}: manifest invalid", severity="error", timeout=12)
        elif isinstance(event, ManifestReloaded):
            self.projects.update_row(event.project, note="")
            self._in_thread("projects", None, loaders.read_projects, self.session, self.watch)
        elif isinstance(event, RunSuperseded):
            self.notify(f"run {event.run_id} superseded by run {event.by_run_id}", title=event.project, timeout=4)
        elif isinstance(event, WatchError):
            self.projects.update_row(event.project, note=event.message[:60])
            self.notify(event.message, title=event.project, severity="error", timeout=12)
        elif isinstance(event, (BatchChecked, RetrainFinished)):
            self._drift_event(event)
        self._status()

    def _drift_event(self, event: BatchChecked | RetrainFinished) -> None:
        if isinstance(event, BatchChecked):
            what = f"{event.batch}: drifted ({event.share:.0%} of columns)" if event.drifted else \
                f"{event.batch}: no drift"
            self.notify(f"{what}; {'retraining' if event.retrain else 'no retrain'}: {event.reason}",
                        title=event.project, severity="warning" if event.drifted else "information", timeout=8)
        elif event.version is not None:
            where = "in staging" if event.staged else "ready for staging"
            if event.gates_failed:
                where = f"not promotable: gate failed: {'; '.join(event.gates_failed)}"
            self.notify(f"drift retrain run {event.run_id} → version {event.version}, {where}", title=event.project,
                        timeout=8)
        screen = self.app.screen
        if isinstance(screen, DriftScreen) and screen.project == event.project:
            screen.reload()

    def _project_changed(self, project: str, trend: bool = False) -> None:
        if self.project is None or project != self.project.name:
            return
        if self._reload_timer is None:
            self._reload_timer = self.set_timer(RELOAD_DELAY_S, self._reload_runs)
        if trend:
            self._in_thread("trend", project, loaders.read_trend, self.session, project)

    def _reload_runs(self) -> None:
        self._reload_timer = None
        self.table.reload()

    def _tick(self) -> None:
        self.table.tick()
        live = self.live.get(self.detail.run_id) if self.detail.run_id is not None else None
        if live is not None and not live.finished:
            self.detail.show_live(live)
            self.detail.tick()

    # -- selection ----------------------------------------------------------------------------

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        row = self.projects.rows.get(event.option.id)
        if row is None or (self.project is not None and self.project.name == row.name and self.table.loaded):
            return
        self.project = row
        self._show_runs()
        self._trend_for = None  # read once its first runs are on screen (see _after_first_rows)
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
            self._in_thread("trend", row.name, loaders.read_trend, self.session, row.name)
            self._load_models(row.name)
        if not self._aliases_read:
            self._aliases_read = True
            for name, project in self.projects.rows.items():
                if not project.error:
                    self._in_thread("aliases", name, loaders.read_aliases, self.session, name, group="aliases")

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

    def on_runs_table_selected(self, message: RunsTable.Selected) -> None:
        if self._detail_timer is not None:  # loading now: the delayed load would read it again
            self._detail_timer.stop()
        if self.detail.run_id != message.run.id or message.run.status == "running":
            self._load_detail(message.run.id)
        self.detail.focus()

    def _wanted_run(self) -> int | None:
        run = self.table.current
        return run.id if run is not None else None

    def _load_detail(self, run_id: int) -> None:
        self._in_thread("run", run_id, loaders.read_run, self.session, run_id, group="detail")

    def _load_models(self, project: str) -> None:
        if self.project is not None and project == self.project.name:
            self._in_thread("models", project, loaders.read_models, self.session, project)

    def _read_mirror(self) -> None:
        self._in_thread("mirror", None, loaders.read_mirror, self.session)

    # -- actions (ids in workbench/ui/actions.py) ---------------------------------------------

    def _runnable(self) -> ProjectRow | None:
        row = self.project
        if row is None:
            self.notify("no project selected", severity="warning")
        elif row.error:
            self.notify(f"{row.name}: fix the manifest first: {row.error}", severity="error", timeout=10)
            return None
        return row

    def action_run_now(self) -> None:
        row = self._runnable()
        if row is not None:
            self._in_thread("run_now", row.name, self.watch.run_now, row.name)
            self.notify(f"{row.name}: run queued", timeout=2)

    def action_toggle_watch(self) -> None:
        row = self._runnable()
        if row is not None:
            self._in_thread("watch_toggled", row.name, loaders.toggle_watch, self.watch, row.name)

    def action_cancel_run(self) -> None:
        if self.project is not None:
            self._in_thread("cancel", self.project.name, self.watch.cancel, self.project.name)

    def action_rerun_cold(self) -> None:
        row, run = self._runnable(), self.table.current
        if row is None or run is None:
            return
        if self.watch.busy(row.name) or any(not l.finished for l in self.live.values() if l.project == row.name):
            self.notify(f"{row.name}: a run is in flight; cancel it (c) or let it finish, then rerun cold",
                        severity="warning")
            return
        self.notify(f"rerunning run {run.id} cold (nothing reused) to check it reproduces", timeout=4)
        self._in_thread("reproduce", run.id, self.session.reproduce, run.id, self.bridge)

    def action_drift(self) -> None:
        if self.project is None:
            self.notify("no project selected", severity="warning")
            return
        self.app.push_screen(DriftScreen(self.session, self.project.name))

    def action_promote_staging(self) -> None:
        self._preview("staging")

    def action_promote_production(self) -> None:
        self._preview("production")

    def action_rollback(self) -> None:
        self._preview("production", rollback=True)

    def _preview(self, alias: str, rollback: bool = False) -> None:
        """Dry-run the promotion (or rollback) on a worker; the answer opens PromoteScreen."""
        row = self._runnable()
        if row is None:
            return
        tabs = self.detail.query_one(TabbedContent)
        models = self.query_one(ModelsView)
        version = None
        if not rollback:
            if tabs.active != "models" or models.project != row.name or models.current is None:
                tabs.active = "models"
                models.table.focus()
                self.notify("pick a model version in Models (↑ ↓), then press the key again"
                            if models.versions else f"{row.name}: no model versions yet", severity="warning")
                return
            version = models.current.version
        self._in_thread("preview", row.name, loaders.preview_promotion, self.session, row.name, version, alias)

    def action_mark_run(self) -> None:
        run = self.table.current
        if run is None:
            return
        self.table.marked = None if self.table.marked == run.id else run.id
        self.table.refresh()
        if self.table.marked:
            self.notify(f"run {run.id} marked: d diffs any run against it (m again unmarks)", timeout=4)

    def action_open_diff(self) -> None:
        run = self.table.current
        if run is None:
            self.notify("no run selected", severity="warning")
            return
        if self.table.marked is not None and self.table.marked != run.id:
            base, label = self.table.marked, "marked"
        else:
            older = self.table.neighbour(self.table.cursor)
            if older is None:
                self.notify(f"run {run.id} is the oldest shown: mark a run (m) to compare with", severity="warning")
                return
            base, label = older.id, "previous"
        self._in_thread("diff", run.id, lambda: (compare_runs(self.session, base, run.id), label))

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
        facts = f"  runner {self.runner_name}  watching {watched} of {len(rows)}" if rows else \
            f"  runner {self.runner_name}"
        if self.mirror:  # the Models tab has the whole error
            facts += f"  {self.mirror if len(self.mirror) <= 32 else self.mirror[:31] + '…'}"
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
        text.append(facts)
        gap = width - len(text) - len(hint)
        if gap > 0:
            text.append(" " * gap)
            text.append(hint, "dim")
        self.query_one("#status", Static).update(text)

    def on_resize(self) -> None:
        self._status()

    def busy_projects(self) -> list[str]:
        return sorted({l.project for l in self.live.values() if not l.finished})

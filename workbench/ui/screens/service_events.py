"""What the services report while the main screen is up: runs starting, their stages, logs and
progress, runs finishing; watch, manifest and drift events.

They arrive from the EventBridge as ServiceEvent / LogLines messages on the UI thread; the
handlers here only update panes and start workers, they never wait on the store.
"""

from __future__ import annotations

from textual.css.query import NoMatches

from workbench.core.events import (
    BatchChecked, BatchProgress, ChangeDetected, ManifestInvalid, ManifestReloaded, ModelRegistered, RetrainFinished,
    RunFinished, RunStarted, RunSuperseded, WatchedElsewhere, WatchError, WatchStarted, WatchStopped,
)
from workbench.ui.live import LiveRun
from workbench.ui.messages import EventsPending, LogLines, ServiceEvent
from workbench.ui.screens.drift import DriftScreen
from workbench.ui.widgets.projects import PROGRESS_NOTE

RELOAD_DELAY_S = 0.15
"""Run events of the shown project within this long reload its runs table once."""


class ServiceEvents:
    """Mixed into MainScreen, which holds the panes (`projects`, `table`, `detail`), `bridge`,
    `live`, `project` and `_reload_timer`, and the helpers these handlers call (`_status`,
    `_load_*`, `_read_mirror`, `_has_run_in_flight`)."""

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
            self.live[event.run_id] = self.table.live[event.run_id] = LiveRun.from_event(event)
            self.projects.update_row(event.project, busy=True)
            self._project_changed(event.project)
            self._after_run_event(event.run_id)
        elif isinstance(event, RunFinished):
            self._run_finished(event)
        elif isinstance(event, ModelRegistered):  # has a run_id, but is not a stage event
            self._watch_event(event)
        elif hasattr(event, "run_id") and event.run_id in self.live:  # stage events
            live = self.live[event.run_id]
            live.apply(event)
            self.table.live[event.run_id] = live
            self.table.refresh()
            self._after_run_event(event.run_id)
        else:
            self._watch_event(event)

    def _run_finished(self, event: RunFinished) -> None:
        record = event.record
        live = self.live.get(record.id)
        if live is not None:
            live.apply(event)
        project = self.projects.rows.get(record.project)
        self.table.finish(record, project.primary_metric if project else None)
        self.projects.update_row(record.project, busy=self._has_run_in_flight(record.project),
                                 last_status=str(record.status))
        self._project_changed(record.project, trend=True)
        self._load_aliases(record.project)
        self._load_models(record.project)
        self._read_mirror()
        if record.id == self.detail.run_id:
            self._load_detail(record.id)

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
            self._load_projects()
        elif isinstance(event, RunSuperseded):
            self.notify(f"run {event.run_id} superseded by run {event.by_run_id}", title=event.project, timeout=4)
        elif isinstance(event, WatchError):
            self._drift_progress(event.project, "")  # a check that failed says so in the note
            self.projects.update_row(event.project, note=event.message[:60])
            self.notify(event.message, title=event.project, severity="error", timeout=12)
        elif isinstance(event, BatchProgress):
            self._drift_progress(event.project, event.line)
        elif isinstance(event, (BatchChecked, RetrainFinished)):
            self._drift_event(event)
        elif isinstance(event, WatchedElsewhere):  # its runs show through the store's polling
            self.projects.update_row(event.project, watching=False, note=f"pid {event.pid} watches")
            self.notify(f"watched by pid {event.pid} ({event.holder}); its runs show here, and this TUI takes "
                        "over when it stops", title=event.project, timeout=8)
        elif isinstance(event, ModelRegistered):
            self.notify(f"run {event.run_id} → registered version {event.version}", title=event.project, timeout=6)
        self._status()

    def _drift_progress(self, project: str, line: str) -> None:
        """A drift check under way in watch mode, on the project's row and in its open drift
        screen; "" when it ended. Only a progress note is cleared, never another one."""
        row = self.projects.rows.get(project)
        if row is not None and (line or row.note.startswith(PROGRESS_NOTE)):
            self.projects.update_row(project, note=line)
        screen = self.app.screen
        if isinstance(screen, DriftScreen) and screen.project == project:
            try:
                screen.pane.progress(line)
            except NoMatches:  # the screen is closing
                pass

    def _drift_event(self, event: BatchChecked | RetrainFinished) -> None:
        if isinstance(event, BatchChecked):
            self._drift_progress(event.project, "")
            # The summary is the verdict and why (which columns, how far, how important).
            what = f"{event.batch}: {event.summary or ('drifted' if event.drifted else 'no drift')}"
            severity = {"not checked": "error", "breaks the contract": "error", "warning": "warning"}.get(
                event.verdict, "warning" if event.drifted else "information")
            self.notify(f"{what}; {'retraining' if event.retrain else 'no retrain'}: {event.reason}",
                        title=event.project, severity=severity, timeout=8)
        elif event.version is not None:
            where = "in staging" if event.staged else "ready for staging"
            if event.gates_failed:
                where = f"not promotable: gate failed: {'; '.join(event.gates_failed)}"
            self.notify(f"drift retrain run {event.run_id} → version {event.version}, {where}", title=event.project,
                        timeout=8)
        elif event.gates_failed:  # a run whose gate failed registers no version
            self.notify(f"drift retrain run {event.run_id}: gate failed ({'; '.join(event.gates_failed)}), "
                        "no new model version", title=event.project, severity="warning", timeout=8)
        screen = self.app.screen
        if isinstance(screen, DriftScreen) and screen.project == event.project:
            screen.reload()

    def _project_changed(self, project: str, trend: bool = False) -> None:
        if self.project is None or project != self.project.name:
            return
        if self._reload_timer is None:
            self._reload_timer = self.set_timer(RELOAD_DELAY_S, self._reload_runs)
        if trend:
            self._load_trend(project)

    def _reload_runs(self) -> None:
        self._reload_timer = None
        self.table.reload()

    def _tick(self) -> None:
        """Once a second: what other processes recorded, running rows' durations in the runs
        table, and the shown run while in flight."""
        self._poll_workspace()
        self.table.tick()
        live = self.live.get(self.detail.run_id) if self.detail.run_id is not None else None
        if live is not None and not live.finished:
            self.detail.show_live(live)
            self.detail.tick()
        elif live is None:
            self.detail.tick()  # a run of another process: its clock, until the poll reads its end

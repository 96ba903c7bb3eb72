"""The main screen's keys for the selected project and run (ids in workbench/ui/actions.py):
run now, watch, cancel, rerun cold, mark, diff, pick and compare, the project's drift checks and
serving (S, the Serving view).

`r` goes through the watch service (it supersedes a run in flight, never overlaps one); a cold
rerun is refused while a run is in flight. Answers come back as WorkDone messages to the
`_done_*` handlers here.
"""

from __future__ import annotations

from workbench.core.model import PIPELINE_COMPLETED
from workbench.core.ports import CancelToken
from workbench.services.compare import CompareRequest
from workbench.ui.screens import loaders
from workbench.ui.screens.compare import CompareScreen
from workbench.ui.screens.diff import DiffScreen
from workbench.ui.screens.drift import DriftScreen
from workbench.ui.screens.sweep import SweepScreen


COMPARE_RUNS = 10_000
"""The compare view (C) with no run picked shows at most this many of the newest runs."""


class RunActions:
    """Mixed into MainScreen, which holds `session`, `watch`, `bridge`, `project`, `cold_runs` and the panes
    (`projects`, `table`), and provides `_in_thread`, `_runnable`, `_has_run_in_flight` and
    `_status`."""

    # -- the project --------------------------------------------------------------------------

    def action_run_now(self) -> None:
        row = self._runnable()
        if row is not None:
            self._in_thread("run_now", row.name, self.watch.run_now, row.name)
            self.notify(f"{row.name}: run queued", timeout=2)

    def action_toggle_watch(self) -> None:
        row = self._runnable()
        if row is not None:
            self._in_thread("watch_toggled", row.name, loaders.toggle_watch, self.watch, row.name)

    def _done_watch_toggled(self, watching: bool, project) -> None:
        self.projects.update_row(project, watching=watching)
        self._status()

    def action_cancel_run(self) -> None:
        if self.project is None:
            return
        cold = self.cold_runs.get(self.project.name)
        if cold is not None:  # a cold rerun (R) runs beside the watch service, with its own token
            cold.cancel("cancelled (c)")
            self.notify(f"{self.project.name}: cancelling the cold rerun", timeout=3)
            return
        self._in_thread("cancel", self.project.name, self.watch.cancel, self.project.name)

    def cancel_cold_runs(self) -> None:
        """Stop every cold rerun in flight (the app is closing); each is recorded as cancelled."""
        for token in self.cold_runs.values():
            token.cancel("cancelled: the workbench closed")

    def _done_cancel(self, had_run: bool, project) -> None:
        if not had_run:
            self.notify(f"{project}: no run in flight", severity="information")

    def action_drift(self) -> None:
        if self.project is None:
            self.notify("no project selected", severity="warning")
            return
        self.app.push_screen(DriftScreen(self.session, self.project.name))

    def action_serve(self) -> None:
        row = self._runnable()
        if row is not None:
            from workbench.ui.screens.serving import ServingScreen  # plotext and the stats: only when asked

            self.app.push_screen(ServingScreen(self.session, row.name))

    # -- the run under the cursor -------------------------------------------------------------

    def action_rerun_cold(self) -> None:
        row, run = self._runnable(), self.table.current
        if row is None or run is None:
            return
        if self.watch.busy(row.name) or self._has_run_in_flight(row.name):
            self.notify(f"{row.name}: a run is in flight; cancel it (c) or let it finish, then rerun cold",
                        severity="warning")
            return
        self.notify(f"rerunning run {run.id} cold (nothing reused) to check it reproduces; c cancels it", timeout=4)
        token = self.cold_runs[row.name] = CancelToken()
        self._in_thread("reproduce", run.id, self._reproduce, row.name, run.id, token)

    def _reproduce(self, project: str, run_id: int, token: CancelToken):
        """On a worker: the cold rerun; its token is dropped when it is recorded, however it ends."""
        try:
            return self.session.reproduce(run_id, self.bridge, cancel=token)
        finally:
            # From this thread, not through the UI thread: the app may be closing (it cancelled
            # the token) and no longer answering. One dict operation is atomic.
            if self.cold_runs.get(project) is token:
                self.cold_runs.pop(project, None)

    def _done_reproduce(self, payload, run_id) -> None:
        record, result = payload
        if self.detail.run_id == run_id:  # the verdict stays in its detail: read it again
            self._load_detail(run_id)
        if str(record.status) == "cancelled":
            self.notify(f"cold rerun {record.id} of run {run_id} cancelled", timeout=6)
            return
        if record.status not in PIPELINE_COMPLETED:  # a failed gate reproduces too: metrics compared
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

    def action_mark_run(self) -> None:
        run = self.table.current
        if run is None:
            return
        self.table.marked = None if self.table.marked == run.id else run.id
        self.table.refresh()
        if self.table.marked:
            self.notify(f"run {run.id} marked: d diffs any run against it (m again unmarks)", timeout=4)

    def action_pick_run(self) -> None:
        run = self.table.current
        if run is None:
            return
        self.table.picked ^= {run.id}
        self.table.refresh()
        count = len(self.table.picked)
        self.notify(f"run {run.id} {'picked' if run.id in self.table.picked else 'unpicked'}: C compares the "
                    f"{count} picked run{'s' if count != 1 else ''}" if count else "no run picked: C compares the "
                    "filtered or newest runs", timeout=3)

    def action_open_compare(self) -> None:
        """The picked and marked runs (the marked one is the reference), or else the runs the
        table lists (its filter), newest first, up to COMPARE_RUNS."""
        row = self.project
        if row is None:
            self.notify("no project selected", severity="warning")
            return
        table = self.table
        chosen = set(table.picked) | ({table.marked} if table.marked is not None else set())
        if chosen:
            request = CompareRequest(project=row.name, run_ids=tuple(sorted(chosen)), reference=table.marked)
            what = f"{row.name} · {len(chosen)} picked run{'s' if len(chosen) != 1 else ''}"
        else:
            request = CompareRequest(project=row.name, limit=COMPARE_RUNS, match=table.match)
            what = f"{row.name} · " + (f"runs matching “{table.match}”" if table.match else "newest runs")
        self.app.push_screen(CompareScreen(self.session, request, what, row.primary_metric))

    def action_open_sweep(self) -> None:
        """The compare view on every trial of the selected run's sweep, read again as trials end."""
        run = self.table.current
        if run is None:
            self.notify("no run selected", severity="warning")
            return
        if run.sweep is None:
            self.notify(f"run {run.id} is not a sweep trial (`workbench sweep` runs trials); C compares runs",
                        severity="warning")
            return
        self.app.push_screen(SweepScreen(self.session, run.sweep))

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
        self._in_thread("diff", run.id, loaders.read_diff, self.session, base, run.id, label)

    def _done_diff(self, payload, _key) -> None:
        diff, label = payload
        maximize = self.project.maximize if self.project else True
        metric = self.project.primary_metric if self.project else None
        self.app.push_screen(DiffScreen(diff, label, metric, maximize))

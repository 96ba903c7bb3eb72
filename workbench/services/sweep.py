"""Sweeps: many runs of one project, their params chosen by Optuna, one study per sweep.

Each trial is a full run (trigger `sweep`) of the project as it is when the trial starts, with
the trial's values in a copy of the params file that only its snapshot holds (the `overrides`
of a run): the user's file is never written. The cache does the rest: a stage whose own keys
and inputs a trial does not change is reused from the first run that made it, so validate runs
once for the whole sweep. Gates are checked as in any run. Every trial's run carries the
sweep's name and the trial's number in the lineage (runs.sweep, runs.sweep_trial).

Only the best trial's model becomes a version (unless `register_all`): trials' runs are queued
for MLflow but not registered, and the best is registered when the sweep ends.

Code changed during a sweep: each trial snapshots the project when it starts, so a trial runs
one consistent state, never a mix; the files a trial's stages read that differ from the trial
before it are recorded with the trial (`changed_files`) and said as it starts.

Parallel trials (`jobs` > 1): Optuna's own n_jobs, threads sharing the study, each trial a
full run through the same session (its lineage store, object store, hash cache and warm-worker
pool serve several runs of one project at once). They share one cancel token.

Stopping: a cancelled token stops every run in flight (the pipeline records each cancelled),
the study records each trial failed and cancelled, and the sweep ends. `resume` queues the
cancelled trials' values again, then carries on until the number of trials wanted have finished.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workbench.core.errors import UsageError, WorkbenchError
from workbench.core.events import RunStarted
from workbench.core.model import RunRecord, RunStatus, Trigger
from workbench.core.params_keys import ParamsFileError
from workbench.core.ports import CancelToken
from workbench.core.sweep_spec import parse_param_specs, with_values
from workbench.services.sweep_plan import SweepPlan, SweepRequest, check_keys, plan_sweep

SWEEPS_DIR = "sweeps"


@dataclass(frozen=True)
class TrialReport:
    """A trial as the sweep reports it (and `workbench sweep status` lists it)."""

    number: int
    state: str
    """complete, fail, cancelled, running, waiting; abandoned: running in the study, but its
    run is not (the workbench running it was killed; `--resume` tries its values again)."""
    value: float | None
    params: dict[str, Any]
    run_id: int | None = None
    run_status: str | None = None
    reason: str = ""
    changed_files: tuple[str, ...] = ()
    """Files its stages read that differ from the trial before it (the project changed)."""


@dataclass
class SweepReport:
    name: str
    project: str
    metric: str
    direction: str
    sampler: str
    wanted: int
    trials: list[TrialReport] = field(default_factory=list)
    best: TrialReport | None = None
    """The best trial whose run succeeded (passed its gates)."""
    registered: tuple[int, bool] | None = None
    """(version, created now) of the best trial's model, when this call registered it."""
    stopped: bool = False
    """Stopped before the trials wanted had run: `--resume NAME` carries on."""
    params: tuple[str, ...] = ()
    """The swept params' names, in the order the sweep was given them."""

    @property
    def done(self) -> int:
        return sum(1 for t in self.trials if t.state in ("complete", "fail", "pruned"))


TrialStartSink = Callable[[int, dict[str, Any]], None]
TrialEndSink = Callable[[TrialReport], None]


class SweepService:
    def __init__(self, session) -> None:
        self.session = session
        self._studies = None

    @property
    def studies(self):
        if self._studies is None:
            from workbench.adapters.optuna_study import SweepStudies

            self._studies = SweepStudies(self.session.workspace.ensure_state_dir() / SWEEPS_DIR)
        return self._studies

    def plan(self, request: SweepRequest) -> SweepPlan:
        """Check everything a sweep needs before its first trial (UsageError says what is wrong)."""
        return plan_sweep(request, self.session.project(request.project))

    def start(self, plan: SweepPlan, cancel: CancelToken | None = None, on_event=lambda _e: None,
              on_trial_start: TrialStartSink = lambda *_a: None,
              on_trial_end: TrialEndSink = lambda _t: None, jobs: int = 1) -> SweepReport:
        from workbench.adapters.optuna_study import make_sampler

        study = self.studies.create(plan.name, plan.direction, plan.attrs() | {"runner": self.session.runner.name},
                                    make_sampler(plan.sampler, plan.params, plan.seed))
        return self._run(plan, study, cancel, on_event, on_trial_start, on_trial_end, jobs)

    def resume(self, name: str, project: str | None = None, trials: int | None = None,
               cancel: CancelToken | None = None, on_event=lambda _e: None,
               on_trial_start: TrialStartSink = lambda *_a: None,
               on_trial_end: TrialEndSink = lambda _t: None, jobs: int = 1) -> SweepReport:
        """Carry on a stopped sweep with the settings it was started with; `trials`: a new
        number wanted in all (to extend a finished sweep); `jobs`: trials at once this time."""
        from workbench.adapters.optuna_study import retry_cancelled, settle_abandoned

        facts = self.studies.facts(name)
        attrs = facts.attrs
        ref = self.session.project(project or attrs["project"])
        if ref.name != attrs["project"]:
            raise UsageError(f"sweep {name} is a sweep of {attrs['project']}, not of {ref.name}")
        params = parse_param_specs(attrs["params"])
        plan = SweepPlan(name, ref.name, tuple(attrs["params"]), params, check_keys(params, ref.manifest, ref),
                         trials if trials is not None else attrs["trials"], attrs["sampler"], attrs["metric"],
                         facts.direction, attrs.get("seed"), bool(attrs.get("register_all")))
        if trials is not None:
            self.studies.load(name).set_user_attr("trials", trials)
        study = self._load(plan)
        settle_abandoned(self.studies, study)
        retry_cancelled(study)
        return self._run(plan, study, cancel, on_event, on_trial_start, on_trial_end, jobs)

    def runner_of(self, name: str) -> str | None:
        """The runner a sweep's trials ran on (`local`, `docker`), to resume on the same one: a
        stage's cache key holds its environment, so another runner would rerun every stage."""
        return self.studies.facts(name).attrs.get("runner")

    def _load(self, plan: SweepPlan):
        from workbench.adapters.optuna_study import make_sampler

        # A seeded sampler made again would draw the same values again from the start: a resumed
        # sweep repeated its first trials' values (and reused their stages). Offset by the
        # trials the study holds: still repeatable, never a replay.
        seed = plan.seed if plan.seed is None else plan.seed + len(self.studies.facts(plan.name).trials)
        return self.studies.load(plan.name, make_sampler(plan.sampler, plan.params, seed))

    def _run(self, plan: SweepPlan, study, cancel, on_event, on_trial_start, on_trial_end,
             jobs: int = 1) -> SweepReport:
        from workbench.adapters.optuna_study import TrialCancelled, TrialFailed, optimize

        cancel = cancel or CancelToken()
        ref = self.session.project(plan.project)
        before = self.report(plan.name)
        remaining = plan.trials - sum(1 for t in before.trials if counted_state(t))
        previous = self._last_inputs(before, set(plan.files.values()))
        # With jobs > 1 trials run on Optuna's threads: "the trial before" is the one that
        # finished last, and comparing with it and moving on must not interleave.
        previous_lock = threading.Lock()

        def objective(trial) -> float:
            nonlocal previous
            from workbench.adapters.optuna_study import suggest

            values = suggest(trial, plan.params)
            if cancel.cancelled:
                trial.set_user_attr("cancelled", True)
                raise TrialCancelled(cancel.reason or "cancelled")
            try:
                record = self._trial_run(plan, ref, trial, values, cancel, on_event, on_trial_start)
            except TrialFailed as exc:  # no run: its params could not be written
                trial.set_user_attr("reason", str(exc))
                on_trial_end(TrialReport(trial.number, "fail", None, values, reason=str(exc)))
                raise
            except (KeyboardInterrupt, WorkbenchError):
                # A second Ctrl-C (the run was recorded cancelled on its way out), or the project
                # cannot be run at all now (its manifest broken): the sweep stops, and --resume
                # tries this trial's values again.
                trial.set_user_attr("cancelled", True)
                raise
            inputs = _read_inputs(record, set(plan.files.values()))
            with previous_lock:
                changed = _changed(previous, inputs)
                previous = inputs
            trial.set_user_attr("run_id", record.id)
            trial.set_user_attr("run_status", str(record.status))
            trial.set_user_attr("changed_files", list(changed))
            if record.status in (RunStatus.CANCELLED, RunStatus.SUPERSEDED) or cancel.cancelled:
                trial.set_user_attr("cancelled", True)
                on_trial_end(TrialReport(trial.number, "cancelled", None, values, record.id, str(record.status),
                                         record.reason, changed))
                raise TrialCancelled(record.reason or "cancelled")
            value = record.metrics.get(plan.metric)
            reason = record.reason
            if record.status not in (RunStatus.SUCCEEDED, RunStatus.GATE_FAILED):
                failure = TrialFailed(reason or f"run {record.id} {record.status}")
            elif value is None or value != value:
                known = ", ".join(sorted(record.metrics)) or "none"
                reason = f"run {record.id} logged no metric {plan.metric!r} (it logged: {known})"
                failure = TrialFailed(reason)
            else:
                failure = None
            trial.set_user_attr("reason", reason)
            on_trial_end(TrialReport(trial.number, "fail" if failure else "complete", None if failure else value,
                                     values, record.id, str(record.status), reason, changed))
            if failure:
                raise failure
            return value

        stopped = False
        if remaining > 0:
            try:
                if jobs > 1 and previous is None and remaining > 1:
                    # The first trial alone: the stages no trial changes (validate) are then
                    # reused by every other trial, not run by each trial of the first wave.
                    optimize(study, objective, 1)
                    remaining -= 1
                optimize(study, objective, remaining, jobs)
            except TrialCancelled:
                stopped = True
        report = self.report(plan.name)
        report.stopped = stopped or sum(1 for t in report.trials if counted_state(t)) < plan.trials
        if not report.stopped and report.best is not None and not plan.register_all:
            report.registered = self._register(ref, report.best)
        return report

    def _trial_run(self, plan: SweepPlan, ref, trial, values: dict[str, Any], cancel, on_event,
                   on_trial_start) -> RunRecord:
        """Write the trial's params copies, run the project with them, tag the run."""
        from workbench.adapters.optuna_study import TrialFailed
        from workbench.adapters.params_files import ParamsReader
        from workbench.adapters.params_writer import write_params

        on_trial_start(trial.number, values)
        reader = ParamsReader(ref.path)  # read now: the trial runs the project as it is now
        by_file: dict[str, dict] = {}
        for param in plan.params:
            by_file.setdefault(plan.files[param.name], {})[param.ref] = values[param.name]
        tmp_root = self.session.workspace.ensure_state_dir() / SWEEPS_DIR / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tmp_root, prefix=f"{plan.name}-{trial.number}-") as tmp:
            overrides = {}
            for index, (file, file_values) in enumerate(by_file.items()):
                target = Path(tmp) / str(index) / Path(file).name
                target.parent.mkdir()
                try:
                    document = with_values(reader(file), file_values)
                except ParamsFileError as exc:  # edited into something unreadable since the sweep began
                    raise TrialFailed(f"{exc}: the trial's values could not be put in") from None
                except (KeyError, IndexError, TypeError):
                    keys = ", ".join(p.name for p in plan.params if plan.files[p.name] == file)
                    raise TrialFailed(f"{file} no longer holds {keys} as a single value") from None
                write_params(document, target, file)
                overrides[file] = target

            def noted(event) -> None:
                if isinstance(event, RunStarted):  # the study knows the run even if it is stopped
                    trial.set_user_attr("run_id", event.run_id)
                on_event(event)

            return self.session.run(str(ref.path), trigger=Trigger.SWEEP, cancel=cancel, on_event=noted,
                                    overrides=overrides, register=plan.register_all,
                                    sweep=(plan.name, trial.number))

    def _register(self, ref, best: TrialReport) -> tuple[int, bool] | None:
        """Register the best trial's model (the trials' runs were queued for MLflow only)."""
        try:
            record = self.session.get_run(best.run_id)
            version, created = self.session.registry.after_run(record, ref.manifest, late=True)
        except WorkbenchError as exc:
            self.session.notice(f"the best trial's run {best.run_id} was not registered ({exc}); "
                                f"`workbench sweep {ref.name} --resume NAME` tries again")
            return None
        return (version.version, created) if version is not None else None

    def _last_inputs(self, report: SweepReport, swept_files: set[str]) -> dict[str, str] | None:
        """What the last trial that ran its stages read (a trial stopped before any stage ran,
        or killed, recorded none: it says nothing about the project then)."""
        for trial in sorted(report.trials, key=lambda t: t.number, reverse=True):
            if trial.run_id is None:
                continue
            try:
                record = self.session.get_run(trial.run_id)
            except WorkbenchError:
                continue
            if record.stages:
                return _read_inputs(record, swept_files)
        return None

    # -- reading -----------------------------------------------------------------------------

    def report(self, name: str) -> SweepReport:
        facts = self.studies.facts(name)
        attrs = facts.attrs
        trials = [_trial_report(t) for t in facts.trials]
        if any(t.state == "running" for t in trials):
            runs = {trial: status for _id, trial, status in self.session.store.sweep_runs(name)}
            trials = [replace(t, state="abandoned") if t.state == "running" and runs.get(t.number) not in
                      (None, str(RunStatus.RUNNING)) else t for t in trials]
        succeeded = [t for t in trials if t.state == "complete" and t.run_status == str(RunStatus.SUCCEEDED)]
        pick = max if facts.direction == "maximize" else min
        best = pick(succeeded, key=lambda t: t.value) if succeeded else None
        return SweepReport(name, attrs.get("project", "?"), attrs.get("metric", "?"), facts.direction,
                           attrs.get("sampler", "?"), int(attrs.get("trials", 0)), trials, best,
                           params=tuple(p.name for p in parse_param_specs(attrs.get("params", []))))

    def sweeps(self, project: str | None = None) -> list[SweepReport]:
        """Every sweep of the workspace (or of one project), oldest first."""
        name = self.session.project(project).name if project else None
        reports = [self.report(n) for n in self.studies.names()]
        return [r for r in reports if name is None or r.project == name]

    def run_ids(self, name: str) -> list[int]:
        """The runs of a sweep's trials, by trial (UsageError for an unknown sweep)."""
        return list(self.trial_runs(name))

    def trial_runs(self, name: str) -> dict[int, int]:
        """Run id -> trial number of a sweep's runs, by trial, from the lineage store: a trial's
        run is there from its start (UsageError for an unknown sweep)."""
        runs = self.session.store.sweep_runs(name)
        if not runs and name not in self.studies.names():
            known = ", ".join(self.studies.names()) or "none yet"
            raise UsageError(f"no sweep named {name!r} in this workspace (sweeps: {known})")
        return {run_id: trial for run_id, trial, _status in runs}


def counted_state(trial: TrialReport) -> bool:
    return trial.state in ("complete", "fail", "pruned")


def _trial_report(facts) -> TrialReport:
    attrs = facts.attrs
    state = "cancelled" if attrs.get("cancelled") and facts.state == "fail" else facts.state
    return TrialReport(facts.number, state, facts.value, facts.params, attrs.get("run_id"),
                       attrs.get("run_status"), attrs.get("reason", ""), tuple(attrs.get("changed_files", ())))


def _read_inputs(record: RunRecord, swept_files: set[str]) -> dict[str, str]:
    """What a trial's stages read, by path (params keys by `file:key`), without the params
    files the sweep writes: comparing two trials' tells whether the project changed between."""
    seen: dict[str, str] = {}
    for stage in record.stages:
        for f in stage.inputs:
            if f.path not in swept_files:
                seen[f.path] = f.sha256
    return seen


def _changed(previous: dict[str, str] | None, now: dict[str, str]) -> tuple[str, ...]:
    if previous is None:
        return ()
    return tuple(sorted(p for p in previous.keys() | now.keys() if previous.get(p) != now.get(p)))

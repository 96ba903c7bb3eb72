"""`workbench sweep PROJECT --param KEY=SPEC ...`: a hyperparameter search, one run per trial
(workbench.services.sweep); `workbench sweep status [PROJECT]` and `workbench sweeps` list them.

Exit codes as for `run`: 0 the sweep finished (a trial that failed is part of the search, not
the sweep's failure); 1 no trial succeeded; 3 bad input or environment; 64 a bad --param or
option; 130 (or 128 + the signal) stopped, with every trial in flight recorded cancelled.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from rich.markup import escape

from workbench.cli.interrupts import guard
from workbench.cli.render import Printer
from workbench.cli.runner_options import add_runner_options
from workbench.core import formatting
from workbench.core.errors import UsageError
from workbench.core.events import RunFinished, StageFinished, StageLog, StageProgress, StageStarted
from workbench.core.sweep_spec import DIRECTIONS, SAMPLERS
from workbench.services.session import WorkbenchSession
from workbench.services.sweep import SweepReport, SweepService, TrialReport
from workbench.services.sweep_plan import SweepRequest, check_jobs


def add_parser(sub) -> None:
    sweep = sub.add_parser("sweep", help="search params with Optuna: one run per trial, the best registered",
                           description="workbench sweep PROJECT --param KEY=SPEC ... | "
                                       "workbench sweep status [PROJECT]")
    sweep.add_argument("project", help="project name or path (or `status` to list sweeps)")
    sweep.add_argument("status_project", nargs="?", metavar="PROJECT", help=argparse.SUPPRESS)
    sweep.add_argument("--param", action="append", default=[], dest="params", metavar="KEY=SPEC",
                       help="a params key and its values: a range 0.01..0.3 (:log, :int) or a list 15,31,63 "
                            "(repeatable; default: [sweep] params in the manifest)")
    sweep.add_argument("--trials", type=int, default=None, help="how many trials (default: [sweep] trials, 20; "
                                                                 "grid: the whole grid)")
    sweep.add_argument("--sampler", choices=SAMPLERS, default=None, help="Optuna's sampler (default tpe)")
    sweep.add_argument("--metric", default=None, help="the metric to optimize (default: the primary metric)")
    sweep.add_argument("--direction", choices=DIRECTIONS, default=None,
                       help="default: the project's primary_metric_goal")
    sweep.add_argument("--jobs", type=int, default=1, help="trials at once (default 1); each trial's stages "
                                                           "share the session's CPU budget")
    sweep.add_argument("--seed", type=int, default=None, help="the sampler's seed, for a repeatable search")
    sweep.add_argument("--name", default=None, help="the sweep's name (default PROJECT-YYYYMMDD-HHMMSS)")
    sweep.add_argument("--resume", metavar="NAME", default=None,
                       help="carry on a stopped sweep (its settings are kept; --trials changes how many in all)")
    sweep.add_argument("--register-all", action="store_true",
                       help="register every successful trial's model, not only the best one's")
    add_runner_options(sweep)
    sweep.add_argument("--quiet", "-q", action="store_true", help="do not print stage logs")
    sweep.add_argument("--json", action="store_true", help="print the sweep (trials, best) as JSON at the end")

    sweeps = sub.add_parser("sweeps", help="list sweeps and their best trial (= workbench sweep status)")
    sweeps.add_argument("project", nargs="?", help="only this project's sweeps")
    sweeps.add_argument("--json", action="store_true")


def cmd_sweep(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    if args.project == "status":
        return _status(printer, workspace, args.status_project, args.json)
    if args.status_project:
        raise UsageError(f"sweep: one project at a time (given: {args.project}, {args.status_project})")
    runner = args.runner
    if args.resume is not None and runner is None:  # the runner it started on (its stages' cache keys)
        runner = SweepService(WorkbenchSession(workspace, notice=printer.notice)).runner_of(args.resume) or runner
    session = WorkbenchSession(workspace, runner=runner, notice=printer.notice, scheduler=args.scheduler)
    service = SweepService(session)
    printer.show_logs = not args.quiet
    if args.resume is None:
        plan = service.plan(SweepRequest(args.project, tuple(args.params), args.trials, args.sampler, args.metric,
                                         args.direction, args.seed, args.name, args.register_all, args.jobs))
        if not args.json:
            printer.out.print(f"[bold]sweep {escape(plan.name)}[/] · {escape(plan.project)} · {plan.trials} trials · "
                              f"{plan.sampler} · {plan.direction} {escape(plan.metric)}")
    elif args.params or args.sampler or args.metric or args.direction or args.name or args.seed is not None:
        raise UsageError("--resume keeps the sweep's own params, sampler, metric, direction, seed and name; "
                         "only --trials may change")
    else:
        check_jobs(args.jobs)
    _recover(session, printer)
    events = (lambda _e: None) if args.json else _trial_events(printer, args.jobs > 1)
    with guard.cancels_run() as cancel:  # Ctrl-C: every trial in flight is recorded cancelled, the sweep stops
        if args.resume is None:
            report = service.start(plan, cancel, events, *_trial_sinks(printer, args.json), jobs=args.jobs)
        else:
            report = service.resume(args.resume, args.project, args.trials, cancel, events,
                                    *_trial_sinks(printer, args.json), jobs=args.jobs)
    if args.json:
        printer.json(_as_json(report))
    else:
        _summary(printer, report)
    if guard.signum is not None:
        return guard.exit_code
    return 0 if report.best is not None else 1


def cmd_sweeps(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    return _status(printer, workspace, args.project, args.json)


def _recover(session: WorkbenchSession, printer: Printer) -> None:
    report = session.recover()
    if report.interrupted_runs:
        printer.notice(f"marked run(s) {', '.join(map(str, report.interrupted_runs))} interrupted: "
                       "the workbench that ran them stopped")


def _trial_events(printer: Printer, parallel: bool = False):
    """A trial's run as `workbench run` shows it, but its end in one line (the trial's): the
    metrics and gates tables of every trial are what `workbench compare --sweep` is for.
    `parallel`: trials' lines interleave, so each stage is named with its run (`train (run 3)`),
    which the trial's own lines name too."""

    def show(event) -> None:
        if isinstance(event, RunFinished):
            return
        if parallel and isinstance(event, (StageStarted, StageLog, StageProgress)):
            event = replace(event, stage=f"{event.stage} (run {event.run_id})")
        elif parallel and isinstance(event, StageFinished):
            event = replace(event, result=replace(event.result, stage=f"{event.result.stage} (run {event.run_id})"))
        printer.event(event)

    return show


def _trial_sinks(printer: Printer, quiet: bool):
    con = printer.out

    def started(number: int, values: dict) -> None:
        if not quiet:
            con.print(f"[bold magenta]◆ trial {number}[/] {escape(_values(values))}")

    def finished(trial: TrialReport) -> None:
        if quiet:
            return
        if trial.changed_files:
            shown = ", ".join(trial.changed_files[:5]) + (" …" if len(trial.changed_files) > 5 else "")
            con.print(f"  [yellow]the project changed since the trial before: {escape(shown)}[/] "
                      "(each trial runs the project as it was when the trial started)")
        value = "—" if trial.value is None else formatting.metric(trial.value)
        reason = f": {escape(trial.reason)}" if trial.reason and trial.state != "complete" else ""
        status = f" ({trial.run_status.replace('_', ' ')})" if trial.run_status not in (None, "succeeded") else ""
        con.print(f"[bold magenta]◆ trial {trial.number}[/] {trial.state} · run {trial.run_id}{status} · "
                  f"{value}{reason}")

    return started, finished


def _values(values: dict) -> str:
    return " ".join(f"{k}={formatting.metric(v) if isinstance(v, float) else v}" for k, v in values.items())


def _summary(printer: Printer, report: SweepReport) -> None:
    con = printer.out
    con.print(f"\n[bold]sweep {escape(report.name)}[/] · {report.done}/{report.wanted} trials · "
              f"{report.direction} {escape(report.metric)}")
    if report.best is None:
        con.print("no trial succeeded yet")
    else:
        b = report.best
        con.print(f"best: trial {b.number} · run {b.run_id} · {escape(report.metric)} "
                  f"{formatting.metric(b.value)} · {escape(_values(b.params))}")
    if report.registered is not None:
        version, created = report.registered
        con.print(f"[bold]model[/] of the best trial {'registered as' if created else 'is'} version {version} of "
                  f"{escape(report.project)}")
    if report.stopped:
        con.print(f"stopped: `workbench sweep {escape(report.project)} --resume {escape(report.name)}` "
                  "carries on with the remaining trials")
    con.print(f"[dim]`workbench compare {escape(report.project)} --sweep {escape(report.name)}` shows the "
              "trials side by side[/]")


def _status(printer: Printer, workspace: Path, project: str | None, as_json: bool) -> int:
    session = WorkbenchSession(workspace, notice=printer.notice)
    reports = SweepService(session).sweeps(project)
    if as_json:
        printer.json([_as_json(r) for r in reports])
        return 0
    if not reports:
        printer.out.print("no sweeps yet: try `workbench sweep PROJECT --param KEY=SPEC`")
        return 0
    for r in reports:
        best = (f"best trial {r.best.number} (run {r.best.run_id}) {formatting.metric(r.best.value)} · "
                f"{_values(r.best.params)}") if r.best else "no trial succeeded"
        running = sum(1 for t in r.trials if t.state == "running")  # not "abandoned": its process is gone
        state = "running" if running else ("complete" if r.done >= r.wanted else "stopped")
        printer.out.print(f"[bold]{escape(r.name)}[/] · {escape(r.project)} · {r.done}/{r.wanted} trials · {state} · "
                          f"{r.direction} {escape(r.metric)} · {escape(best)}")
    return 0


def _as_json(report: SweepReport) -> dict:
    def trial(t: TrialReport | None):
        if t is None:
            return None
        return {"number": t.number, "state": t.state, "value": t.value, "params": t.params, "run_id": t.run_id,
                "run_status": t.run_status, "reason": t.reason, "changed_files": list(t.changed_files)}

    return {"name": report.name, "project": report.project, "metric": report.metric, "direction": report.direction,
            "sampler": report.sampler, "wanted": report.wanted, "done": report.done, "stopped": report.stopped,
            "best": trial(report.best),
            "registered": None if report.registered is None else {"version": report.registered[0],
                                                                  "created": report.registered[1]},
            "trials": [trial(t) for t in report.trials]}

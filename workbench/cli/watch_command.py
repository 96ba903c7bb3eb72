"""`workbench watch PROJECT [PROJECT...]`: rerun what each file change affects, until Ctrl-C.

Ctrl-C (or SIGTERM, SIGHUP, a closed pipe) stops cleanly: the watchers stop, runs in flight are
cancelled (their containers or processes stopped) and recorded as cancelled, a one-line summary
is printed, and the exit code is 128 + the signal's number (130 for Ctrl-C), as for any
interrupted command. Nothing is left marked running.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections import Counter
from pathlib import Path

from rich.markup import escape

from workbench.cli.interrupts import SIGNALS
from workbench.cli.render import Printer, fmt_duration, fmt_metric, glyph
from workbench.core.events import ModelRegistered, RunEvent, RunFinished, RunRecordedElsewhere, WatchedElsewhere
from workbench.services.session import WorkbenchSession

EXIT_BAD_INPUT, EXIT_INTERRUPTED = 3, 130


def cmd_watch(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = WorkbenchSession(workspace, runner=args.runner, notice=printer.notice, scheduler=args.scheduler)
    names = list(args.projects)
    if not names:
        for ref in session.projects():
            if ref.error:
                printer.notice(f"not watching {ref.name}: {ref.error}")
            elif ref.manifest.watch.enabled:
                names.append(ref.name)
        if not names:
            printer.error(f"no project to watch in {session.workspace.root} "
                          "(none found, or all have watch.enabled = false)")
            return EXIT_BAD_INPUT
    else:
        for name in names:
            session.project(name)  # a bad name or manifest fails before anything starts

    report = session.recover()
    if report.interrupted_runs:
        printer.notice(f"marked run(s) {', '.join(map(str, report.interrupted_runs))} interrupted: "
                       "the workbench that ran them stopped")
    if report.removed_containers:
        printer.notice(f"removed {report.removed_containers} container(s) left by a workbench that stopped")
    printer.show_logs = not args.quiet

    outcomes: Counter[str] = Counter()
    print_lock = threading.Lock()  # events come from one thread per project and per run

    def on_event(event: RunEvent) -> None:
        with print_lock:
            if isinstance(event, RunFinished):
                outcomes[str(event.record.status)] += 1
            line = _watch_line(event)
            if line is not None:
                printer.out.print(line)
            else:
                printer.event(event)

    # Ctrl-C, SIGTERM, SIGHUP and a closed pipe raise Interrupted here (cli/interrupts.py);
    # main() turns it into 128 + the signal's number.
    _watch_until_interrupted(session, printer, print_lock, on_event, names, args.debounce_ms)
    runs = sum(outcomes.values())
    detail = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items()))
    printer.out.print(f"stopped watching · {runs} run{'s' if runs != 1 else ''}" + (f" ({detail})" if detail else ""))
    return EXIT_INTERRUPTED


def _watch_until_interrupted(session: WorkbenchSession, printer: Printer, print_lock: threading.Lock, on_event,
                             names: list[str], debounce_ms: int | None) -> None:
    from workbench.services.watch import WatchService

    service = WatchService(session, on_event, debounce_ms=debounce_ms, who="workbench watch")
    try:
        for name in names:
            service.watch(name)
        with print_lock:
            here = [name for name in names if service.watched_elsewhere(name) is None]
            elsewhere = [name for name in names if name not in here]
            shown = ", ".join(here) or "nothing here yet"
            if elsewhere:
                shown += f" (waiting to take over {', '.join(elsewhere)})"
            where = getattr(session.runner, "address", "")  # the cluster's scheduler
            printer.out.print(f"[bold]watching[/] {escape(shown)} · runner "
                              f"{session.runner.name}{escape(' ' + where if where else '')} · a change reruns what it "
                              "affects · Ctrl-C to stop")
        while not threading.Event().wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        _close(service)


def _watch_line(event: RunEvent) -> str | None:
    """The lines only `workbench watch` shows (None: the printer's own)."""
    match event:
        case ModelRegistered() if event.trigger != "drift":  # a drift retrain says it in its own line
            return (f"[green]→[/] registered [bold]{escape(event.project)}[/] v{event.version} (run "
                    f"{event.run_id}; `workbench promote {escape(event.project)} {event.version} --to staging`)")
        case WatchedElsewhere():
            return (f"[cyan]◎[/] {escape(event.project)} is watched by pid {event.pid} ({escape(event.holder)}); "
                    "its runs will show here, and this watch takes over when it stops")
        case RunRecordedElsewhere():
            run = event.run
            took = f" · {fmt_duration(run.duration_s)}" if run.duration_s is not None else ""
            metric = f" · primary {fmt_metric(run.primary_metric)}" if run.primary_metric is not None else ""
            return (f"[dim]◎ {escape(event.project)}: run {run.id} ({run.trigger}) by pid {event.pid}:[/] "
                    f"{glyph(run.status)}{took}{metric}")
    return None


def _close(service) -> None:
    """Cancel and record runs in flight; a second Ctrl-C (or SIGTERM, SIGHUP) must not cut that
    short."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in SIGNALS}
    try:
        service.close()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

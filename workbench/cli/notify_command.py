"""`workbench notify test | status | sync`: the alerts of `[notify]` from the shell.

`test` sends one test event straight to each receiver (not through the outbox) and prints each
answer; `status` lists the alerts still waiting, with their last error; `sync` delivers what is
due now (what a detached drainer would do), ignoring backoff.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from workbench.cli.render import Printer, fitted_table
from workbench.core.serialize import to_jsonable

EXIT_OK, EXIT_NOT_DONE, EXIT_BAD_INPUT = 0, 1, 3


def add_parser(sub) -> None:
    notify = sub.add_parser("notify", help="alerts to webhooks ([notify]): test, status, sync")
    notify_sub = notify.add_subparsers(dest="notify_command", metavar="NOTIFY_COMMAND")
    test = notify_sub.add_parser("test", help="send one test event to each configured receiver and print the answer")
    test.add_argument("--project", "-p", default=None,
                      help="the receivers of this project (its manifest's and the workspace's; default: "
                           "the workspace's workspace.toml)")
    test.add_argument("--json", action="store_true")
    status = notify_sub.add_parser("status", help="alerts not delivered yet, with their last error")
    status.add_argument("--limit", type=int, default=50, help="list at most this many (default 50)")
    status.add_argument("--json", action="store_true")
    sync = notify_sub.add_parser("sync", help="deliver the waiting alerts now (ignoring their backoff)")
    sync.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    sync.add_argument("--json", action="store_true")


def cmd_notify(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.services.session import WorkbenchSession

    if args.notify_command == "sync" and args.background:
        # The detached process other commands start: quiet, gone at once if another one delivers.
        WorkbenchSession(workspace).alerts.sync_in_background()
        return EXIT_OK
    session = WorkbenchSession(workspace, notice=printer.notice)
    alerts = session.alerts
    if args.notify_command == "test":
        return _test(args, printer, session)
    if args.notify_command == "sync":
        sent, failed = alerts.drain(force=True)
        status = alerts.status()
        if args.json:
            printer.json({"sent": sent, "failed": failed, "status": status})
        else:
            mark = "[green]✓[/]" if status.pending == 0 else "[yellow]![/]"
            printer.out.print(f"{mark} delivered {sent}, failed {failed}; {status.pending} undelivered"
                              + (f"; last error: {escape(status.last_error)}" if status.last_error else ""))
        return EXIT_OK if status.pending == 0 else EXIT_NOT_DONE
    return _status(args, printer, alerts)


def _test(args: argparse.Namespace, printer: Printer, session) -> int:
    project = session.project(args.project).name if args.project else ""
    receivers = session.alerts.check_config(project)  # a broken [notify] is an error naming file and key
    if not receivers.webhooks:
        where = f"{project}'s workbench.toml or " if project else ""
        printer.error(f"no receivers: add [[notify.webhooks]] url = \"...\" to {where}"
                      f"{session.alerts.config_path}")
        return EXIT_BAD_INPUT
    results = session.alerts.send_test(project)
    if args.json:
        printer.json(results)
    else:
        for r in results:
            mark = "[green]✓[/]" if r.ok else "[red]✗[/]"
            printer.out.print(f"{mark} {escape(r.receiver)}  {escape(r.detail)}")
    return EXIT_OK if all(r.ok for r in results) else EXIT_NOT_DONE


def _status(args: argparse.Namespace, printer: Printer, alerts) -> int:
    status = alerts.status()
    waiting = alerts.undelivered(limit=max(args.limit, 1))
    if args.json:
        printer.json({"status": status, "undelivered": [to_jsonable(d) for d in waiting]})
        return EXIT_OK
    colour = "green" if status.pending == 0 else ("red" if status.failing else "yellow")
    head = "every alert delivered" if status.pending == 0 else f"{status.pending} alert delivery(ies) waiting"
    printer.out.print(f"[{colour}]{head}[/]" + (f"  [dim]({status.delivered} delivered so far)[/]"
                                                 if status.delivered else ""))
    if not waiting:
        return EXIT_OK
    rows = [[str(d.alert_id), d.created_at.astimezone().strftime("%m-%d %H:%M:%S"), escape(d.project or "-"),
             d.kind, escape(d.receiver_shown), str(d.attempts),
             escape(d.last_error or "not tried yet")
             + (f" (next try {d.next_attempt_at.astimezone():%H:%M:%S})" if d.next_attempt_at else "")]
            for d in waiting]
    printer.out.print(fitted_table([("alert", "right"), ("when", "left"), ("project", "left"), ("kind", "left"),
                                    ("receiver", "left"), ("tries", "right"), ("last error", "left")],
                                   rows, gives_way="last error"))
    if status.pending > len(waiting):
        printer.out.print(f"[dim]and {status.pending - len(waiting)} more (--limit)[/]")
    printer.out.print("[dim]deliver now: `workbench notify sync`[/]")
    return EXIT_OK

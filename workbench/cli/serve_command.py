"""`workbench serve PROJECT [--alias A] [--port N] [--host H]`, `workbench serve status [--json]`,
`workbench serve stop [PROJECT]`.

`serve PROJECT` starts one server container per alias and stays in the foreground until Ctrl-C
(or SIGTERM), then removes them: the containers are owned by this process, so a workbench that
died leaves orphans the next one's cleanup removes (adapters/container_owner.py). It also ends
when its containers are stopped from elsewhere (`workbench serve stop`), and starts again a
server container that died (killed, out of memory) within a second.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.markup import escape

from workbench.cli.render import Printer

EXIT_OK, EXIT_USAGE = 0, 64
WATCH_INTERVAL_S = 1.0
DEAD = ("exited", "dead")
"""A server container in these states crashed or was killed (out of memory, `docker kill`): the
foreground `workbench serve` starts it again; one that is gone was stopped on purpose."""


def add_parser(sub) -> None:
    serve = sub.add_parser("serve", help="serve a project's production (and staging) model over HTTP, "
                                         "following promotions; `serve status`, `serve stop [PROJECT]`")
    serve.add_argument("target", help="PROJECT to serve, or `status`, or `stop`")
    serve.add_argument("project", nargs="?", help="with `stop`: only this project's servers")
    serve.add_argument("--alias", choices=["production", "staging"], default=None,
                       help="serve only this alias (default: production, and staging when it holds a version)")
    serve.add_argument("--port", type=_port, default=0, metavar="N",
                       help="host port of the first alias (the next alias gets N+1; default: free ports)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to publish on (default 127.0.0.1; another only when you mean it)")
    serve.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                       help="how often each server checks its alias's deploy pointer (default 1)")
    serve.add_argument("--json", action="store_true")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return port


def cmd_serve(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.services.serving import ServingService
    from workbench.services.session import WorkbenchSession

    session = WorkbenchSession(workspace, notice=printer.notice)
    if args.target == "status":
        return _status(ServingService(session), printer, args.json)
    if args.target == "stop":
        stopped = ServingService(session).stop(args.project)
        if args.json:
            printer.json({"stopped": stopped})
        else:
            printer.out.print(f"stopped {len(stopped)} server(s)" + (": " + ", ".join(stopped) if stopped else ""))
        return EXIT_OK
    if args.project:
        printer.error(f"unexpected {args.project!r}: `workbench serve PROJECT` serves one project "
                      "(`workbench serve stop PROJECT` stops one)")
        return EXIT_USAGE
    service = ServingService(session)
    project = session.project(args.target).name
    if args.alias:
        aliases = (args.alias,)
    else:
        aliases = ("production",) + (("staging",) if session.registry.deployed(project, "staging") else ())
    report = session.recover()
    if report.removed_containers:
        printer.notice(f"removed {report.removed_containers} container(s) left by a workbench that stopped")
    started = service.start(project, aliases, args.host, args.port, _log(printer), poll_s=args.poll)
    names = [s.container for s in started]
    from workbench.services.serving_monitor import ServingMonitor  # production's traffic -> drift batches
    monitor = ServingMonitor(session, project, lambda m: printer.out.print(escape(m))) if "production" in aliases \
        else None
    try:
        for server in started:
            printer.out.print(f"serving {escape(project)} {server.alias} version {server.version} at "
                              f"{server.url}  (POST /predict, GET /health)")
        printer.out.print("Ctrl-C stops the servers")
        while True:
            time.sleep(WATCH_INTERVAL_S)
            if monitor is not None:
                monitor.tick(time.time())
            found = {s.container: s for s in service.status(project) if s.container in names}
            if not found:  # removed (`workbench serve stop`), not crashed
                printer.out.print("the servers were stopped")
                return EXIT_OK
            for name, server in found.items():
                if server.problem in DEAD:
                    code = service.restart(name)
                    printer.notice(f"the {server.alias} server {name} stopped (exit code {code}): restarted it")
    finally:
        service.stop(project, names)
        if monitor is not None:  # after the servers: a retrain is cancelled, a check may take seconds
            monitor.close()


def _log(printer: Printer):
    """Image builds: say what is waited for (StatusLine); the rest only with -v."""
    from workbench.core.ports import StatusLine

    def on_log(line) -> None:
        if isinstance(line, StatusLine) or printer.verbose:
            printer.err.print(escape(str(line)), highlight=False)
    return on_log


def _status(service, printer: Printer, as_json: bool) -> int:
    found = service.status()
    if as_json:
        printer.json([s.as_json() for s in found])
        return EXIT_OK
    if not found:
        printer.out.print("nothing is served (start with `workbench serve PROJECT`)")
        return EXIT_OK
    for s in found:
        health = "healthy" if s.healthy else f"unhealthy: {s.problem}"
        printer.out.print(f"{escape(s.project)}  {s.alias:<10}  version {s.version if s.version is not None else '-'}"
                          f"  {s.url or '-'}  {s.container}  since {s.since}  {health}")
    return EXIT_OK


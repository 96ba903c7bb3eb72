"""`workbench serve PROJECT [--alias A] [--port N] [--host H]`, `workbench serve status [--json]`,
`workbench serve stop [PROJECT]`.

`serve PROJECT` starts one server container per alias and stays in the foreground until Ctrl-C
(or SIGTERM), then removes them: the containers are owned by this process, so a workbench that
died leaves orphans the next one's cleanup removes (adapters/container_owner.py). It also ends
when its containers are stopped from elsewhere (`workbench serve stop`), and starts again a
server container that died (killed, out of memory): at once, then after growing pauses, at most
`--max-restarts` times in 5 minutes (services/serving.py ServerSupervisor); it exits 1 once no
server is left.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.markup import escape
from rich.padding import Padding

from workbench.cli.render import Printer

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 64
WATCH_INTERVAL_S = 1.0


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
    serve.add_argument("--max-restarts", type=_count, default=4, metavar="N",
                       help="start a crashed server again at most N times in 5 minutes, after growing pauses "
                            "(default 4; 0: never)")
    serve.add_argument("--json", action="store_true")


def _count(text: str) -> int:
    if not text.isdigit() or int(text) > 1000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 1000, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return port


def cmd_serve(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.core.restart_policy import RestartPolicy
    from workbench.services.serving import ServingService
    from workbench.services.serving_keeper import ServingKeeper
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
    keeper = ServingKeeper(service, project, names, aliases, lambda m: printer.out.print(escape(m)),
                           RestartPolicy(max_crashes=args.max_restarts + 1))
    try:
        for server in started:
            printer.out.print(f"serving {escape(project)} {server.alias} version {server.version} at "
                              f"{server.url}  (POST /predict, GET /health)")
        printer.out.print("Ctrl-C stops the servers")
        while True:
            time.sleep(WATCH_INTERVAL_S)
            said, alive = keeper.tick()
            for line in said:
                printer.notice(line)
            if keeper.given_up and not alive:
                printer.error(f"no server of {escape(project)} is left running")
                return EXIT_FAILED
            if not alive:  # removed (`workbench serve stop`), not crashed
                printer.out.print("the servers were stopped")
                return EXIT_OK
    finally:
        service.stop(project, names)
        keeper.close()  # after the servers: a retrain is cancelled, a check may take seconds


def _log(printer: Printer):
    """Image builds: say what is waited for (StatusLine); the rest only with -v."""
    from workbench.core.ports import StatusLine

    def on_log(line) -> None:
        if isinstance(line, StatusLine) or printer.verbose:
            printer.err.print(escape(str(line)), highlight=False)
    return on_log


def _status(service, printer: Printer, as_json: bool) -> int:
    """Per project and alias: the served version, url and health, then one row per version and
    role (champion first, a challenger or shadow beside it): requests, errors and p50/p95/p99 since
    the server started, req/s over one second (serving_stats.snapshot)."""
    from workbench.services.serving_stats import snapshot, with_quality

    found = service.status()
    urls = [_local(s.url) for s in found if s.healthy and s.url]
    stats = snapshot(urls) if urls else {}
    for s in found:
        if _local(s.url) in stats:
            stats[_local(s.url)] = with_quality(stats[_local(s.url)], _live_quality(service, s.project, s.alias))
    if as_json:
        printer.json([s.as_json() | _stats_json(stats.get(_local(s.url))) for s in found])
        return EXIT_OK
    if not found:
        printer.out.print("nothing is served (start with `workbench serve PROJECT`)")
        return EXIT_OK
    for s in found:
        health = "[green]healthy[/]" if s.healthy else f"[red]unhealthy: {escape(s.problem)}[/]"
        printer.out.print(f"[bold]{escape(s.project)}[/]  {s.alias}  version {s.version if s.version is not None else '-'}"
                          f"  {s.url or '-'}  {health}  [dim]{s.container}  since {s.since}[/]")
        served = stats.get(_local(s.url))
        if served is None:
            continue
        if served.problem:
            printer.out.print(f"  [yellow]no figures: {escape(served.problem)}[/]")
        elif not served.rows:
            printer.out.print("  no requests yet")
        else:
            printer.out.print(Padding(_stats_table(served.rows), (0, 0, 0, 2), expand=False))
            for line in _contract_lines(served.rows):
                printer.out.print(line)
    return EXIT_OK


def _contract_lines(rows) -> list[str]:
    """One line per version and role whose requests broke its data contract (values by column and rule)."""
    lines = []
    for row in rows:
        if row.contract_breaches:
            said = ", ".join(f"{escape(column)} {rule} {count:,}" for column, rule, count in row.contract_breaches)
            lines.append(f"  [yellow]version {row.version} ({row.role}): contract breaches: {said}[/]")
    return lines


def _live_quality(service, project: str, alias: str) -> dict:
    """{version: Quality} from the alias's traffic log joined with its feedback ({} without)."""
    from workbench.core.errors import WorkbenchError
    from workbench.services.live_quality import live_quality

    try:
        return live_quality(service.session, project, alias, by_role=True)
    except WorkbenchError:
        return {}


def _local(url: str) -> str:
    return url.replace("0.0.0.0", "127.0.0.1")


def _stats_json(served) -> dict:
    if served is None:
        return {"stats": None}
    # rate: over the second between two scrapes; the other numbers: since the server started.
    return {"stats": served.as_json() | {"rate_over_s": 1.0}}


def _stats_table(rows):
    from workbench.cli.render import fitted_table
    from workbench.services.serving_stats import latency_ms

    quality = any(row.quality is not None for row in rows)
    columns = [("version", "right"), ("role", "left"), ("requests", "right"), ("req/s", "right"),
               ("p50", "right"), ("p95", "right"), ("p99", "right"), ("errors", "right")]
    cells = []
    for row in rows:
        share = f" ({row.error_rate:.1%})" if row.errors else ""
        cells.append([row.version, row.role, f"{row.requests:,}", "-" if row.rate is None else f"{row.rate:.1f}",
                      latency_ms(row.p50), latency_ms(row.p95), latency_ms(row.p99), f"{row.errors:,}{share}"]
                     + ([_quality(row.quality)] if quality else []))
    if quality:
        columns.append(("quality", "left"))
    return fitted_table(columns, cells, gives_way="quality" if quality else "role")


def _quality(value) -> str:
    if value is None:
        return "-"
    # a value is None while it cannot be computed (one class among the labels so far)
    number = "-" if value.value is None else f"{value.value:.4g}"
    return f"{value.metric} {number} ({value.labelled_rows:,} labelled)"

"""`workbench cluster status [--scheduler ADDR] [--json]`: the Dask cluster's workers, the
resources they declare (what `--runner cluster` stages ask for) and the stages each runs."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from workbench.cli.render import Printer


def add_parser(sub) -> None:
    cluster = sub.add_parser("cluster", help="the Dask cluster that --runner cluster uses")
    commands = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND")
    status = commands.add_parser("status", help="workers, their resources, and the stages each runs")
    status.add_argument("--scheduler", default=None, metavar="ADDR",
                        help="the Dask scheduler (default: $WORKBENCH_SCHEDULER)")
    status.add_argument("--json", action="store_true")


def cmd_cluster(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.adapters.cluster_runner import SCHEDULER_VARIABLE, SchedulerUnavailable, cluster_status

    address = args.scheduler or os.environ.get(SCHEDULER_VARIABLE, "")
    if not address:
        raise SchedulerUnavailable(f"which cluster? --scheduler tcp://HOST:8786 or ${SCHEDULER_VARIABLE}")
    workers = cluster_status(address)
    if args.json:
        printer.out.print_json(json.dumps([asdict(w) for w in workers]))
        return 0
    if not workers:
        printer.out.print(f"no worker is connected to {escape(address)}")
        return 0
    table = Table(title=f"cluster {escape(address)}", title_justify="left")
    for column in ("worker", "host", "threads", "resources", "running"):
        table.add_column(column)
    for worker in workers:
        resources = ", ".join(f"{name}={value:g}" for name, value in worker.resources.items()) or "—"
        table.add_row(escape(worker.name), escape(worker.host), str(worker.threads), escape(resources),
                      escape("\n".join(worker.running) or "idle"))
    printer.out.print(table)
    return 0

"""`workbench cluster status [--scheduler ADDR] [--json]`: the Dask cluster's workers, the
resources they declare (what `--runner cluster` stages ask for) and the stages each runs.

The scheduler: --scheduler, else $WORKBENCH_SCHEDULER, else workspace.toml's `[cluster]
scheduler`. Exit codes: 0 the scheduler answered (even with no worker); 1 it did not (one line
on stderr naming the address and where it came from); 3 no address, or a bad one.

`--json` prints a list of workers sorted by address, each an object with exactly these keys:
`address`, `name`, `host`, `threads`, `memory_limit` (bytes), `resources` (name -> amount, keys
sorted) and `running` (the workbench stages it runs or holds, `project/stage (run N)`, sorted;
another client's task shows as its Dask key).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from workbench.cli.render import Printer
from workbench.services.cluster import cluster_status
from workbench.services.session import WorkbenchSession

JSON_KEYS = ("address", "name", "host", "threads", "memory_limit", "resources", "running")


def add_parser(sub) -> None:
    cluster = sub.add_parser("cluster", help="the Dask cluster that --runner cluster uses")
    commands = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND")
    status = commands.add_parser("status", help="workers, their resources, and the stages each runs")
    status.add_argument("--scheduler", default=None, metavar="ADDR",
                        help="the Dask scheduler (default: $WORKBENCH_SCHEDULER, else workspace.toml's "
                             "[cluster] scheduler)")
    status.add_argument("--json", action="store_true")


def cmd_cluster(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = WorkbenchSession(workspace, notice=printer.notice, scheduler=args.scheduler)
    choice, workers = cluster_status(session)
    address = choice.address
    if args.json:
        printer.out.print_json(json.dumps([_as_json(asdict(w)) for w in sorted(workers, key=lambda w: w.address)]))
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


def _as_json(worker: dict) -> dict:
    """The stable shape (module docstring): these keys in this order, lists and tables sorted."""
    shown = {key: worker[key] for key in JSON_KEYS}
    shown["resources"] = {name: shown["resources"][name] for name in sorted(shown["resources"])}
    shown["running"] = sorted(shown["running"])
    return shown

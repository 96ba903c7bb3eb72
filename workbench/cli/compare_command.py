"""`workbench compare [PROJECT] [RUN_ID...]`: runs side by side, one row per run, a column per
param that differs and per metric (as `dvc exp show`); `--json` and `--csv` for scripts."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from rich.cells import cell_len
from rich.markup import escape

from workbench.cli.render import GLYPHS, Printer
from workbench.core import formatting
from workbench.core.compare import CompareTable, cell_value
from workbench.core.errors import UsageError
from workbench.services.compare import DEFAULT_LIMIT, CompareRequest
from workbench.services.session import WorkbenchSession


def add_parser(sub) -> None:
    compare = sub.add_parser("compare", help="runs side by side: a params x metrics table (as dvc exp show)")
    compare.add_argument("targets", nargs="*", metavar="PROJECT|RUN_ID",
                         help="run ids to compare, and/or a project (default: the project's newest runs)")
    compare.add_argument("--project", "-p", help="the project (instead of naming it among the targets)")
    compare.add_argument("--sweep", metavar="NAME", help="the runs of a sweep's trials (workbench sweeps lists them)")
    compare.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                         help=f"at most this many of the newest runs (default {DEFAULT_LIMIT}; 0 = all)")
    compare.add_argument("--all", action="store_true", dest="all_params",
                         help="every param, not only those that differ between the runs shown, and the "
                              "per-group metrics (group.<column>.<value>.<stat>)")
    compare.add_argument("--sort", metavar="[-]COLUMN", help="order by a param or metric; -auc: highest first")
    compare.add_argument("--where", action="append", default=[], metavar="EXPR",
                         help="only runs where this holds, e.g. 'auc > 0.84 and learning_rate <= 0.1' "
                              "(= != < <= > >=, and / or; repeatable: all must hold)")
    output = compare.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true")
    output.add_argument("--csv", action="store_true", help="CSV on stdout (run, status, started, then each column)")


def glue_dash_values(argv: list[str]) -> list[str]:
    """`--sort -auc` as `--sort=-auc`: argparse takes a value that starts with `-` for an option."""
    glued, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        following = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "--sort" and following is not None and following.startswith("-") and len(following) > 1:
            glued.append(f"--sort={following}")
            skip = True
        else:
            glued.append(arg)
    return glued


def request_of(args: argparse.Namespace) -> CompareRequest:
    """Targets: integers are run ids, one other word is the project."""
    run_ids, projects = [], []
    for target in args.targets:
        (run_ids if target.isdigit() else projects).append(target)
    if args.project:
        projects.insert(0, args.project)
    if len(set(projects)) > 1:
        raise UsageError(f"compare: one project at a time (given: {', '.join(dict.fromkeys(projects))})")
    return CompareRequest(project=projects[0] if projects else None, run_ids=tuple(int(i) for i in run_ids),
                          where=tuple(args.where), sort=args.sort, limit=args.limit or None,
                          all_params=args.all_params)


def cmd_compare(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = WorkbenchSession(workspace, notice=printer.notice)
    request = request_of(args)
    if args.sweep:
        from dataclasses import replace

        from workbench.services.sweep import SweepService

        trial_runs = SweepService(session).run_ids(args.sweep)
        if not trial_runs:
            raise UsageError(f"sweep {args.sweep} has no trial runs yet")
        request = replace(request, run_ids=tuple(trial_runs) + request.run_ids)
    table = session.compare(request)
    out = printer.out.file
    if args.json:
        _write_json(out, table)
        return 0
    if args.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["run", "status", "started"] + [c.label for c in table.columns])
        for row in table.rows:
            writer.writerow([row.run_id, row.status, row.started_at.isoformat()]
                            + ["" if (v := cell_value(row, c)) is None else _plain(v) for c in table.columns])
        return 0
    _print_table(printer, table, filtered=bool(args.where))
    return 0


def _write_json(out, table: CompareTable) -> None:
    """The table as one JSON object, a run per line: json's C encoder works only without
    indent, and indenting 10,000 runs in Python took 5 s."""
    head = json.dumps({**table.to_json_head(), "runs": []}, allow_nan=False)
    encode = json.JSONEncoder(allow_nan=False).encode
    runs = ",\n".join(" " + encode(run) for run in table.runs_json())
    out.write(head[:-len("[]}")] + ("[\n" + runs + "\n]}" if runs else "[]}") + "\n")


def _plain(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def _shown(value) -> str:
    """A cell as `run`, `show` and `card` print numbers (`22`, `1,475`, `0.8487`), not `22.0`."""
    if value is None:
        return "—"
    if isinstance(value, float) and math.isfinite(value):
        return formatting.metric(value)
    return _plain(value)


def _print_table(printer: Printer, table: CompareTable, filtered: bool) -> None:
    """Aligned plain columns, written line by line: rich measures every cell of a Table, which
    took 14 s for 2,000 runs x 57 columns (the status glyphs tell outcomes apart without colour)."""
    con = printer.out
    if not table.rows:
        con.print("no run matches --where" if filtered else "no runs recorded yet: try `workbench run PROJECT`")
        return
    titles = ["run", "status", "started"] + [c.label for c in table.columns]
    right = [True, False, False] + [True] * len(table.columns)
    lines = [[str(row.run_id), f"{GLYPHS.get(row.status, ('?',))[0]} {row.status.replace('_', ' ')}",
              row.started_at.astimezone().strftime("%Y-%m-%d %H:%M")]
             + [_shown(cell_value(row, c)) for c in table.columns] for row in table.rows]
    widths = [max(cell_len(title), *(cell_len(line[i]) for line in lines)) for i, title in enumerate(titles)]

    def aligned(cells: list[str]) -> str:
        return "  ".join(cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(cells, widths, right)).rstrip()

    out = con.file
    out.write(aligned(titles) + "\n")
    out.write("".join(aligned(line) + "\n" for line in lines))
    facts = [f"{len(table.rows)} run{'s' if len(table.rows) != 1 else ''}",
             f"{len(table.params)} param{'s differ' if len(table.params) != 1 else ' differs'}"
             if table.hidden else f"{len(table.params)} params", f"{len(table.metrics)} metrics"]
    if table.hidden:
        equal = ", ".join(f"{escape(n)}={escape(str(v))}" for n, v in list(table.hidden.items())[:6])
        more = f" and {len(table.hidden) - 6} more" if len(table.hidden) > 6 else ""
        facts.append(f"{len(table.hidden)} equal param{'s' if len(table.hidden) != 1 else ''} hidden "
                     f"({equal}{more}; --all shows them)")
    if table.hidden_metrics:
        count = len(table.hidden_metrics)
        facts.append(f"{count} per-group metric{'s' if count != 1 else ''} hidden; --all shows them")
    con.print("[dim]" + " · ".join(facts) + "[/]")

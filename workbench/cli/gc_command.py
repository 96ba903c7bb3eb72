"""`workbench gc [PROJECT] [--keep N] [--dry-run] [--json]`: delete the history the workspace no
longer needs (workbench.services.gc says what is kept and why), and say what went and the bytes."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from workbench.cli.render import Printer
from workbench.core.gc_plan import DEFAULT_GRACE_S, DEFAULT_WAIT_S, human_bytes

EXIT_OK = 0


def add_parser(sub) -> None:
    gc = sub.add_parser("gc", help="delete old runs, snapshots and objects nothing needs (keeps the newest "
                                   "[gc] keep_runs per project, versions in staging/production/the audit, "
                                   "what kept runs reused)")
    gc.add_argument("project", nargs="?", help="only this project's runs (default: every project)")
    gc.add_argument("--keep", type=int, metavar="N", default=None,
                    help="keep the newest N runs of each project (default: the manifest's [gc] keep_runs, 50)")
    gc.add_argument("--dry-run", action="store_true", help="only say what would go and the bytes; delete nothing")
    gc.add_argument("--grace", type=float, metavar="SECONDS", default=DEFAULT_GRACE_S,
                    help=f"keep snapshots, objects and folders made in the last SECONDS (default {DEFAULT_GRACE_S:g})")
    gc.add_argument("--wait", type=float, metavar="SECONDS", default=DEFAULT_WAIT_S,
                    help=f"wait this long at most for runs in progress to finish (default {DEFAULT_WAIT_S:g})")
    gc.add_argument("--json", action="store_true")


def cmd_gc(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.services.gc import GcService  # DuckDB only when asked
    from workbench.services.session import WorkbenchSession

    session = WorkbenchSession(workspace, notice=printer.notice)
    service = GcService(session.workspace, session.store)
    report = service.collect(args.project, keep=args.keep, dry_run=args.dry_run, grace_s=args.grace,
                             wait_s=args.wait,
                             on_wait=lambda: printer.notice("waiting for the runs in progress to finish"))
    if args.json:
        printer.json(report.as_json())
    else:
        for line in report_lines(report):
            printer.out.print(line)
    return EXIT_OK


def report_lines(report) -> list[str]:
    verb = "would free" if report.dry_run else "freed"
    head = "dry run: nothing deleted; " if report.dry_run else ""
    lines = [f"{head}{'would delete' if report.dry_run else 'deleted'} {_count(report.run_count, 'run')}, "
             f"{_count(len(report.versions), 'model version')}, {_count(len(report.snapshots), 'snapshot')}, "
             f"{_count(len(report.objects), 'object')}, {_count(len(report.releases), 'deploy release')}, "
             f"{_count(len(report.profiles), 'drift profile')}: {verb} {human_bytes(report.bytes)}"]
    for project, ids in report.runs.items():
        lines.append(f"  {escape(project)}: {_count(len(ids), 'run')} ({_ranges(ids)})")
    for project, version in report.versions:
        lines.append(f"  {escape(project)} version {version} (its run goes; no alias or audit row names it)")
    for release in report.releases:
        lines.append(f"  release {escape(release)}")
    if report.folders:
        lines.append(f"  and {_count(len(report.folders), 'leftover')} ({escape(', '.join(report.folders[:3]))}"
                     f"{', ...' if len(report.folders) > 3 else ''})")
    pinned = {}
    for why in report.kept.values():
        pinned[_reason_kind(why)] = pinned.get(_reason_kind(why), 0) + 1
    if pinned:
        lines.append("kept " + _count(len(report.kept), "run") + ": " +
                     ", ".join(f"{n} {kind}" for kind, n in sorted(pinned.items(), key=lambda kv: -kv[1])))
    lines += [f"[dim]{escape(note)}[/]" for note in report.notes]
    return lines


def _reason_kind(why: str) -> str:
    if why.startswith("one of the newest"):
        return "newest"
    if why.startswith("version"):
        return "for a version (alias, audit, newest, drift, mirror)"
    if "reused" in why:
        return "reused by a kept run"
    if why.startswith("drift"):
        return "linked by a drift batch"
    return why


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _ranges(ids: list[int]) -> str:
    """`1-12, 15, 20-22`: run ids, consecutive ones as a range."""
    parts, start, prev = [], None, None
    for i in sorted(ids):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            parts.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = i
    if start is not None:
        parts.append(f"{start}-{prev}" if prev != start else str(start))
    shown = parts[:8]
    return "runs " + ", ".join(shown) + (f", ... ({len(parts) - 8} more ranges)" if len(parts) > 8 else "")

"""`workbench contract infer PATH` and `workbench contract check PROJECT`: write a first data
contract from a data file, and check a project's data against its contracts (docs/contracts.md).

`check` exits 0 when no error-level check broke (warnings are printed), 1 when one did, and 3
for a contract or data file that cannot be read."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from workbench.cli.render import Printer
from workbench.core.contract import DEFAULT_MARGIN, ContractReport, contract_path_for

EXIT_OK, EXIT_BROKEN = 0, 1


def add_parser(sub) -> None:
    contract = sub.add_parser("contract", help="data contracts: infer a first one from a data file, check a project's data")
    contract_sub = contract.add_subparsers(dest="contract_command")
    infer = contract_sub.add_parser("infer", help="print (or --write) a contract inferred from a CSV or Parquet file")
    infer.add_argument("path", help="the data file (CSV or Parquet)")
    infer.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                       help=f"widen each numeric range by this share of its span (default {DEFAULT_MARGIN:g})")
    infer.add_argument("--write", action="store_true", help="write it beside the file as PATH.contract.toml")
    infer.add_argument("--force", action="store_true", help="with --write: replace an existing contract")
    check = contract_sub.add_parser("check", help="check a project's data files against their contracts")
    check.add_argument("project", help="project name or folder")
    check.add_argument("--json", action="store_true")


def cmd_contract(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    if args.contract_command == "infer":
        return _infer(args, printer)
    return _check(args, printer, workspace)


def _infer(args: argparse.Namespace, printer: Printer) -> int:
    from workbench.core.errors import WorkbenchError
    from workbench.services.contracts import infer_text

    path = Path(args.path)
    text = infer_text(path, str(args.path), args.margin)
    if not args.write:
        printer.out.file.write(text)
        return EXIT_OK
    target = Path(contract_path_for(str(path)))
    if target.exists() and not args.force:
        raise WorkbenchError(f"{target} exists already: edit it, or pass --force to replace it")
    try:
        target.write_text(text)
    except OSError as exc:
        raise WorkbenchError(f"cannot write {target}: {exc.strerror}") from None
    printer.out.print(f"[green]✓[/] wrote {escape(str(target))}")
    return EXIT_OK


def _check(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.services.contracts import check_project
    from workbench.services.session import WorkbenchSession

    ref = WorkbenchSession(workspace, notice=printer.notice).project(args.project)
    reports = check_project(ref.path, ref.manifest)
    if args.json:
        printer.json({"project": ref.name, "ok": all(r.passed for r in reports),
                      "reports": [r.to_json() for r in reports]})
    elif not reports:
        printer.out.print(f"{escape(ref.name)} has no data contract: write one with "
                          f"`workbench contract infer DATA_FILE --write` (docs/contracts.md)")
    else:
        for report in reports:
            for line in report_lines(report):
                printer.out.print(line, highlight=False)
    return EXIT_OK if all(r.passed for r in reports) else EXIT_BROKEN


def report_lines(report: ContractReport) -> list[str]:
    mark = "[green]✓[/]" if report.passed else "[red]✗[/]"
    verdict = "passes" if report.passed else "breaks"
    lines = [f"{mark} {escape(report.data)}: {report.rows:,} rows {verdict} {escape(report.contract)} "
             f"({report.errors} error{'s' if report.errors != 1 else ''}, "
             f"{report.warnings} warning{'s' if report.warnings != 1 else ''})"]
    for b in report.breaches:
        tone = "red" if b.severity == "error" else "yellow"
        where = f"{b.column} " if b.column else ""
        lines.append(f"  [{tone}]{b.severity:<7}[/] {escape(where)}[bold]{escape(b.rule)}[/]: {escape(report.message(b))}")
    for skipped in report.skipped:
        lines.append(f"  [dim]not checked: {escape(skipped)}[/]")
    return lines

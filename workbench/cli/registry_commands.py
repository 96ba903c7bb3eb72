"""`workbench models | promote | rollback | history | mirror`: the model registry from the shell.

A promotion or rollback shows its decision first (every rule with its numbers, the gates, the
champion/challenger comparison), asks on a terminal (or takes --yes), then applies it against
the alias holder it showed: if another process moved the alias in between, it is refused.
A refusal exits with 4. After a command that queued something for MLflow, a detached process
sends it (see workbench.services.mirror), so the command itself never waits for MLflow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from workbench.cli.render import Printer, fitted_table, fmt_metric
from workbench.core import formatting
from workbench.core.serialize import to_jsonable
from workbench.services.faults import fault_point
from workbench.services.session import WorkbenchSession

EXIT_OK, EXIT_NOT_DONE, EXIT_BAD_INPUT, EXIT_REFUSED = 0, 1, 3, 4
STATUS_STYLE = {"production": "bold green", "staging": "cyan", "archived": "dim", "registered": ""}


def _session(workspace: Path, printer: Printer) -> WorkbenchSession:
    return WorkbenchSession(workspace, notice=printer.notice)


def cmd_models(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = _session(workspace, printer)
    project = session.project(args.project)
    registry = session.registry
    versions = registry.models(project.name)
    # An alias the audit trail does not vouch for (forged, edited) is marked where it shows, not
    # only in a note on stderr: a table saying `production` would be believed.
    unverified = registry.unverified_aliases(project.name) if any(v.aliases for v in versions) else {}
    if args.json:
        printer.json([to_jsonable(v) | {"status": v.status, "gates_passed": v.gates_passed,
                                        "unverified_aliases": [a for a in v.aliases if a in unverified]}
                      for v in versions])
        return EXIT_OK
    con = printer.out
    if not versions:
        con.print(f"{escape(project.name)} has no model versions yet: a successful run of the whole pipeline whose "
                  "stage logs its model (wb.log_artifact(name, kind=\"model\")) registers one")
        return EXIT_OK
    metric = project.manifest.primary_metric
    reproduced = any(v.reproduced_by for v in versions)
    rows = []
    for v in versions:
        passed = sum(g.passed is True for g in v.gates)
        failed = len(v.gates) - passed
        gates = f"[green]{passed}✓[/]" + (f" [red]{failed}✗[/]" if failed else "") if v.gates else "—"
        style = STATUS_STYLE.get(v.status, "")
        status = " + ".join(v.aliases) if v.aliases else v.status
        status = f"[{style}]{status}[/]" if style else status
        if any(a in unverified for a in v.aliases):
            status = " + ".join(f"{a} [red]✗ unverified[/]" if a in unverified else f"[{STATUS_STYLE[a]}]{a}[/]"
                                for a in v.aliases)
        row = [str(v.version), status, str(v.run_id),
               v.created_at.astimezone().strftime("%m-%d %H:%M"), fmt_metric(v.primary_value), gates,
               f"{escape(v.artifact_name)} {v.sha256[:8]}"]
        rows.append(row + ([f"run {v.reproduced_by}" if v.reproduced_by else "—"] if reproduced else []))
    columns = [("version", "right"), ("status", "left"), ("run", "right"), ("created", "left"),
               (metric or "primary", "right"), ("gates", "left"), ("model", "left")]
    table = fitted_table(columns + ([("reproduced", "left")] if reproduced else []), rows, gives_way="model")
    con.print(table)
    for alias, why in sorted(unverified.items()):
        con.print(f"[red]✗[/] {alias} unverified: {escape(why)}; promotions of {escape(project.name)} are refused "
                  f"(`workbench history {escape(project.name)} --verify`)")
    con.print(f"[dim]{escape(registry.mirror_status().summary)}[/]")
    return EXIT_OK


def cmd_promote(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = _session(workspace, printer)
    project = session.project(args.project).name
    registry = session.registry

    def decide(**kwargs):
        return registry.promote(project, args.version, args.to, reason=args.reason or "", **kwargs)

    return _preview_confirm_apply(
        args, printer, registry, decide,
        question=lambda p: f"Promote version {args.version} of {project} to {p.alias}?",
        doing=lambda p: f"promoting version {args.version} of {project} to {p.alias}")


def cmd_rollback(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = _session(workspace, printer)
    project = session.project(args.project).name
    registry = session.registry

    def decide(**kwargs):
        return registry.rollback(project, to_version=args.to, alias=args.alias, reason=args.reason or "", **kwargs)

    return _preview_confirm_apply(
        args, printer, registry, decide,
        question=lambda p: f"Roll {p.alias} of {project} back to version {p.version}?",
        doing=lambda p: f"rolling {p.alias} of {project} back to version {p.version}")


def _preview_confirm_apply(args: argparse.Namespace, printer: Printer, registry, decide, question, doing) -> int:
    """Promotion and rollback alike: a dry run, the user's yes (unless --yes), then the change,
    refused if the alias moved since the preview."""
    preview = decide(dry_run=True)
    if args.dry_run:
        _show(printer, preview, args.json)
        return EXIT_OK if preview.allowed else EXIT_REFUSED
    shown = False
    if preview.allowed and not args.yes:
        if not args.json:
            show_decision(printer, preview)
        if not _confirm(printer, question(preview), doing(preview)):
            return EXIT_NOT_DONE if sys.stdin.isatty() else EXIT_BAD_INPUT
        shown = True
    fault_point("before_apply")  # (crash and race tests line processes up here)
    decision = decide(expected_from=preview.from_version)
    _show(printer, decision, args.json, details=not shown or not decision.allowed)
    registry.request_mirror_sync()
    return EXIT_OK if decision.applied else EXIT_REFUSED


def cmd_history(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = _session(workspace, printer)
    project = session.project(args.project).name
    registry = session.registry
    if args.verify:
        return _verify(printer, registry, project, args.json)
    entries = registry.history(project, limit=args.limit if args.limit > 0 else 1 << 62)
    if args.json:
        printer.json(entries)
        return EXIT_OK
    if not entries:
        printer.out.print(f"no promotions, rollbacks or refusals recorded for {escape(project)} yet")
        return EXIT_OK
    con = printer.out
    for e in entries:
        colour = {"promote": "green", "rollback": "yellow", "refuse": "red"}.get(e.action, "white")
        if e.action == "refuse":
            what = (f"{e.request} {e.alias}" + (f" to version {e.version}" if e.version is not None else "")
                    + f" · {e.alias} stays with {_holder(e.from_version)}")
        else:
            what = f"{e.alias}: {_holder(e.from_version)} → version {e.to_version}"
        con.print(f"[bold]#{e.id}[/] {e.at.astimezone():%Y-%m-%d %H:%M:%S} {escape(e.actor)} "
                  f"[{colour}]{e.action}[/] {what}")
        if e.action == "refuse":
            con.print(f"    {escape(e.message)}")
        c = e.comparison
        if c and c.get("champion_value") is not None and c.get("challenger_value") is not None:
            con.print(f"    {escape(c['metric'])} {fmt_metric(c['challenger_value'])} vs "
                      f"{fmt_metric(c['champion_value'])} (production version {c['champion_version']}): "
                      f"{c['verdict']} ({c['delta']:+.4g}, tolerance {c['tolerance']:g})")
        if e.reason:
            con.print(f"    reason: {escape(e.reason)}")
    return EXIT_OK


def _verify(printer: Printer, registry, project: str, as_json: bool) -> int:
    """The whole chain is verified (rows chain across projects); the count is the project's."""
    report = registry.verify(project)
    if as_json:
        printer.json({"rows": report.rows, "project_rows": report.project_rows, "versions": report.versions,
                      "intact": report.intact, "repaired": report.repaired,
                      "problems": [{"table": p.table, "row": p.row, "detail": p.detail} for p in report.problems]})
        return EXIT_OK if report.intact else EXIT_NOT_DONE
    con = printer.out
    for line in report.repaired:
        con.print(f"[yellow]![/] {escape(line)}")
    counted = (f"{report.project_rows} rows of {escape(project)}, chain of {report.rows} rows verified; "
               f"{report.versions} model versions' seals and every alias checked")
    if report.intact:
        con.print(f"[green]✓[/] audit trail intact: {counted}")
        return EXIT_OK
    con.print(f"[red]✗ audit trail altered[/]: {len(report.problems)} problem(s) in {escape(project)}'s workspace "
              f"({report.project_rows} rows of {escape(project)}, chain of {report.rows} rows)")
    for problem in report.problems:
        con.print(f"  [red]✗[/] [bold]{escape(problem.table)}[/] {escape(problem.row)}: {escape(problem.detail)}")
    con.print("promotions and rollbacks are refused until this is resolved (restore the database from a backup)")
    return EXIT_NOT_DONE


def cmd_mirror(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    if args.mirror_command == "sync" and args.background:
        # The detached process the other commands start: quiet, and gone at once if another
        # process is already syncing.
        from workbench.services.mirror import MirrorService

        session = WorkbenchSession(workspace)
        mirror: MirrorService = session.registry.mirror
        mirror.sync_in_background(budget_s=args.timeout if args.timeout else 300.0)
        return EXIT_OK
    session = _session(workspace, printer)
    registry = session.registry
    if args.mirror_command == "sync":
        report = registry.drain_mirror(timeout_s=args.timeout or 60.0)
        status = registry.mirror_status()
        if args.json:
            printer.json({"report": report, "status": status})
        else:
            mark = "[green]✓[/]" if report.pending == 0 else "[yellow]![/]"
            printer.out.print(f"{mark} sent {report.sent} item(s) to {escape(status.tracking_uri)} in "
                              f"{report.seconds:.1f} s; {report.pending} pending"
                              + (f"; error: {escape(report.error)}" if report.error else ""))
        return EXIT_OK if report.pending == 0 else EXIT_NOT_DONE
    status = registry.mirror_status()
    if args.json:
        printer.json(status)
        return EXIT_OK
    colour = {"in_sync": "green", "pending": "yellow", "error": "red", "off": "dim"}[status.state]
    printer.out.print(f"[{colour}]{escape(status.summary)}[/]")
    printer.out.print(f"tracking URI  {escape(status.tracking_uri)}")
    if status.last_synced_at:
        printer.out.print(f"last sent     {status.last_synced_at.astimezone():%Y-%m-%d %H:%M:%S}")
    if status.last_error:
        printer.out.print(f"last error    {status.last_error_at.astimezone():%Y-%m-%d %H:%M:%S}  "
                          f"{escape(status.last_error)}")
    if status.next_attempt_at and status.pending:
        printer.out.print(f"next attempt  {status.next_attempt_at.astimezone():%H:%M:%S} "
                          "(or now: `workbench mirror sync`)")
    if status.tracking_uri.startswith("sqlite:"):
        printer.out.print(f"[dim]open it: mlflow ui --backend-store-uri {escape(status.tracking_uri)}[/]")
    return EXIT_OK


def after_run(printer: Printer, session: WorkbenchSession, quiet: bool = False) -> None:
    """After `workbench run` printed its result: say which model version the run's model is.
    (The session has already started the detached MLflow sync.)"""
    registration = session.last_registration
    if registration and registration[0] is not None and not quiet:
        version, created = registration
        if created:
            printer.out.print(f"[bold]model[/] registered as version {version.version} of "
                              f"{escape(version.project)} (`workbench promote {escape(version.project)} "
                              f"{version.version} --to staging`)")
        else:
            where = f" ({' + '.join(version.aliases)})" if version.aliases else ""
            printer.out.print(f"[bold]model[/] unchanged: version {version.version}{where}")


# -- showing decisions ----------------------------------------------------------------------

def _show(printer: Printer, decision, as_json: bool, details: bool = True) -> None:
    if as_json:
        printer.json(decision.as_dict())
        return
    if details:
        show_decision(printer, decision)
    con = printer.out
    if decision.applied:
        con.print(f"[green]✓[/] {escape(decision.message)} · audit #{decision.audit_id}")
    elif decision.audit_id is not None:
        con.print(f"[red]✗ refused[/] · audit #{decision.audit_id}: {escape(decision.message)}")
    elif not decision.allowed:
        con.print(f"[red]✗ would be refused[/]: {escape(decision.message)}")
    else:
        con.print(f"[green]✓[/] {escape(decision.message)}")


def show_decision(printer: Printer, decision) -> None:
    """Every rule, the gates and the champion/challenger numbers: what a confirmation shows."""
    con = printer.out
    holder = _holder(decision.from_version)
    if decision.action == "rollback":
        target = f" → version {decision.version}" if decision.version is not None else ""
        con.print(f"[bold]roll back {escape(decision.project)} {decision.alias}: {holder}{target}[/]")
    else:
        con.print(f"[bold]promote {escape(decision.project)} version {decision.version} → {decision.alias}[/] "
                  f"(held by {holder})")
    table = Table(show_edge=False, pad_edge=False, box=None, padding=(0, 1))
    table.add_column("rule")
    table.add_column("")
    table.add_column("detail")
    for check in decision.checks:
        mark = "[green]✓[/]" if check.passed else "[red]✗[/]"
        table.add_row(check.label, mark, escape(check.detail))
    con.print(table)
    if decision.gates:
        gates = Table(title="gates", title_justify="left", show_edge=False, pad_edge=False, box=None, padding=(0, 1))
        gates.add_column("gate")
        gates.add_column("")
        gates.add_column("detail")
        for g in decision.gates:
            mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]–[/]"}[g.passed]
            gates.add_row(escape(g.rule), mark, escape(g.detail))
        con.print(gates)
    c = decision.comparison
    if c is not None and c.champion_version is not None:
        # The TUI's convention: the improvement, + is better in the metric's own direction.
        con.print(f"champion/challenger on {escape(c.metric)} ({c.goal}): version {c.challenger_version} "
                  f"{fmt_metric(c.challenger_value)} vs production version {c.champion_version} "
                  f"{fmt_metric(c.champion_value)} · delta (+ is better) {formatting.signed(c.improvement)} · "
                  f"tolerance {c.tolerance:g} → {c.verdict}")


def _confirm(printer: Printer, question: str, doing: str) -> bool:
    if not sys.stdin.isatty():
        printer.error(f"{doing} needs confirmation, and there is no terminal to ask on: pass --yes")
        return False
    answer = printer.out.input(f"{escape(question)} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        printer.out.print("nothing changed")
        return False
    return True


def _holder(version: int | None) -> str:
    return "nobody" if version is None else f"version {version}"

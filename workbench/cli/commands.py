"""One function per subcommand. Each calls the session (service layer) and a Printer."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from workbench.cli.interrupts import guard
from workbench.cli.render import Printer, fmt_duration, glyph
from workbench.core.model import PIPELINE_COMPLETED, RunStatus
from workbench.services.session import WorkbenchSession

EXIT_OK, EXIT_RUN_FAILED, EXIT_GATE_FAILED = 0, 1, 2


def _session(workspace: Path, printer: Printer, runner: str | None = None, cold: bool = False,
             scheduler: str | None = None) -> WorkbenchSession:
    return WorkbenchSession(workspace, runner=runner, notice=printer.notice, cold=cold, scheduler=scheduler)


def cmd_run(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = _session(workspace, printer, args.runner, args.cold, args.scheduler)
    project = session.project(args.project)  # a bad name or manifest fails before any work
    report = session.recover()
    if report.interrupted_runs:
        printer.notice(f"marked run(s) {', '.join(map(str, report.interrupted_runs))} interrupted: "
                       "the workbench that ran them stopped")
    if report.removed_containers:
        printer.notice(f"removed {report.removed_containers} container(s) left by a workbench that stopped")
    printer.show_logs = not args.quiet
    with guard.cancels_run() as cancel:  # SIGTERM, SIGHUP, a closed pipe: cancelled like Ctrl-C
        record = session.run(str(project.path), stages=args.stages, cancel=cancel, on_event=printer.event,
                             jobs=args.jobs, fail_fast=args.fail_fast)
    if guard.signum is not None:
        return guard.exit_code
    if args.json:
        printer.json(record)
    from workbench.cli.registry_commands import after_run

    after_run(printer, session, quiet=args.json)
    return run_exit_code(record)


def run_exit_code(record) -> int:
    """0 succeeded, 2 a gate failed (every stage ran), 1 anything else (a stage failed, cancelled)."""
    if record.status is RunStatus.GATE_FAILED:
        return EXIT_GATE_FAILED
    if record.status is not RunStatus.SUCCEEDED:
        return EXIT_RUN_FAILED
    return EXIT_OK if record.gates_passed else EXIT_GATE_FAILED


def cmd_runs(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = _session(workspace, printer)
    limit = args.limit if args.limit > 0 else 1 << 62
    if args.json:
        printer.out.file.write(session.runs_json(args.project, limit=limit, offset=args.offset) + "\n")
        return EXIT_OK
    runs = session.runs(args.project, limit=limit, offset=args.offset)
    if not runs:
        printer.out.print("no runs recorded yet: try `workbench run PROJECT`")
    else:
        printer.runs_table(runs)
    return EXIT_OK


def cmd_show(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    record = _session(workspace, printer).get_run(args.run_id)
    if args.json:
        printer.json(record)
        return EXIT_OK
    con = printer.out
    con.print(f"[bold]run {record.id}[/] · {escape(record.project)} · trigger {record.trigger} · "
              f"runner {record.runner} · started {record.started_at:%Y-%m-%d %H:%M:%S}")
    if record.sweep is not None:
        con.print(f"sweep {escape(record.sweep)} · trial {record.sweep_trial}")
    if record.changed_paths:
        con.print(f"changed: {escape(', '.join(record.changed_paths))}")
    if record.superseded_by is not None:
        con.print(f"superseded by run {record.superseded_by}")
    table = Table(show_edge=False, pad_edge=False)
    for col in ("stage", "status", "duration", "detail"):
        table.add_column(col)
    for stage in record.stages:
        table.add_row(escape(stage.stage), glyph(stage.status), fmt_duration(stage.duration_s), escape(stage.detail))
    con.print(table)
    for stage in record.stages:
        if str(stage.status) == "failed" and stage.log_tail:
            con.print(f"[bold]last lines of {escape(stage.stage)}:[/]")
            for line in stage.log_tail:
                con.print(f"  [dim]{escape(line)}[/]")
    printer.run_summary(record)
    return EXIT_OK


def cmd_lineage(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    data = _session(workspace, printer).lineage(args.run_id)
    if args.json:
        printer.json(data)
        return EXIT_OK
    con = printer.out
    run = data["run"]
    con.print(f"[bold]run {run['id']}[/] · {escape(run['project'])} · {run['status']}")
    con.print(f"image    {escape(str(run.get('image_tag') or '—'))}  {escape(str(run.get('image_id') or ''))}")
    con.print(f"snapshot {escape(str(run.get('snapshot_id') or '—'))}")
    for ds in data.get("datasets", []):
        con.print(f"data     {escape(ds['path'])}  sha256 {ds['fingerprint'][:16]}…  {ds['row_count']} rows, "
                  f"{len(ds.get('schema') or {})} columns")
    for stage in data.get("stages", []):
        reused = f" (reused from run {stage['reused_from_run']})" if stage.get("reused_from_run") else ""
        con.print(f"\n[bold]{escape(stage['stage'])}[/] {stage['status']}{reused}  key {stage['cache_key'][:16]}…")
        if stage.get("worker"):
            con.print(f"  ran  on cluster worker {escape(stage['worker'])} (host {escape(stage['host'])}), "
                      f"image {escape(stage['image_id'][:19])}")
        for f in stage.get("inputs", []):
            con.print(f"  in   {escape(f['path'])}  {f['sha256'][:16]}…  {f['size']} B")
        for key, value in sorted((stage.get("params") or {}).items()):
            con.print(f"  param {escape(key)} = {escape(str(value))}")
        for key, value in (stage.get("param_values") or {}).items():  # the keys its cache key took
            con.print(f"  key  {escape(key)} = {escape(value)}")
        for art in stage.get("artifacts", []):
            con.print(f"  out  {escape(art['name'])} ({art['kind']})  {art['sha256'][:16]}…  {art['size']} B")
    return EXIT_OK


def cmd_reproduce(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = _session(workspace, printer, args.runner, cold=True, scheduler=args.scheduler)
    printer.show_logs = not args.quiet
    with guard.cancels_run() as cancel:
        record, result = session.reproduce(args.run_id, on_event=printer.event, cancel=cancel)
    if guard.signum is not None:
        return guard.exit_code
    if args.json:
        printer.json({"reproduction": result, "matched": result.matched, "run": record})
        return EXIT_OK if result.matched else EXIT_RUN_FAILED
    con = printer.out
    if record.status not in PIPELINE_COMPLETED:  # a failed gate reproduces too: its metrics are compared
        con.print(f"[red]✗ reproduce run {record.id} {record.status}[/]: {escape(record.reason)}")
        return EXIT_RUN_FAILED
    for name, same in result.artifacts_identical.items():
        mark = "[green]✓ byte-identical[/]" if same else "[red]✗ differs[/]"
        con.print(f"{escape(name)}: {mark}")
    for difference in result.differences:
        con.print(f"[red]✗[/] {escape(str(difference))}")
    verdict = "[green]✓ reproduced[/]" if result.matched else "[red]✗ not reproduced[/]"
    con.print(f"{verdict} · run {result.original_run} by run {result.reproduce_run} (cold, nothing reused) · "
              f"{len(result.compared)} metrics compared, timings left out")
    return EXIT_OK if result.matched else EXIT_RUN_FAILED


def cmd_projects(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    refs = _session(workspace, printer).projects()
    if args.json:
        printer.json([{"name": r.name, "path": str(r.path), "error": str(r.error) if r.error else None,
                       "stages": list(r.manifest.stages) if r.manifest else []} for r in refs])
        return EXIT_OK
    if not refs:
        printer.out.print(f"no projects (folders with a workbench.toml) in {workspace.resolve()}")
    for ref in refs:
        if ref.error:
            printer.out.print(f"[red]✗[/] {escape(ref.name)}  {escape(str(ref.error))}")
        else:
            printer.out.print(f"[green]✓[/] {escape(ref.name)}  {escape(str(ref.path))}  "
                              f"stages: {' → '.join(ref.manifest.stage_order())}")
    return EXIT_OK


def cmd_init(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.services.contracts import write_first_contracts

    ref, text = _session(workspace, printer).init_project(args.folder, force=args.force)
    # A first data contract beside each data file (docs/contracts.md); one it cannot infer is said.
    contracts, problems = write_first_contracts(ref.path, ref.manifest, force=args.force)
    for problem in problems:
        printer.notice(f"no data contract written: {problem}")
    if args.json:
        printer.json({"name": ref.name, "path": str(ref.path), "manifest": str(ref.manifest_path),
                      "stages": ref.manifest.stage_order(), "contracts": contracts})
        return EXIT_OK
    con = printer.out
    con.print(f"[green]✓[/] wrote {escape(str(ref.manifest_path))}: project {escape(ref.name)}, "
              f"stages {' → '.join(ref.manifest.stage_order())}")
    con.print(escape(text.rstrip("\n")), highlight=False)
    for contract in contracts:
        con.print(f"[green]✓[/] wrote {escape(contract)}: a first data contract, checked before the stages; "
                  "tighten it (docs/contracts.md)")
    con.print(f"next: [bold]workbench -w {escape(str(workspace))} run {escape(ref.name)}[/] "
              "(each stage can log metrics with `import wb; wb.log_metrics({...})`)")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.services.doctor import run_checks

    checks = run_checks(workspace)
    if args.json:
        printer.json(checks)
    else:
        for check in checks:
            mark = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}[check.level]
            printer.out.print(f"{mark} {check.name:<14} {escape(check.detail)}")
    return EXIT_OK if all(c.level != "fail" for c in checks) else 3


def cmd_env(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.services.doctor import bootstrap_base_image

    image_id = bootstrap_base_image(tag=args.tag, force=args.force, on_log=lambda line: printer.out.print(
        f"[dim]{escape(line)}[/]"))
    printer.out.print(f"[green]✓[/] base image ready: {image_id}")
    return EXIT_OK


# The model registry's commands live in registry_commands.py.
from workbench.cli.registry_commands import (  # noqa: E402,F401  (dispatched by name from main)
    cmd_history, cmd_mirror, cmd_models, cmd_promote, cmd_rollback,
)


def cmd_contract(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.contract_command import cmd_contract as contract  # DuckDB only when asked

    return contract(args, printer, workspace)


def cmd_drift(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.drift_command import cmd_drift as drift  # scipy and DuckDB only when asked

    return drift(args, printer, workspace)


def cmd_compare(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.compare_command import cmd_compare as compare

    return compare(args, printer, workspace)


def cmd_explain(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.explain_command import cmd_explain as explain

    return explain(args, printer, workspace)


def cmd_card(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.card_command import cmd_card as card

    return card(args, printer, workspace)


def cmd_gc(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.gc_command import cmd_gc as gc

    return gc(args, printer, workspace)


def cmd_cluster(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.cluster_command import cmd_cluster as cluster

    return cluster(args, printer, workspace)


def cmd_notify(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.notify_command import cmd_notify as notify

    return notify(args, printer, workspace)


def cmd_serve(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.serve_command import cmd_serve as serve

    return serve(args, printer, workspace)


def cmd_sweep(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.sweep_command import cmd_sweep as sweep  # Optuna only when asked

    return sweep(args, printer, workspace)


def cmd_sweeps(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.sweep_command import cmd_sweeps as sweeps

    return sweeps(args, printer, workspace)


def cmd_watch(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.watch_command import cmd_watch as watch

    return watch(args, printer, workspace)


def cmd_tui(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.cli.tui_command import cmd_tui as tui  # Textual is imported only here

    return tui(args, printer, workspace)

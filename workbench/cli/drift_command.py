"""`workbench drift PROJECT [BATCH] [--json]`: drift checks of new data.

Without BATCH: the project's latest batches (drifted share, decay, the retrain each caused) and
the files in the incoming folder not checked yet. With BATCH (a path, or a file name in the
incoming folder): check it now unless it was checked before, print the per-column table, and
run the retrain the policy decides (unless --no-retrain).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from workbench.cli.commands import run_exit_code
from workbench.cli.progress_line import ProgressLine
from workbench.cli.render import GLYPHS, Printer
from workbench.core.drift_report import (
    BREAKS_CONTRACT, DRIFTED, NO_DRIFT, NOT_CHECKED, WARNING, CheckedBatch, DriftReport,
)
from workbench.core.drift_retrain import RetrainDecision
from workbench.core.drift_verdict import percent
from workbench.core.errors import WorkbenchError
from workbench.services.session import WorkbenchSession

EXIT_OK, EXIT_RUN_FAILED, EXIT_NOT_CHECKED = 0, 1, 3
"""0: the batch was checked (drifted or not) and a retrain it caused succeeded · 1 or 2: its
retrain run failed, or failed a gate (as `workbench run`) · 3: the batch could not be checked
(unreadable, empty, missing or retyped columns): bad input, as everywhere in the CLI, with an
`error:` line naming the file and what is wrong."""
BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(score: float, width: int = 10) -> str:
    """A score in 0..1 as a bar of `width` cells, in eighths."""
    eighths = round(max(0.0, min(1.0, score)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(width)


def cmd_drift(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    from workbench.services.drift import DriftService

    session = WorkbenchSession(workspace, runner=args.runner, notice=printer.notice, scheduler=args.scheduler)
    ref = session.project(args.project)
    service = DriftService(session)
    if args.batch is None:
        return _list(printer, service, ref.name, args.json)
    printer.show_logs = not args.quiet and not args.json
    path = service.resolve(ref, args.batch)

    def on_log(line: str) -> None:  # the scoring command's output
        if printer.show_logs:
            printer.out.print(f"  [dim]score │ {escape(line)}[/]")

    with ProgressLine(f"checking {args.batch}") as progress:
        outcome = service.check_batch(ref.name, path, on_log=on_log, allow_retrain=not args.no_retrain,
                                      on_progress=progress)
    record = None
    if outcome.decision.retrain:
        if not args.json:
            _show(printer, outcome.batch, outcome.fresh)
            printer.out.print(f"[bold]→ retrain[/]: {escape(outcome.decision.reason)}")
        record = service.retrain(ref.name, outcome, on_event=printer.event)
    elif not args.json:
        _show(printer, outcome.batch, outcome.fresh)
        if outcome.fresh and outcome.batch.verdict not in (NOT_CHECKED, BREAKS_CONTRACT):  # else the verdict said why
            printer.out.print(f"[dim]no retrain: {escape(outcome.decision.reason)}[/]")
    batch = service.store.batch(ref.name, batch_id=outcome.batch.id) or outcome.batch
    report = batch.report
    unusable = batch.verdict in (NOT_CHECKED, BREAKS_CONTRACT)
    if unusable:
        printer.error(f"{batch.path}: {batch.verdict}: {report.rule if report else 'the batch cannot be used'}")
    if args.json:
        decision, run = outcome.decision, record
        if not outcome.fresh:  # checked before: what was decided then and the run it caused, as the text says
            decision = RetrainDecision(batch.retrain, outcome.decision.reason, batch.retrain_cause or "")
            run = session.store.get_run(batch.retrain_run_id) if batch.retrain_run_id is not None else None
        printer.json({"batch": batch, "verdict": batch.verdict, "rule": report.rule if report else "",
                      "summary": report.summary if report else "", "checked_now": outcome.fresh,
                      "decision": decision, "run": run})
    if unusable:
        return EXIT_NOT_CHECKED
    if args.json:
        return EXIT_OK if record is None else run_exit_code(record)
    if record is not None:
        from workbench.cli.registry_commands import after_run

        after_run(printer, session)
        if batch.retrain_version_status == "staging":
            printer.out.print(f"[green]✓[/] version {batch.retrain_version} went to staging by itself "
                              "([promotion] auto_staging)")
        return run_exit_code(record)
    return EXIT_OK


def _list(printer: Printer, service, project: str, as_json: bool) -> int:
    batches = service.batches(project, with_reports=True)  # the verdict (a warning) is in the report
    pending = service.pending(project)
    try:
        reference = service.reference(project).description
    except WorkbenchError as exc:
        reference = f"none: {exc}"
    if as_json:
        printer.json({"project": project, "reference": reference, "batches": batches, "not_checked": pending})
        return EXIT_OK
    con = printer.out
    con.print(f"[bold]{escape(project)}[/] · reference: {escape(reference)}")
    if not batches:
        folder = service.incoming(project)
        where = f" in {escape(str(folder))}" if folder else " (set [data] incoming in the manifest)"
        con.print(f"no batches checked yet: new data files{where} are checked by `workbench watch` or the TUI, "
                  f"or now by `workbench drift {escape(project)} FILE`")
    else:
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold", padding=(0, 1))
        for col, justify in (("#", "right"), ("file", "left"), ("checked", "left"), ("rows", "right"),
                             ("drift", "left"), ("decay", "left"), ("retrain", "left")):
            # Only the retrain's words wrap on a narrow terminal (rich shares any other squeeze
            # out evenly, down to nothing for the narrowest column).
            table.add_column(col, justify=justify, no_wrap=col != "retrain", max_width=24 if col == "file" else None)
        for b in batches:
            table.add_row(str(b.id), escape(b.name), b.landed_at.astimezone().strftime("%m-%d %H:%M"),
                          "—" if b.rows is None else f"{b.rows:,}", _drift_cell(b), _decay_cell(b), _retrain_cell(b))
        con.print(table, soft_wrap=False)
    if pending:
        shown = ", ".join(escape(p) for p in pending[:5]) + (f" and {len(pending) - 5} more" if len(pending) > 5 else "")
        con.print(f"[yellow]{len(pending)} not checked yet[/]: {shown} "
                  f"(`workbench drift {escape(project)} FILE` checks one now)")
    return EXIT_OK


def _drift_cell(b: CheckedBatch) -> str:
    if b.state == "checking":
        return "[dim]checking[/]"
    verdict = b.verdict
    if verdict == NOT_CHECKED:
        return "[red]⊘ not checked[/]"
    if verdict == BREAKS_CONTRACT:
        return "[red]⊘ breaks the contract[/]"
    mark = {DRIFTED: "[red]✗[/]", WARNING: "[yellow]![/]"}.get(verdict, "[green]✓[/]")
    cell = f"{mark} {b.drifted_columns}/{b.compared_columns} {b.share or 0:.0%}"
    return cell + (" [yellow]warning[/]" if verdict == WARNING else "")


def _decay_cell(b: CheckedBatch) -> str:
    if b.decay_value is None:
        return "[dim]—[/]"
    return f"{escape(b.decay_metric or '')} {b.decay_value:.3f}/{b.decay_baseline:.3f}"


def _retrain_cell(b: CheckedBatch) -> str:
    if b.retrain_run_id is not None:
        mark, colour = GLYPHS.get(b.retrain_status or "running", ("?", "white"))
        cell = f"run {b.retrain_run_id} [{colour}]{mark}[/]"
        if b.retrain_version is not None:
            cell += f" → v{b.retrain_version} {b.retrain_version_status}"
        return cell
    if b.retrain:
        return "[yellow]queued[/]"
    reason = "none: not checked" if b.verdict == NOT_CHECKED else b.retrain_reason.split(", but ", 1)[-1]
    return f"[dim]{escape(reason)}[/]"


def _show(printer: Printer, batch: CheckedBatch, fresh: bool) -> None:
    report = batch.report
    con = printer.out
    if report is None:
        con.print(f"batch {batch.id} ({escape(batch.path)}) is being checked by another process")
        return
    when = "" if fresh else f" · checked before, {batch.checked_at.astimezone():%Y-%m-%d %H:%M:%S} (batch {batch.id})"
    con.print(f"[bold]{escape(report.batch)}[/] · {report.rows:,} rows · against {escape(report.reference)} "
              f"({report.reference_rows:,} rows){when}")
    show_report(printer, report)
    if not fresh and batch.retrain_reason:
        con.print(f"[dim]retrain: {escape(batch.retrain_reason)}[/]"
                  + (f" · run {batch.retrain_run_id}" if batch.retrain_run_id else ""))


TEST_NAMES = {"ks": "KS", "wasserstein": "Wasserstein", "chi2": "chi²", "jensen_shannon": "JS",
              "missing": "missing", "type_change": "type", "all_null": "all null", "not_compared": "skipped"}


def show_report(printer: Printer, report: DriftReport) -> None:
    con = printer.out
    if report.columns:
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold", padding=(0, 1))
        weighed = report.weighed  # an importance column only when there is importance to show
        for col, justify in (("column", "left"), ("test", "left"), ("statistic", "right"), ("threshold", "left"),
                             ("PSI", "right")) + ((("importance", "right"),) if weighed else ()) + (
                             ("score", "left"), ("", "left")):
            table.add_column(col, justify=justify, no_wrap=True, overflow="ellipsis",
                             min_width=8 if col == "column" else None)
        for c in sorted(report.columns, key=lambda c: (not c.drifted, -c.score)):  # most drifted first
            if c.p_value is not None:
                statistic, threshold = f"p {c.p_value:.2g}", f"p < {c.threshold:g}"
            elif c.statistic is not None:
                unit = " sd" if c.test == "wasserstein" else ""
                # The threshold is often computed (the noise of a batch this size): as many digits as the statistic.
                statistic, threshold = f"{c.statistic:.3g}{unit}", f"> {c.threshold:.3g}{unit}"
            else:
                statistic, threshold = "—", ""
            # The target is compared and shown, but the share (`N of M columns`) counts features only:
            # its drift is a label shift, which the decay measurement judges. Say so where it shows.
            target = c.role == "target"
            style = ("yellow" if target else "red") if c.drifted else ("dim" if not c.compared else "")
            name = escape(c.column) + (" [dim](target)[/]" if target else "")
            mark = ""
            if c.drifted:
                mark = "[yellow]drifted[/] [dim]target (not counted)[/]" if target else "[red]drifted[/]"
            importance = (importance_cell(c.importance),) if weighed else ()
            table.add_row(f"[{style}]{name}[/]" if style else name, TEST_NAMES.get(c.test, c.test), statistic,
                          threshold, "—" if c.psi is None else f"{c.psi:.3f}", *importance,
                          f"[{style or 'green'}]{bar(c.score)}[/]", mark + (" [yellow]major[/]" if c.major else ""))
        con.print(table, soft_wrap=False)
    for shift in report.major_shifts if report.usable else ():  # an unusable batch's numbers do not count
        con.print(f"[yellow]![/] major shift: {escape(shift)}")
    for finding in report.findings:
        mark = "[red]✗[/]" if finding.blocking else "[yellow]![/]"
        con.print(f"{mark} {escape(finding.message)}")
    if report.decay is not None:
        d = report.decay
        limit = f"; retrains beyond {d.max_drop:g}" if d.max_drop is not None else ""
        direction = "worse" if d.drop > 0 else "better"
        con.print(f"performance: {escape(d.metric)} {d.value:.4f} on the batch vs {d.baseline:.4f} evaluated "
                  f"({abs(d.drop):.4f} {direction}{limit})" + (" [red]decayed[/]" if d.decayed else ""))
    elif report.decay_note:
        con.print(f"[dim]performance {escape(report.decay_note)}[/]")
    if report.importance_line and report.usable:  # where the weights came from, or why there were none
        con.print(f"[dim]{escape(report.importance_line)}[/]")
    con.print(verdict_markup(report))


def importance_cell(share: float | None) -> str:
    """A column's share of the model's importance: `41%`, `<1%`, `0%` (unused), `—` (not weighed)."""
    if share is None:
        return "—"
    return "[dim]0%[/]" if share == 0 else escape(percent(share))


VERDICT_MARKS = {DRIFTED: "[red]✗ drifted[/]", WARNING: "[yellow]! warning[/]", NOT_CHECKED: "[red]⊘ not checked[/]",
                 BREAKS_CONTRACT: "[red]⊘ breaks the contract[/]",
                 NO_DRIFT: "[green]✓ no drift[/]"}


def verdict_markup(report: DriftReport) -> str:
    """The verdict line: its mark, and the rule that decided it."""
    status, rest = report.summary.split(": ", 1)
    return f"{VERDICT_MARKS.get(status, escape(status))}: {escape(rest)}"

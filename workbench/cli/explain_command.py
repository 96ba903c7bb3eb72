"""`workbench explain PROJECT VERSION [--against VERSION]`: what a model version leans on, as
bars (gain share, split share or mean |SHAP|), and how each feature moved since another version."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from workbench.cli.render import Printer
from workbench.core.explain import RANK_BY, FeatureShift, diff_explanations, ranked, shares
from workbench.services.session import WorkbenchSession

EXIT_OK = 0
DEFAULT_TOP = 20
BAR_WIDTH = 24
EIGHTHS = " ▏▎▍▌▋▊▉█"


def add_parser(sub) -> None:
    explain = sub.add_parser("explain", help="a model version's feature importance (gain, split, mean |SHAP|), "
                                             "and how it moved since another version")
    explain.add_argument("project")
    explain.add_argument("version", type=int)
    explain.add_argument("--against", type=int, metavar="VERSION",
                         help="compare with this version: each feature's rank and share before and now")
    explain.add_argument("--by", choices=RANK_BY, default="gain",
                         help="rank and draw by gain (default), split count, or mean |SHAP| (shap)")
    explain.add_argument("--top", type=int, default=DEFAULT_TOP,
                         help=f"show the N most important features (default {DEFAULT_TOP}; 0 = all)")
    explain.add_argument("--json", action="store_true", help="every feature, with the comparison, as JSON")


def cmd_explain(args: argparse.Namespace, printer: Printer, workspace: Path) -> int:
    session = WorkbenchSession(workspace, notice=printer.notice)
    project = session.project(args.project).name
    comparison = session.explainer.compare(project, args.version, args.against, args.by)
    if args.json:
        printer.json(_as_json(comparison))
        return EXIT_OK
    con = printer.out
    current, against = comparison.current, comparison.against
    con.print(_heading(current))
    for note in current.notes:
        con.print(f"[yellow]note:[/] {escape(note)}")
    if current.payload is None:
        return EXIT_OK
    by = args.by
    if by == "shap" and current.payload["shap_rows"] is None:
        con.print("[yellow]note:[/] ranked by gain: this version has no SHAP values to rank by")
        by = "gain"
    if against is not None:
        for note in against.notes:
            con.print(f"[yellow]note (version {against.version}):[/] {escape(note)}")
    shifts = comparison.shifts if by == args.by else diff_explanations(against and against.payload, current.payload, by)
    con.print(_table(current.payload, by, args.top, shifts if against else None, against, con.width))
    features = len(current.payload["features"])
    if 0 < args.top < features:
        con.print(f"[dim]{features - args.top} more feature(s) not shown (--top 0 shows all)[/]")
    if against is not None and against.payload is not None:
        moved = sum(1 for s in shifts if s.rank_change)
        con.print(f"[dim]against version {against.version} (run {against.run_id}): "
                  f"{moved} of {len(shifts)} feature(s) changed rank by {by}[/]")
    return EXIT_OK


def _heading(found) -> str:
    payload = found.payload
    text = (f"[bold]{escape(found.project)} version {found.version}[/] · {escape(found.model)} "
            f"(run {found.run_id}, stage {escape(found.stage)})")
    if payload is not None:
        text += f" · {payload['model_sha256'][:12]}"
        text += (f" · mean |SHAP| over {payload['shap_rows']:,} rows" if payload["shap_rows"] is not None
                 else " · no SHAP values (the stage did not call wb.explain)")
    return text


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar `fraction` (0..1) of `width` cells long, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[part] if part else "")).ljust(width)


def _table(payload: dict, by: str, top: int, shifts: list[FeatureShift] | None, against, width: int) -> Table:
    """Rank, feature, bar, share, gain, split, mean |SHAP| (and the move since `against`). On a
    narrow terminal the bar shortens and the feature name gives way; numbers are never cut."""
    features = ranked(payload["features"], by)
    share = shares(features, by)
    biggest = max(share.values(), default=0.0) or 1.0
    moves = {s.feature: s for s in shifts or []}
    rows = []
    for rank, f in enumerate(features[:top] if top > 0 else features, start=1):
        shap = f["mean_abs_shap"]
        row = [str(rank), f["feature"], share[f["feature"]] / biggest, f"{share[f['feature']]:.1%}",
               f"{f['gain']:,.1f}", f"{f['split']:,}", f"{shap:.4f}" if shap is not None else "—"]
        if shifts is not None:
            row.append(_move(moves.get(f["feature"]), against.payload is not None))
        rows.append(row)
    titles = ["#", "feature", f"{by} share", "", "gain", "split", "mean |SHAP|"]
    if shifts is not None:
        titles.append(f"vs v{against.version}")
    widest = [max([len(t)] + [len(str(r[i])) for r in rows]) for i, t in enumerate(titles)]
    fixed = sum(w for i, w in enumerate(widest) if i not in (1, 2)) + len(titles)  # one space between columns
    names = min(widest[1], max(8, width - fixed - 8))
    bar_width = max(4, min(BAR_WIDTH, width - fixed - names))
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold", padding=(0, 1))
    for i, title in enumerate(titles):
        table.add_column(title, justify="right" if i in (0, 3, 4, 5, 6) else "left", no_wrap=True,
                         overflow="ellipsis", min_width=names if i == 1 else bar_width if i == 2 else widest[i],
                         max_width=names if i == 1 else None)
    for row in rows:
        table.add_row(row[0], escape(row[1]), Text(bar(row[2], bar_width), "cyan"), *row[3:])
    return table


def _move(shift: FeatureShift | None, comparable: bool) -> Text:
    if not comparable:
        return Text("—", "dim")
    if shift is None or shift.rank_before is None:
        return Text("new", "yellow")
    change = shift.rank_change or 0
    points = (shift.share_change or 0.0) * 100
    mark = Text(f"↑{change}", "green") if change > 0 else Text(f"↓{-change}", "red") if change < 0 else Text("=", "dim")
    mark.append(f" {points:+.1f} pp", "dim")  # the share's change, in percentage points
    return mark


def _version_json(found) -> dict | None:
    if found is None:
        return None
    return {"version": found.version, "run_id": found.run_id, "stage": found.stage, "model": found.model,
            "explanation": found.payload, "notes": found.notes}


def _as_json(comparison) -> dict:
    return {
        "project": comparison.current.project, **_version_json(comparison.current),
        "against": _version_json(comparison.against),
        "changes": [{"feature": s.feature, "rank_before": s.rank_before, "rank_after": s.rank_after,
                     "rank_change": s.rank_change, "share_before": s.share_before, "share_after": s.share_after,
                     "share_change": s.share_change, "mean_abs_shap_before": s.shap_before,
                     "mean_abs_shap_after": s.shap_after} for s in comparison.shifts],
    }

"""Rich renderables for the detail tabs that are documents rather than tables: the lineage of a
run and its validation report. Colours are the current theme's (see `Palette`)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from workbench.core.model import DatasetProfile, RunRecord
from workbench.services.inspect import ValidationReport
from workbench.ui import format as fmt


@dataclass(frozen=True)
class Palette:
    """Theme colours as Rich styles, taken from the app's theme variables."""

    good: str
    bad: str
    warn: str
    info: str
    live: str
    muted: str = "dim"

    @classmethod
    def of(cls, app) -> "Palette":
        variables = app.theme_variables if getattr(app, "theme_variables", None) else {}

        def colour(name: str, fallback: str) -> str:
            value = variables.get(name, fallback)
            return value.split()[0] if value and not value.startswith("auto") else fallback

        return cls(colour("success", "green"), colour("error", "red"), colour("warning", "yellow"),
                   colour("secondary", "cyan"), colour("accent", "magenta"))

    def tone(self, name: str) -> str:
        return getattr(self, name, "")


def _size(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(size)


def _grid() -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    return table


def lineage_view(record: RunRecord, palette: Palette) -> RenderableType:
    """The run's code, data, params and image, with their hashes, stage by stage."""
    head = _grid()
    head.add_row(Text("image", palette.muted), Text(f"{record.image_tag or '—'}  {fmt.short_hash(record.image_id, 19)}"))
    head.add_row(Text("snapshot", palette.muted), Text(record.snapshot_id or "—"))
    head.add_row(Text("manifest", palette.muted), Text(fmt.short_hash(record.manifest_hash, 19)))
    data_paths = {ds.path for ds in record.datasets}
    for ds in record.datasets:
        head.add_row(Text("data", palette.muted),
                     Text(f"{ds.path}  {fmt.short_hash(ds.fingerprint, 19)}  {ds.row_count:,} rows, "
                          f"{len(ds.columns)} columns"))
    parts: list[RenderableType] = [head]
    for stage in record.stages:
        status = str(stage.status)
        title = Text()
        title.append(f"\n{stage.stage} ", "bold")
        title.append(fmt.status_text(status), palette.tone(fmt.tone(status)))
        if stage.reused_from_run:
            title.append(f"  reused from run {stage.reused_from_run}", palette.info)
        title.append(f"  key {fmt.short_hash(stage.cache_key, 16)}", palette.muted)
        table = _grid()
        for f in stage.inputs:
            table.add_row(Text("  data" if f.path in data_paths else "  code", palette.muted),
                          Text(f"{f.path}  {fmt.short_hash(f.sha256, 16)}  {_size(f.size)}"))
        for key, value in stage.param_values.items():  # the keys its cache key took
            table.add_row(Text("  key", palette.muted), Text(f"{key} = {value}"))
        for key, value in sorted(stage.params.items()):
            table.add_row(Text("  param", palette.muted), Text(f"{key} = {value}"))
        for art in stage.artifacts:
            table.add_row(Text("  out", palette.muted),
                          Text(f"{art.name} ({art.kind})  {fmt.short_hash(art.sha256, 16)}  {_size(art.size)}"))
        parts += [title, table]
    return Group(*parts)


def validation_view(report: ValidationReport | None, datasets: list[DatasetProfile], palette: Palette) -> RenderableType:
    """The validation stage's report (its findings) and the profile of each data file."""
    parts: list[RenderableType] = []
    if report is None:
        parts.append(Text("no stage of this run wrote a validation report "
                          "(an artifact of kind validation_report)", palette.muted))
    elif report.content is None:
        parts.append(Text(f"{report.stage}/{report.artifact}: {report.problem}", palette.bad))
    else:
        content = report.content
        head = Text()
        ok = content.get("ok")
        if ok is not None:
            head.append("✓ passed" if ok else "✗ failed", palette.good if ok else palette.bad)
            head.append("  ")
        head.append(f"{report.stage}/{report.artifact}", palette.muted)
        extras = [f"{k} {v}" for k, v in content.items() if k not in ("ok", "findings") and isinstance(v, (int, float, str))]
        if extras:
            head.append("  " + " · ".join(extras))
        parts.append(head)
        findings = content.get("findings")
        if isinstance(findings, list) and findings:
            table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
            for col in ("level", "check", "column", "message"):
                table.add_column(col, overflow="fold", no_wrap=col != "message")
            level_tone = {"error": palette.bad, "warning": palette.warn, "info": palette.muted}
            for f in findings:
                if isinstance(f, dict):
                    level = str(f.get("level", ""))
                    table.add_row(Text(level, level_tone.get(level, "")), str(f.get("check", "")),
                                  str(f.get("column") or ""), str(f.get("message", "")))
            parts.append(table)
    for ds in datasets:
        parts.append(Text(f"\n{ds.path}  {ds.row_count:,} rows  fingerprint {fmt.short_hash(ds.fingerprint, 16)}", "bold"))
        if ds.problems:
            parts.append(Text("! " + "\n  ".join(ds.problems), palette.warn))
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for col in ("column", "type", "nulls", "distinct", "min", "max", "mean"):
            table.add_column(col, justify="right" if col in ("nulls", "distinct", "mean") else "left", no_wrap=True)
        for c in ds.columns:
            table.add_row(c.name, c.dtype, Text(str(c.nulls), palette.warn if c.nulls else ""), str(c.distinct),
                          str(c.min or ""), str(c.max or ""), fmt.metric(c.mean))
        parts.append(table)
    return Group(*parts)

"""The params key values of each stage run, in the lineage store's `stage_params` table
(schema migration 7). The lineage store writes them in the run's own transaction and reads
them with the run's stages; the queries live here."""

from __future__ import annotations

import duckdb

from workbench.core.model import RunRecord


def stage_params_rows(record: RunRecord) -> list[tuple]:
    """(run_id, stage, position, file, key, value) for each key each stage named."""
    rows = []
    for stage in record.stages:
        for position, (label, value) in enumerate(stage.param_values.items()):
            file, _, key = label.rpartition(":")
            rows.append((record.id, stage.stage, position, file, key, value))
    return rows


def read_stage_params(con: duckdb.DuckDBPyConnection, where: str, args: dict) -> dict[str, dict[str, str]]:
    """{stage: {`file:key`: value}} of the stage runs `where` selects (on run_id and stage)."""
    found: dict[str, dict[str, str]] = {}
    for stage, file, key, value in con.execute(
            f"SELECT stage, file, key, value FROM stage_params {where} ORDER BY stage, position", args).fetchall():
        found.setdefault(stage, {})[f"{file}:{key}"] = value
    return found

"""Which cold reruns (`R`, `workbench reproduce`) checked a run: a reproduce run re-executes the
original's snapshot, so it shares its snapshot id. One short read through the lineage store's
session; the verdict itself is the core's (workbench.core.reproduce)."""

from __future__ import annotations

from workbench.adapters.duckdb_store import DuckDBLineageStore


class DuckDBReproductionStore:
    def __init__(self, lineage: DuckDBLineageStore):
        self.lineage = lineage

    def latest_reproduction(self, run_id: int) -> int | None:
        """The newest finished reproduce run of `run_id`'s snapshot (not `run_id` itself), or None."""
        with self.lineage.transaction() as con:
            row = con.execute(
                "SELECT r.id FROM runs r JOIN runs o ON o.id = ? AND o.snapshot_id <> '' "
                "AND r.snapshot_id = o.snapshot_id AND r.project = o.project "
                "WHERE r.trigger = 'reproduce' AND r.id <> o.id AND r.status NOT IN ('running', 'pending') "
                "ORDER BY r.id DESC LIMIT 1", [run_id]).fetchone()
        return row[0] if row else None

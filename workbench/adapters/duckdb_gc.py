"""The lineage store's side of `workbench gc`: the facts the plan is made from, and deleting
the runs (and versions) it gives up, in one transaction.

The plan is made inside the same write transaction that deletes (`collect`), so a promotion,
a drift check or a registration that committed a moment before is seen: nothing it pinned is
deleted. Every table with a `run_id` column describes a run and loses that run's rows (found
from the catalog, so a table added later is covered); `model_versions` is the exception: a
version goes only when the plan says so, with its seal, and then the audit anchor is rewritten
with the key in the same breath (the anchor counts sealed versions, and gc is the one writer
allowed to lower that count). Audit rows are never touched, nor the MLflow outbox's history.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Callable

from workbench.adapters.audit_files import AuditFiles
from workbench.adapters.duckdb_audit import audit_key, chain_head
from workbench.adapters.duckdb_store import ALIAS, DuckDBLineageStore
from workbench.core.errors import WorkbenchError
from workbench.core.gc_plan import GcFacts, RunFact, RunPlan, VersionFact

KEEPS_VERSIONS = frozenset({"model_versions"})
"""Tables with a run_id whose rows are not a run's own details."""
_OUTBOX_KEY = re.compile(r"^(run|version):(\d+)$")


class AnchorBehind(WorkbenchError):
    """Another process committed a registry change and has not anchored it yet: try again."""


class DuckDBGcStore:
    def __init__(self, lineage: DuckDBLineageStore, audit: AuditFiles | None = None, mirror_on: bool = True):
        self.lineage = lineage
        self.audit = audit or AuditFiles(lineage.path.parent / "audit")
        self.mirror_on = mirror_on
        """Off: the MLflow outbox's pending items pin nothing (nobody will send them); those
        of deleted runs and versions are closed, so a mirror turned on later skips them."""

    def plan(self, decide: Callable[[GcFacts], RunPlan]) -> RunPlan:
        """The plan from the facts as they are now (a read-only transaction: a dry run)."""
        with self.lineage.transaction() as con:
            return decide(read_facts(con, keyed=self.audit.key() is not None, outbox_pins=self.mirror_on))

    def collect(self, decide: Callable[[GcFacts], RunPlan]) -> RunPlan:
        """Plan and delete in one write transaction; returns the plan that was carried out."""
        keyed = self.audit.key() is not None
        if not keyed:
            with self.lineage.transaction(write=True) as con:
                plan = decide(read_facts(con, keyed=False, outbox_pins=self.mirror_on))
                delete_runs(con, plan)
            return plan
        # Held across the transaction: a registry writer that committed before us anchors
        # its commit before we compare, and none anchors between our commit and our anchor.
        with self.audit.locked():
            with self.lineage.transaction(write=True) as con:
                plan = decide(read_facts(con, keyed=True, outbox_pins=self.mirror_on))
                if plan.deleted_versions:
                    key, head = audit_key(con, self.audit)
                    anchored, problem = self.audit.read_anchor(key)
                    if anchored != head:
                        raise AnchorBehind(problem or "the audit anchor does not match the lineage store (a "
                                                      "promotion finishing, or one a crash cut short): run "
                                                      "`workbench history PROJECT --verify`, which repairs the "
                                                      "latter, then gc again; nothing was deleted")
                delete_runs(con, plan)
                if plan.deleted_versions:
                    # Before the commit: a crash after it leaves an anchor with fewer sealed
                    # versions than the store, which verifying takes for an unfinished commit.
                    self.audit.write_anchor(key, chain_head(con))
        return plan


def read_facts(con, keyed: bool = True, outbox_pins: bool = True) -> GcFacts:
    """Every run (id, project, status, trigger, snapshot, the runs it reused), every version,
    and what pins a version or a run: aliases, audit rows, drift batches, the MLflow outbox's
    pending items. `keyed` False (no audit key yet): every version is pinned, since a version
    can only be deleted with its seal re-anchored."""
    reused: dict[int, frozenset[int]] = {
        run_id: frozenset(sources) for run_id, sources in con.execute(
            "SELECT run_id, list(DISTINCT reused_from_run) FROM stage_runs WHERE reused_from_run IS NOT NULL "
            "GROUP BY run_id").fetchall()}
    runs = tuple(RunFact(run_id, project, status, trigger, snapshot or "", reused.get(run_id, frozenset()))
                 for run_id, project, status, trigger, snapshot in con.execute(
                     "SELECT id, project, status, trigger, snapshot_id FROM runs ORDER BY id").fetchall())
    versions = tuple(VersionFact(*row) for row in con.execute(
        "SELECT project, version, run_id FROM model_versions ORDER BY project, version").fetchall())
    pinned_versions: dict[tuple[str, int], str] = {}
    pinned_runs: dict[int, str] = {}

    def pin_version(project: str, version: int | None, why: str) -> None:
        if version is not None:
            pinned_versions.setdefault((project, version), why)

    for project, alias, version in con.execute("SELECT project, alias, version FROM aliases ORDER BY 1, 2").fetchall():
        pin_version(project, version, f"in {alias}")
    for row_id, project, *named in con.execute(
            "SELECT id, project, version, from_version, to_version FROM audit ORDER BY id").fetchall():
        for version in named:
            pin_version(project, version, f"named by audit row #{row_id}")
    for batch, project, ref_run, ref_version, retrain_run in con.execute(
            "SELECT id, project, reference_run_id, reference_version, retrain_run_id FROM drift_batches "
            "ORDER BY id").fetchall():
        pin_version(project, ref_version, f"drift batch {batch}'s reference")
        if ref_run is not None:
            pinned_runs.setdefault(ref_run, f"drift batch {batch}'s reference")
        if retrain_run is not None:
            pinned_runs.setdefault(retrain_run, f"drift batch {batch}'s retrain")
    pending = con.execute("SELECT project, kind, key FROM mlflow_outbox WHERE done_at IS NULL ORDER BY id").fetchall()
    for project, kind, key in pending if outbox_pins else ():
        found = _OUTBOX_KEY.match(key)
        if found and found.group(1) == "run":
            pinned_runs.setdefault(int(found.group(2)), f"waiting for the MLflow mirror ({kind})")
        elif found:
            pin_version(project, int(found.group(2)), f"waiting for the MLflow mirror ({kind})")
    if not keyed:
        for v in versions:
            pin_version(v.project, v.version, "registered before the audit key existed")
    return GcFacts(runs, versions, pinned_versions, pinned_runs)


def run_tables(con) -> list[str]:
    """The tables holding a run's details: every table of the store with a run_id column."""
    rows = con.execute("SELECT table_name FROM duckdb_columns() WHERE database_name = ? AND column_name = 'run_id' "
                       "ORDER BY table_name", [ALIAS]).fetchall()
    return [name for (name,) in rows if name not in KEEPS_VERSIONS]


def delete_runs(con, plan: RunPlan) -> None:
    """Delete the plan's runs with every row that describes them, and its versions with their seals."""
    if plan.deleted:
        ids = list(plan.deleted)
        for table in run_tables(con):
            con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT unnest(?::INTEGER[]))", [ids])
        con.execute("DELETE FROM runs WHERE id IN (SELECT unnest(?::INTEGER[]))", [ids])
    for project, version in plan.deleted_versions:
        con.execute("DELETE FROM version_seals WHERE project = ? AND version = ?", [project, version])
        con.execute("DELETE FROM model_versions WHERE project = ? AND version = ?", [project, version])
    # Items still queued for what is gone (only when the mirror is off: otherwise they pin it)
    # are closed, not deleted: the outbox is the mirror's history.
    keys = [f"{plan.projects[r]}\n run:{r}" for r in plan.deleted] + \
        [f"{p}\n version:{v}" for p, v in plan.deleted_versions]
    if keys:
        con.execute("UPDATE mlflow_outbox SET done_at = ?, last_error = 'not sent: deleted by workbench gc while "
                    "the mirror was off' WHERE done_at IS NULL AND list_contains(?, project || chr(10) || ' ' || key)",
                    [datetime.now(timezone.utc).replace(tzinfo=None), keys])

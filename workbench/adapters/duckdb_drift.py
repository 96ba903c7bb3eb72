"""Drift checks on DuckDB: the batches a project received, what their check found, the retrain
each caused. The table lives in the lineage store's file (schema migration 3); every operation
is one short transaction through the lineage store's session.

A batch is identified by its content (project, sha256): the same file landing twice, or under
two names, is checked once. A check first claims its row (state 'checking'), so two processes
watching one workspace never check, or retrain on, one batch twice.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.core.drift_report import CheckedBatch, DriftReport, report_from_dict, report_to_dict
from workbench.core.drift_retrain import RetrainDecision

COLUMNS = ("id", "project", "batch_path", "sha256", "state", "landed_at", "checked_at", "rows", "reference_path",
           "reference_run_id", "reference_version", "drifted", "share", "drifted_columns", "compared_columns",
           "decay_metric", "decay_baseline", "decay_value", "retrain", "retrain_cause", "retrain_reason",
           "retrain_run_id")
STALE_CLAIM = timedelta(minutes=15)
"""A claim older than this was left by a process that died mid-check: it may be taken over."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None else None


class DuckDBDriftStore:
    def __init__(self, lineage: DuckDBLineageStore):
        self.lineage = lineage

    def _tx(self, write: bool = False):
        return self.lineage.transaction(write)

    def claim(self, project: str, batch_path: str, sha256: str) -> tuple[int, CheckedBatch | None]:
        """Claim a batch for checking: (its id, None) when this caller should check it, or (its
        id, the batch as recorded) when it was checked already or another process is on it."""
        now = _now()
        with self._tx(write=True) as con:
            row = con.execute(f"SELECT {', '.join(COLUMNS)}, report FROM drift_batches WHERE project = ? AND sha256 = ?",
                              [project, sha256]).fetchone()
            if row is None:
                batch_id = con.execute(
                    "INSERT INTO drift_batches (project, batch_path, sha256, state, landed_at) "
                    "VALUES (?, ?, ?, 'checking', ?) RETURNING id", [project, batch_path, sha256, now]).fetchone()[0]
                return batch_id, None
            batch = _batch(row)
            if batch.state == "checking" and now - row[COLUMNS.index("landed_at")] > STALE_CLAIM:
                con.execute("UPDATE drift_batches SET landed_at = ?, batch_path = ? WHERE id = ?",
                            [now, batch_path, batch.id])
                return batch.id, None
            return batch.id, batch

    def release(self, batch_id: int) -> None:
        """Give up a claim without a result (the check failed before it could say anything)."""
        with self._tx(write=True) as con:
            con.execute("DELETE FROM drift_batches WHERE id = ? AND state = 'checking'", [batch_id])

    def record(self, batch_id: int, report: DriftReport, decision: RetrainDecision, reference_path: str | None,
               reference_sha256: str | None, reference_run_id: int | None, reference_version: int | None) -> None:
        decay = report.decay
        with self._tx(write=True) as con:
            con.execute(
                "UPDATE drift_batches SET state = 'checked', checked_at = ?, rows = ?, reference_path = ?, "
                "reference_sha256 = ?, reference_run_id = ?, reference_version = ?, drifted = ?, share = ?, "
                "drifted_columns = ?, compared_columns = ?, decay_metric = ?, decay_baseline = ?, decay_value = ?, "
                "report = ?, retrain = ?, retrain_cause = ?, retrain_reason = ? WHERE id = ?",
                # An unusable batch is neither drifted nor clean: NULL, so no query counts it as either.
                [_now(), report.rows, reference_path, reference_sha256, reference_run_id, reference_version,
                 report.drifted if report.usable else None, report.share, len(report.drifted_columns), len(report.features),
                 decay.metric if decay else None, decay.baseline if decay else None, decay.value if decay else None,
                 json.dumps(report_to_dict(report)), decision.retrain, decision.cause or None, decision.reason,
                 batch_id])

    def set_retrain_run(self, batch_id: int, run_id: int) -> None:
        with self._tx(write=True) as con:
            con.execute("UPDATE drift_batches SET retrain_run_id = ? WHERE id = ?", [run_id, batch_id])

    def retrain_refused(self, batch_id: int, reason: str) -> None:
        """A retrain that was decided but could not start (say why; it does not count as one)."""
        with self._tx(write=True) as con:
            con.execute("UPDATE drift_batches SET retrain = false, retrain_reason = ? WHERE id = ?",
                        [reason, batch_id])

    def retrain_times(self, project: str) -> list[datetime]:
        """When the project's retrains were decided (for the cooldown and the daily cap)."""
        with self._tx() as con:
            rows = con.execute("SELECT checked_at FROM drift_batches WHERE project = ? AND retrain "
                               "AND checked_at IS NOT NULL", [project]).fetchall()
        return [_aware(r[0]) for r in rows]

    def batches(self, project: str, limit: int = 20, with_reports: bool = False) -> list[CheckedBatch]:
        """Newest first, with each retrain run's status and the version it registered."""
        return self._select("b.project = ?", [project], limit, with_reports)

    def batch(self, project: str, batch_id: int | None = None, sha256: str | None = None) -> CheckedBatch | None:
        if batch_id is not None:
            found = self._select("b.project = ? AND b.id = ?", [project, batch_id], 1, True)
        else:
            found = self._select("b.project = ? AND b.sha256 = ?", [project, sha256], 1, True)
        return found[0] if found else None

    def _select(self, where: str, params: list, limit: int, with_reports: bool) -> list[CheckedBatch]:
        report = "b.report" if with_reports else "NULL"
        with self._tx() as con:
            rows = con.execute(
                f"SELECT {', '.join('b.' + c for c in COLUMNS)}, {report}, r.status, "
                "(SELECT min(mv.version) FROM artifacts a JOIN model_versions mv ON mv.project = b.project "
                " AND mv.sha256 = a.sha256 WHERE a.run_id = b.retrain_run_id AND a.kind = 'model') "
                f"FROM drift_batches b LEFT JOIN runs r ON r.id = b.retrain_run_id WHERE {where} "
                "ORDER BY b.id DESC LIMIT ?", params + [limit]).fetchall()
            batches = [_batch(row[:len(COLUMNS) + 1], status=row[-2], version=row[-1]) for row in rows]
            versions = [b for b in batches if b.retrain_version is not None]
            if versions:
                statuses = _version_statuses(con, batches[0].project, [b.retrain_version for b in versions])
                batches = [_with_version_status(b, statuses) for b in batches]
        return batches

    def latest_data_run(self, project: str, path: str) -> tuple[int, str, str] | None:
        """The newest succeeded run that recorded the data file: (run id, its sha256, snapshot id)."""
        with self._tx() as con:
            return con.execute(
                "SELECT r.id, rd.fingerprint, r.snapshot_id FROM runs r JOIN run_datasets rd ON rd.run_id = r.id "
                "WHERE r.project = ? AND r.status = 'succeeded' AND rd.path = ? ORDER BY r.id DESC LIMIT 1",
                [project, path]).fetchone()


def _version_statuses(con, project: str, versions: list[int]) -> dict[int, str]:
    holders = dict(con.execute("SELECT version, alias FROM aliases WHERE project = ?", [project]).fetchall())
    ever = {row[0] for row in con.execute(
        "SELECT DISTINCT to_version FROM audit WHERE project = ? AND action <> 'refuse' AND to_version IS NOT NULL",
        [project]).fetchall()}
    return {v: holders.get(v) or ("archived" if v in ever else "registered") for v in versions}


def _with_version_status(batch: CheckedBatch, statuses: dict[int, str]) -> CheckedBatch:
    if batch.retrain_version is None:
        return batch
    from dataclasses import replace

    return replace(batch, retrain_version_status=statuses.get(batch.retrain_version))


def _batch(row: tuple, status: str | None = None, version: int | None = None) -> CheckedBatch:
    values = dict(zip(COLUMNS, row[:len(COLUMNS)]))
    report = row[len(COLUMNS)] if len(row) > len(COLUMNS) else None
    return CheckedBatch(
        id=values["id"], project=values["project"], path=values["batch_path"], sha256=values["sha256"],
        state=values["state"], landed_at=_aware(values["landed_at"]), checked_at=_aware(values["checked_at"]),
        rows=values["rows"], reference_path=values["reference_path"], reference_run_id=values["reference_run_id"],
        reference_version=values["reference_version"], drifted=values["drifted"], share=values["share"],
        drifted_columns=values["drifted_columns"] or 0, compared_columns=values["compared_columns"] or 0,
        decay_metric=values["decay_metric"], decay_baseline=values["decay_baseline"],
        decay_value=values["decay_value"], retrain=bool(values["retrain"]), retrain_cause=values["retrain_cause"],
        retrain_reason=values["retrain_reason"] or "", retrain_run_id=values["retrain_run_id"],
        retrain_status=status, retrain_version=version,
        report=report_from_dict(json.loads(report)) if report else None,
    )

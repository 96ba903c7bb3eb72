"""The model registry on DuckDB: versions, aliases, the audit trail and the MLflow outbox.

Its tables live in the lineage store's file (schema migration 2) and every operation is one
short transaction through the lineage store's session, which attaches the file, retries while
another process holds it, and maps DuckDB's errors to ours.

A promotion is one write transaction: read the facts, let the pure policy decide, compare the
alias's holder with the one the caller saw (check-and-set), then write the audit row, the alias
and the outbox row together. DuckDB admits one writer per file at a time, so of two processes
promoting at once the second sees the first one's alias and is refused ("moved meanwhile").
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, NamedTuple

from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.core.errors import VersionNotFound
from workbench.core.gates import GateResult
from workbench.core.promotion import (
    Action, AliasMove, Decision, ReproduceRun, VersionFacts, alias_moved, reproduction_verdict,
)
from workbench.core.registry import AuditEntry, ModelVersion, OutboxItem

VERSION_COLUMNS = ("project", "version", "run_id", "created_at", "stage", "artifact_name", "artifact_path", "sha256",
                   "size", "run_status", "run_reason", "metrics", "params", "gates", "primary_metric",
                   "primary_value", "snapshot_id", "image_id", "manifest_hash", "data_fingerprints",
                   "inputs_digest", "cache_key")
AUDIT_COLUMNS = ("id", "occurred_at", "actor", "host", "project", "action", "request", "alias", "version",
                 "from_version", "to_version", "reason", "message", "checks", "gates", "comparison")
OUTBOX_COLUMNS = "id, project, kind, key, payload, created_at, attempts, last_error, next_attempt_at"
MOVES = (Action.PROMOTE.value, Action.ROLLBACK.value)


class AliasFacts(NamedTuple):
    """What a promotion or rollback of one alias is decided on, read in its transaction."""

    holder: int | None
    """The version holding the alias now."""
    champion: VersionFacts | None
    """The version holding production now."""
    moves: list[AliasMove]
    """The alias's successful moves, oldest first."""


class UncheckedType:
    """The caller did not see the alias's holder: promote against whoever holds it now."""

    def __repr__(self) -> str:
        return "UNCHECKED"


UNCHECKED = UncheckedType()
Decider = Callable[[VersionFacts | None, AliasFacts], Decision]


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class DuckDBRegistryStore:
    def __init__(self, lineage: DuckDBLineageStore):
        self.lineage = lineage

    def _tx(self, write: bool = False):
        return self.lineage.transaction(write)

    # -- registering runs ------------------------------------------------------------------

    def record_run(self, project: str, run_id: int, run_payload: dict[str, Any],
                   draft: ModelVersion | None, cache_key: str = "") -> tuple[ModelVersion | None, bool]:
        """Queue the run for MLflow and register its model (once per model file).

        `draft` is the version to register (its number is assigned here); `cache_key` is the
        model stage's, by which a later `reproduce` run is found. Returns the version the run's
        model is (None without a model) and whether this call created it. Calling it again for
        the same run changes nothing.
        """
        with self._tx(write=True) as con:
            seen = con.execute("SELECT 1 FROM mlflow_outbox WHERE kind = 'log_run' AND key = ?",
                               [f"run:{run_id}"]).fetchone()
            existing = None
            if draft is not None:
                existing = _version_row(con, "project = ? AND sha256 = ?", [project, draft.sha256])
            if existing is not None:
                existing = _decorate(con, [existing])[0]
            if seen:
                return existing, False
            _enqueue(con, project, "log_run", f"run:{run_id}", run_payload)
            if draft is None or existing is not None:
                return existing, False
            number = con.execute("SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE project = ?",
                                 [project]).fetchone()[0]
            version = replace(draft, version=number, created_at=datetime.now(timezone.utc))
            _insert_version(con, version, cache_key)
            _enqueue(con, project, "register_version", f"version:{number}", {
                "project": project, "version": number, "run_id": version.run_id, "sha256": version.sha256,
                "artifact_name": version.artifact_name, "stage": version.stage,
                "primary_metric": version.primary_metric, "primary_value": _finite(version.primary_value),
                "run": run_payload,
            })
            return version, True

    def unrecorded_runs(self, limit: int = 100) -> list[tuple[int, str]]:
        """Finished runs (newer than the registry) that record_run has not seen: a workbench
        that stopped between recording a run and registering it leaves these. (id, project path)"""
        with self._tx() as con:
            return con.execute(
                "SELECT r.id, p.path FROM runs r JOIN projects p ON p.name = r.project "
                "WHERE r.id > (SELECT value FROM registry_state WHERE name = 'baseline_run') "
                "AND r.status <> 'running' AND NOT EXISTS (SELECT 1 FROM mlflow_outbox o "
                "WHERE o.kind = 'log_run' AND o.key = 'run:' || r.id) ORDER BY r.id LIMIT ?", [limit]).fetchall()

    # -- reading versions --------------------------------------------------------------------

    def get_version(self, project: str, version: int) -> ModelVersion:
        with self._tx() as con:
            found = _version_row(con, "project = ? AND version = ?", [project, version])
            if found is None:
                raise _not_found(con, project, version)
            return _decorate(con, [found])[0]

    def list_versions(self, project: str) -> list[ModelVersion]:
        """Newest first, with the aliases each holds now and has ever held."""
        with self._tx() as con:
            rows = con.execute(f"SELECT {', '.join(VERSION_COLUMNS)} FROM model_versions WHERE project = ? "
                               "ORDER BY version DESC", [project]).fetchall()
            return _decorate(con, [_version_from_row(r) for r in rows])

    def version_for_run(self, project: str, run_id: int, kind: str) -> ModelVersion | None:
        """The version a run's model file is (registered by this run or an earlier one)."""
        with self._tx() as con:
            row = con.execute(
                f"SELECT {', '.join('mv.' + c for c in VERSION_COLUMNS)} FROM artifacts a "
                "JOIN model_versions mv ON mv.project = ? AND mv.sha256 = a.sha256 "
                "WHERE a.run_id = ? AND a.kind = ? ORDER BY mv.version LIMIT 1", [project, run_id, kind]).fetchone()
            return _decorate(con, [_version_from_row(row)])[0] if row else None

    def aliases(self, project: str) -> dict[str, int]:
        with self._tx() as con:
            return dict(con.execute("SELECT alias, version FROM aliases WHERE project = ?", [project]).fetchall())

    # -- promoting ---------------------------------------------------------------------------

    def preview(self, project: str, alias: str, version: int | None, decide: Decider) -> Decision:
        """The decision as it stands now, changing nothing (a dry run, or what to confirm)."""
        with self._tx() as con:
            candidate = _facts(con, project, version) if version is not None else None
            return decide(candidate, _alias_facts(con, project, alias))

    def alias_facts(self, project: str, alias: str) -> AliasFacts:
        with self._tx() as con:
            return _alias_facts(con, project, alias)

    def apply(self, project: str, alias: str, version: int | None, decide: Decider,
              expected_holder: int | None | UncheckedType, actor: str, host: str, reason: str) -> Decision:
        """Decide and record a promotion or rollback in one transaction.

        `decide` gets the candidate's facts (None for a rollback, which picks its target from
        the alias's moves) and the alias's facts. When `expected_holder` is given and someone
        else holds the alias now, the move is refused ("moved meanwhile"). Either way the
        attempt is one audit row.
        """
        with self._tx(write=True) as con:
            candidate = _facts(con, project, version) if version is not None else None
            facts = _alias_facts(con, project, alias)
            decision = decide(candidate, facts)
            if not isinstance(expected_holder, UncheckedType) and facts.holder != expected_holder:
                decision = alias_moved(replace(decision, from_version=expected_holder), facts.holder)
            return _record(con, decision, actor, host, reason)

    # -- the audit trail ---------------------------------------------------------------------

    def history(self, project: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest first."""
        where = "WHERE project = ?" if project else ""
        with self._tx() as con:
            rows = con.execute(f"SELECT {', '.join(AUDIT_COLUMNS)}, row_hash FROM audit {where} "
                               "ORDER BY id DESC LIMIT ?", ([project] if project else []) + [limit]).fetchall()
        return [_audit_from_row(r) for r in rows]

    def verify_history(self) -> tuple[int, int | None]:
        """Recompute the hash chain: (rows checked, id of the first row that does not match)."""
        with self._tx() as con:
            rows = con.execute(f"SELECT {', '.join(AUDIT_COLUMNS)}, prev_hash, row_hash FROM audit "
                               "ORDER BY id").fetchall()
        prev = ""
        for row in rows:
            fields, prev_hash, row_hash = row[:-2], row[-2], row[-1]
            if prev_hash != prev or _row_hash(prev, dict(zip(AUDIT_COLUMNS, fields))) != row_hash:
                return len(rows), fields[0]
            prev = row_hash
        return len(rows), None

    # -- the MLflow outbox -------------------------------------------------------------------

    def has_due_items(self) -> bool:
        with self._tx() as con:
            return con.execute("SELECT count(*) FROM mlflow_outbox WHERE done_at IS NULL AND "
                               "(next_attempt_at IS NULL OR next_attempt_at <= ?)", [_now()]).fetchone()[0] > 0

    def item_done(self, item_id: int, tracking_uri: str, ids: dict[tuple[str, str], str]) -> None:
        with self._tx(write=True) as con:
            con.execute("UPDATE mlflow_outbox SET done_at = ?, attempts = attempts + 1, last_attempt_at = ?, "
                        "last_error = NULL WHERE id = ?", [_now(), _now(), item_id])
            for (kind, key), mlflow_id in ids.items():
                con.execute("INSERT INTO mlflow_ids VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                            "mlflow_id = excluded.mlflow_id", [tracking_uri, kind, key, mlflow_id])

    def item_failed(self, item_id: int, error: str, retry_in_s: float) -> None:
        with self._tx(write=True) as con:
            con.execute("UPDATE mlflow_outbox SET attempts = attempts + 1, last_error = ?, last_attempt_at = ?, "
                        "next_attempt_at = ? WHERE id = ?",
                        [error, _now(), _now() + timedelta(seconds=retry_in_s), item_id])

    def mlflow_ids(self, tracking_uri: str) -> dict[tuple[str, str], str]:
        with self._tx() as con:
            rows = con.execute("SELECT kind, key, mlflow_id FROM mlflow_ids WHERE tracking_uri = ?",
                               [tracking_uri]).fetchall()
        return {(kind, key): mlflow_id for kind, key, mlflow_id in rows}

    def outbox_summary(self) -> dict[str, Any]:
        with self._tx() as con:
            pending, failing, next_at = con.execute(
                "SELECT count(*), count(last_error), min(next_attempt_at) FROM mlflow_outbox WHERE done_at IS NULL"
            ).fetchone()
            error = con.execute("SELECT last_error, last_attempt_at FROM mlflow_outbox WHERE done_at IS NULL "
                                "AND last_error IS NOT NULL ORDER BY last_attempt_at DESC LIMIT 1").fetchone()
            synced = con.execute("SELECT max(done_at) FROM mlflow_outbox").fetchone()[0]
        return {"pending": pending, "failing": failing, "next_attempt_at": _aware(next_at),
                "last_error": error[0] if error else None, "last_error_at": _aware(error[1]) if error else None,
                "last_synced_at": _aware(synced)}

    def outbox_items(self, include_done: bool = False, limit: int | None = None) -> list[OutboxItem]:
        """Oldest first; pending ones only unless `include_done`."""
        where = "" if include_done else "WHERE done_at IS NULL"
        with self._tx() as con:
            rows = con.execute(f"SELECT {OUTBOX_COLUMNS} FROM mlflow_outbox {where} ORDER BY id LIMIT ?",
                               [limit if limit is not None else 1 << 62]).fetchall()
        return [_outbox_from_row(r) for r in rows]


# -- reading ---------------------------------------------------------------------------------

def _version_row(con, where: str, params: list) -> ModelVersion | None:
    row = con.execute(f"SELECT {', '.join(VERSION_COLUMNS)} FROM model_versions WHERE {where}", params).fetchone()
    return _version_from_row(row) if row else None


def _version_from_row(row: tuple) -> ModelVersion:
    data = dict(zip(VERSION_COLUMNS, row))
    data.pop("cache_key")
    return ModelVersion(**data | {
        "created_at": data["created_at"].replace(tzinfo=timezone.utc),
        "metrics": {k: (math.nan if v is None else v) for k, v in json.loads(data["metrics"]).items()},
        "params": json.loads(data["params"]),
        "gates": tuple(GateResult(**g) for g in json.loads(data["gates"])),
        "data_fingerprints": json.loads(data["data_fingerprints"]),
    })


def _decorate(con, versions: list[ModelVersion]) -> list[ModelVersion]:
    """Add the aliases each version holds and has held, and a matching reproduce run."""
    if not versions:
        return versions
    project = versions[0].project
    now = {}
    for alias, version in con.execute("SELECT alias, version FROM aliases WHERE project = ?", [project]).fetchall():
        now.setdefault(version, []).append(alias)
    ever = {}
    for alias, version in con.execute("SELECT DISTINCT alias, to_version FROM audit WHERE project = ? AND action IN "
                                      "(?, ?)", [project, *MOVES]).fetchall():
        ever.setdefault(version, set()).add(alias)
    out = []
    for v in versions:
        r = _reproduction(con, project, v.version)
        matched = r is not None and reproduction_verdict(v.version, v.run_id, v.sha256, v.metrics, r)[0]
        reproduced_by = r.run_id if matched else None
        out.append(replace(v, aliases=tuple(sorted(now.get(v.version, []))),
                           ever_in=tuple(sorted(ever.get(v.version, set()))), reproduced_by=reproduced_by))
    return out


def _not_found(con, project: str, version: int) -> VersionNotFound:
    known = [r[0] for r in con.execute("SELECT version FROM model_versions WHERE project = ? ORDER BY version",
                                       [project]).fetchall()]
    listed = ", ".join(map(str, known)) if known else "none yet: a successful run that logs a model registers one"
    return VersionNotFound(f"{project} has no model version {version} (versions: {listed})")


def _facts(con, project: str, version: int) -> VersionFacts:
    row = con.execute("SELECT run_id, run_status, run_reason, metrics, sha256 FROM model_versions "
                      "WHERE project = ? AND version = ?", [project, version]).fetchone()
    if row is None:
        raise _not_found(con, project, version)
    run_id, status, reason, metrics, sha = row
    ever = frozenset(r[0] for r in con.execute(
        "SELECT DISTINCT alias FROM audit WHERE project = ? AND to_version = ? AND action IN (?, ?)",
        [project, version, *MOVES]).fetchall())
    return VersionFacts(version=version, run_id=run_id, run_status=status, run_reason=reason,
                        metrics={k: (math.nan if v is None else v) for k, v in json.loads(metrics).items()},
                        model_sha256=sha, ever_in=ever, reproduction=_reproduction(con, project, version))


def _reproduction(con, project: str, version: int) -> ReproduceRun | None:
    """The `reproduce` run of the version's run that matters: one that wrote the same model
    file if there is one, else the latest. A reproduce run re-executes the stage with the same
    cache key (same code, data, params and image) instead of reusing it."""
    row = con.execute(
        "SELECT s.run_id, a.sha256 FROM model_versions mv "
        "JOIN stage_runs s ON s.project = mv.project AND s.stage = mv.stage AND s.cache_key = mv.cache_key "
        "JOIN runs r ON r.id = s.run_id "
        "LEFT JOIN artifacts a ON a.run_id = s.run_id AND a.stage = s.stage AND a.name = mv.artifact_name "
        "WHERE mv.project = ? AND mv.version = ? AND r.trigger = 'reproduce' AND s.status = 'succeeded' "
        "ORDER BY (a.sha256 = mv.sha256) DESC NULLS LAST, s.run_id DESC LIMIT 1", [project, version]).fetchone()
    if row is None:
        return None
    metrics = con.execute("SELECT m.name, m.value FROM metrics m JOIN stage_runs s ON s.run_id = m.run_id AND "
                          "s.stage = m.stage WHERE m.run_id = ? ORDER BY s.position", [row[0]]).fetchall()
    return ReproduceRun(run_id=row[0], model_sha256=row[1],
                        metrics={name: (math.nan if value is None else value) for name, value in metrics})


def _alias_facts(con, project: str, alias: str) -> AliasFacts:
    holders = dict(con.execute("SELECT alias, version FROM aliases WHERE project = ?", [project]).fetchall())
    production = holders.get("production")
    champion = _facts(con, project, production) if production is not None else None
    moves = [AliasMove(action, to) for action, to in con.execute(
        "SELECT action, to_version FROM audit WHERE project = ? AND alias = ? AND action IN (?, ?) ORDER BY id",
        [project, alias, *MOVES]).fetchall()]
    return AliasFacts(holder=holders.get(alias), champion=champion, moves=moves)


def _audit_from_row(row: tuple) -> AuditEntry:
    data = dict(zip(AUDIT_COLUMNS + ("row_hash",), row))
    at = data.pop("occurred_at")
    return AuditEntry(**data | {
        "at": at.replace(tzinfo=timezone.utc),
        "checks": json.loads(data["checks"]),
        "gates": json.loads(data["gates"]),
        "comparison": json.loads(data["comparison"]) if data["comparison"] else None,
    })


def _outbox_from_row(row: tuple) -> OutboxItem:
    item_id, project, kind, key, payload, created, attempts, error, next_at = row
    return OutboxItem(item_id, project, kind, key, json.loads(payload), _aware(created), attempts, error,
                      _aware(next_at))


# -- writing ---------------------------------------------------------------------------------

def _insert_version(con, v: ModelVersion, cache_key: str) -> None:
    values = {
        **{c: getattr(v, c) for c in VERSION_COLUMNS if hasattr(v, c)},
        "created_at": v.created_at.astimezone(timezone.utc).replace(tzinfo=None),
        "metrics": json.dumps({k: _finite(x) for k, x in v.metrics.items()}),
        "params": json.dumps(v.params),
        "gates": json.dumps([_gate_dict(g) for g in v.gates]),
        "primary_value": _finite(v.primary_value),
        "data_fingerprints": json.dumps(v.data_fingerprints),
        "cache_key": cache_key,
    }
    con.execute(f"INSERT INTO model_versions ({', '.join(VERSION_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(VERSION_COLUMNS))})", [values[c] for c in VERSION_COLUMNS])


def _enqueue(con, project: str, kind: str, key: str, payload: dict[str, Any]) -> None:
    con.execute("INSERT INTO mlflow_outbox (project, kind, key, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                [project, kind, key, json.dumps(payload, default=str), _now()])


def _record(con, decision: Decision, actor: str, host: str, reason: str) -> Decision:
    """Append the audit row; when the decision allows it, move the alias and queue MLflow."""
    allowed = decision.allowed
    at = _now()
    audit_id = con.execute("SELECT nextval('audit_ids')").fetchone()[0]
    applied = replace(decision, applied=allowed, audit_id=audit_id,
                      at=at.replace(tzinfo=timezone.utc).isoformat())
    fields = {
        "id": audit_id, "occurred_at": at, "actor": actor, "host": host, "project": decision.project,
        "action": decision.action if allowed else Action.REFUSE.value, "request": decision.action,
        "alias": decision.alias, "version": decision.version, "from_version": decision.from_version,
        "to_version": decision.version if allowed else decision.from_version, "reason": reason,
        "message": applied.message,
        "checks": json.dumps([asdict(c) for c in decision.checks]),
        "gates": json.dumps([_gate_dict(g) for g in decision.gates]),
        "comparison": json.dumps(decision.comparison.as_dict()) if decision.comparison else None,
    }
    prev = con.execute("SELECT row_hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    prev_hash = prev[0] if prev else ""
    con.execute(f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}, prev_hash, row_hash) VALUES "
                f"({', '.join('?' * (len(AUDIT_COLUMNS) + 2))})",
                [fields[c] for c in AUDIT_COLUMNS] + [prev_hash, _row_hash(prev_hash, fields)])
    if allowed:
        con.execute("INSERT INTO aliases VALUES (?, ?, ?, ?, ?) ON CONFLICT (project, alias) DO UPDATE SET "
                    "version = excluded.version, since = excluded.since, audit_id = excluded.audit_id",
                    [decision.project, decision.alias, decision.version, at, audit_id])
        _enqueue(con, decision.project, "set_alias", f"alias:{decision.alias}", {
            "project": decision.project, "alias": decision.alias, "version": decision.version,
            "from_version": decision.from_version, "audit_id": audit_id, "action": decision.action,
        })
    return applied


def _gate_dict(g: GateResult) -> dict[str, Any]:
    return {"metric": g.metric, "op": g.op, "threshold": g.threshold, "value": _finite(g.value),
            "passed": g.passed, "detail": g.detail}


def _row_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items()},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + "\n" + canonical).encode()).hexdigest()


def _finite(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None else None

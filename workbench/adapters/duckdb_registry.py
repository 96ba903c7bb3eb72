"""The model registry on DuckDB: versions, aliases, the audit trail and the MLflow outbox.

Its tables live in the lineage store's file (schema migration 2) and every operation is one
short transaction through the lineage store's session, which attaches the file, retries while
another process holds it, and maps DuckDB's errors to ours.

A promotion is one write transaction: check that the records it stands on verify (the audit
chain against its key and anchor, the project's aliases against the audit trail's replay, the
project's version seals; see workbench.core.audit), read the facts, let the pure policy decide,
compare the alias's holder with the one the caller saw (check-and-set), then write the audit
row (MAC'd with the key), the alias and the outbox row together. DuckDB admits one writer per
file at a time, so of two processes promoting at once the second sees the first one's alias and
is refused ("moved meanwhile"). A registration seals its version in the transaction that
inserts it. After each commit the caller writes the anchor (`write_anchor`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, NamedTuple

from workbench.adapters.audit_files import AuditFiles
from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.core.audit import (
    AliasRow, Anchor, AuditTampered, ChainLink, ChainRow, IntegrityReport, Problem, alias_problems,
    anchor_problems, legacy_row_hash, link_problems, mac_problems, replay_aliases, row_mac, same_mac, seal_mac,
    seal_problems,
)
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


class Applied(NamedTuple):
    """A recorded promotion or rollback, and the chain's head after its commit."""

    decision: Decision
    anchor: Anchor


class DuckDBRegistryStore:
    def __init__(self, lineage: DuckDBLineageStore, audit: AuditFiles | None = None):
        self.lineage = lineage
        self.audit = audit or AuditFiles(lineage.path.parent / "audit")

    def _tx(self, write: bool = False):
        return self.lineage.transaction(write)

    # Model paths are kept relative to the workspace (it may be moved or copied) and handed out
    # absolute, as the lineage store does for artifacts.
    def _stored(self, path: str) -> str:
        paths = getattr(self.lineage, "paths", None)
        return paths.stored(path) if paths is not None else path

    def _resolved(self, versions: list[ModelVersion]) -> list[ModelVersion]:
        paths = getattr(self.lineage, "paths", None)
        if paths is None:
            return versions
        return [replace(v, artifact_path=paths.resolved(v.artifact_path)) for v in versions]

    # -- the key and the anchor ---------------------------------------------------------------

    def _key(self, con) -> tuple[bytes, Anchor]:
        """(the workspace's audit key, the chain's head now), inside a write transaction. The
        key is made on first use, unless records keyed with one exist: then it was removed,
        and a new key would launder whatever was done meanwhile. A database from before the
        key is adopted: its versions sealed, its chain's head anchored."""
        key = self.audit.key()
        head = _head(con)
        if key is None:
            if head.keyed_from:
                raise AuditTampered("the registry is locked", [_key_missing(self.audit, head.keyed_from)])
            with self.audit.locked():
                key = self.audit.key() or self.audit.create_key()
        if not head.keyed_from:
            head = _adopt(con, key, self.audit)
        return key, head

    def write_anchor(self, anchor: Anchor) -> None:
        """Anchor the head a commit left, unless a newer one is anchored already (writers
        may anchor in another order than they committed)."""
        key = self.audit.key()
        with self.audit.locked():
            current, _problem = self.audit.read_anchor(key)
            if current is None or anchor.dominates(current):
                self.audit.write_anchor(key, anchor)

    def verify(self, project: str | None = None, repair: bool = True) -> IntegrityReport:
        """Everything the audit trail vouches for: the chain (key and anchor), every alias
        against the replayed trail, every version's seal. With `repair`, an anchor one commit
        behind (a crash between a commit and its anchor write) is brought up to date."""
        try:
            with self._tx(write=True) as con:
                key, head = self._key(con)
                problems, behind = _check(con, key, self.audit, head, None)
        except AuditTampered as exc:  # the key is gone: nothing can be checked, say so
            problems, behind, head = exc.problems, False, None
        with self._tx() as con:
            rows, project_rows, versions = con.execute(
                "SELECT (SELECT count(*) FROM audit), (SELECT count(*) FROM audit WHERE project = ?), "
                "(SELECT count(*) FROM model_versions)", [project]).fetchone()
        project_rows = project_rows if project else None
        repaired = []
        if behind and repair:
            anchored, _ = self.audit.read_anchor(key)
            self.write_anchor(head)
            rows_then, sealed_then = (anchored.count, anchored.sealed) if anchored else (0, 0)
            repaired.append(f"the anchor was behind the database ({rows_then} -> {head.count} audit rows, "
                            f"{sealed_then} -> {head.sealed} sealed versions) and what it lacked verifies with the "
                            "key: the last commit's anchor write was interrupted (a crash); re-verified and repaired")
        return IntegrityReport(rows, project_rows, versions, problems, repaired)

    def quick_state(self) -> tuple[bool, dict[tuple[str, str], int]]:
        """Cheap, in one short read: (does the anchor match the database's head, every
        project's alias holders) — what a session checks when it opens the store."""
        key = self.audit.key()
        anchor = self.audit.read_anchor(key)[0] if key is not None else None
        with self._tx() as con:
            head = _head(con)
            aliases = {(p, a): v for p, a, v in con.execute("SELECT project, alias, version FROM aliases").fetchall()}
        # Nothing keyed yet (a new workspace, or one from before the key): nothing to compare.
        current = head == anchor if head.keyed_from or key is not None else True
        return current, aliases

    def guard(self, project: str) -> None:
        """Raise AuditTampered unless the project's aliases and versions, and the chain, verify."""
        with self._tx(write=True) as con:
            key, head = self._key(con)
            problems, _behind = _check(con, key, self.audit, head, project)
        if problems:
            raise AuditTampered(f"{project}: refused", problems)

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
                existing = self._resolved(_decorate(con, [existing]))[0]
            if seen:
                return existing, False
            run_payload = _payload_paths(run_payload, self._stored)
            _enqueue(con, project, "log_run", f"run:{run_id}", run_payload)
            if draft is None or existing is not None:
                return existing, False
            number = con.execute("SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE project = ?",
                                 [project]).fetchone()[0]
            version = replace(draft, version=number, created_at=datetime.now(timezone.utc))
            key, head = self._key(con)  # before the insert: adopting seals the versions there are
            _insert_version(con, replace(version, artifact_path=self._stored(version.artifact_path)), cache_key)
            # The folder the run came from: another folder's runs never join this registry.
            con.execute("UPDATE model_versions SET project_path = (SELECT project_path FROM runs WHERE id = ?) "
                        "WHERE project = ? AND version = ?", [run_id, project, number])
            _seal(con, key, project, number)
            anchor = replace(head, sealed=head.sealed + 1)
            _enqueue(con, project, "register_version", f"version:{number}", {
                "project": project, "version": number, "run_id": version.run_id, "sha256": version.sha256,
                "artifact_name": version.artifact_name, "stage": version.stage,
                "primary_metric": version.primary_metric, "primary_value": _finite(version.primary_value),
                "run": run_payload,
            })
        self.write_anchor(anchor)
        return version, True

    def unrecorded_runs(self, limit: int = 100) -> list[tuple[int, str]]:
        """Finished runs (newer than the registry) that record_run has not seen: a workbench
        that stopped between recording a run and registering it leaves these. (id, project path)"""
        paths = getattr(self.lineage, "paths", None)
        with self._tx() as con:
            found = con.execute(
                "SELECT r.id, coalesce(r.project_path, p.path) FROM runs r LEFT JOIN projects p ON p.name = r.project "
                "WHERE r.id > (SELECT value FROM registry_state WHERE name = 'baseline_run') "
                "AND r.status <> 'running' AND NOT EXISTS (SELECT 1 FROM mlflow_outbox o "
                "WHERE o.kind = 'log_run' AND o.key = 'run:' || r.id) ORDER BY r.id LIMIT ?", [limit]).fetchall()
        return [(run_id, paths.resolved(path) if paths is not None else path) for run_id, path in found]

    def run_folder(self, run_id: int) -> str | None:
        """The project folder a run was made from (absolute, in the workspace as it is now)."""
        with self._tx() as con:
            row = con.execute("SELECT project_path FROM runs WHERE id = ?", [run_id]).fetchone()
        return self.lineage.paths.resolved(row[0]) if row else None

    def version_folders(self, project: str) -> set[str]:
        """The project folders the project's versions came from (absolute)."""
        with self._tx() as con:
            rows = con.execute("SELECT DISTINCT project_path FROM model_versions WHERE project = ? "
                               "AND project_path IS NOT NULL", [project]).fetchall()
        return {self.lineage.paths.resolved(row[0]) for row in rows}

    # -- reading versions --------------------------------------------------------------------

    def get_version(self, project: str, version: int) -> ModelVersion:
        with self._tx() as con:
            found = _version_row(con, "project = ? AND version = ?", [project, version])
            if found is None:
                raise _not_found(con, project, version)
            return self._resolved(_decorate(con, [found]))[0]

    def list_versions(self, project: str) -> list[ModelVersion]:
        """Newest first, with the aliases each holds now and has ever held."""
        with self._tx() as con:
            rows = con.execute(f"SELECT {', '.join(VERSION_COLUMNS)} FROM model_versions WHERE project = ? "
                               "ORDER BY version DESC", [project]).fetchall()
            return self._resolved(_decorate(con, [_version_from_row(r) for r in rows]))

    def version_for_run(self, project: str, run_id: int, kind: str) -> ModelVersion | None:
        """The version a run's model file is (registered by this run or an earlier one)."""
        with self._tx() as con:
            row = con.execute(
                f"SELECT {', '.join('mv.' + c for c in VERSION_COLUMNS)} FROM artifacts a "
                "JOIN model_versions mv ON mv.project = ? AND mv.sha256 = a.sha256 "
                "WHERE a.run_id = ? AND a.kind = ? ORDER BY mv.version LIMIT 1", [project, run_id, kind]).fetchone()
            return self._resolved(_decorate(con, [_version_from_row(row)]))[0] if row else None

    def aliases(self, project: str) -> dict[str, int]:
        with self._tx() as con:
            return dict(con.execute("SELECT alias, version FROM aliases WHERE project = ?", [project]).fetchall())

    # -- promoting ---------------------------------------------------------------------------

    def preview(self, project: str, alias: str, version: int | None, decide: Decider) -> Decision:
        """The decision as it stands now, changing nothing (a dry run, or what to confirm).
        A registry the audit trail does not vouch for raises AuditTampered here already, so
        nobody is asked to confirm a move that would be refused for it."""
        key = self.audit.key()
        with self._tx() as con:
            head = _head(con)
            if key is not None and head.keyed_from:  # (not keyed yet: the apply step adopts it)
                problems, _behind = _check(con, key, self.audit, head, project)
                if problems:
                    raise AuditTampered(f"{project}: {alias} cannot move", problems)
            candidate = _facts(con, project, version) if version is not None else None
            return decide(candidate, _alias_facts(con, project, alias))

    def alias_facts(self, project: str, alias: str) -> AliasFacts:
        with self._tx() as con:
            return _alias_facts(con, project, alias)

    def apply(self, project: str, alias: str, version: int | None, decide: Decider,
              expected_holder: int | None | UncheckedType, actor: str, host: str, reason: str) -> Applied:
        """Decide and record a promotion or rollback in one transaction.

        First the records it stands on must verify (AuditTampered otherwise: nothing is
        written). `decide` gets the candidate's facts (None for a rollback, which picks its
        target from the alias's moves) and the alias's facts. When `expected_holder` is given
        and someone else holds the alias now, the move is refused ("moved since you looked").
        Either way the attempt is one audit row. The caller anchors the returned head.
        """
        with self._tx(write=True) as con:
            key, head = self._key(con)
            problems, _behind = _check(con, key, self.audit, head, project)
            if problems:
                raise AuditTampered(f"{project}: {alias} not moved", problems)
            candidate = _facts(con, project, version) if version is not None else None
            facts = _alias_facts(con, project, alias)
            decision = decide(candidate, facts)
            if not isinstance(expected_holder, UncheckedType) and facts.holder != expected_holder:
                decision = alias_moved(replace(decision, from_version=expected_holder), facts.holder)
            recorded, mac = _record(con, key, head, decision, actor, host, reason)
            return Applied(recorded, replace(head, count=head.count + 1, last_id=recorded.audit_id, head=mac))

    # -- the audit trail ---------------------------------------------------------------------

    def history(self, project: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest first."""
        where = "WHERE project = ?" if project else ""
        with self._tx() as con:
            rows = con.execute(f"SELECT {', '.join(AUDIT_COLUMNS)}, row_hash FROM audit {where} "
                               "ORDER BY id DESC LIMIT ?", ([project] if project else []) + [limit]).fetchall()
        return [_audit_from_row(r) for r in rows]

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
        return [replace(item, payload=_payload_paths(item.payload, self.lineage.paths.resolved))
                for item in map(_outbox_from_row, rows)]


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


def _payload_paths(payload: dict[str, Any], convert: Callable[[str], str]) -> dict[str, Any]:
    """The payload with its model file's path converted (a run's payload, or a version's that
    carries its run's): stored relative to the workspace, sent absolute."""
    out = dict(payload)
    if isinstance(out.get("model"), dict) and out["model"].get("path"):
        out["model"] = dict(out["model"], path=convert(out["model"]["path"]))
    if isinstance(out.get("run"), dict):
        out["run"] = _payload_paths(out["run"], convert)
    return out


def _enqueue(con, project: str, kind: str, key: str, payload: dict[str, Any]) -> None:
    con.execute("INSERT INTO mlflow_outbox (project, kind, key, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                [project, kind, key, json.dumps(payload, default=str), _now()])


def _record(con, key: bytes, head: Anchor, decision: Decision, actor: str, host: str,
            reason: str) -> tuple[Decision, str]:
    """Append the audit row (chained onto `head`); when the decision allows it, move the alias
    and queue MLflow. Returns the decision as recorded and the row's MAC."""
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
    prev_hash = head.head
    mac = row_mac(key, prev_hash, fields) if audit_id >= head.keyed_from else legacy_row_hash(prev_hash, fields)
    con.execute(f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}, prev_hash, row_hash) VALUES "
                f"({', '.join('?' * (len(AUDIT_COLUMNS) + 2))})",
                [fields[c] for c in AUDIT_COLUMNS] + [prev_hash, mac])
    if allowed:
        con.execute("INSERT INTO aliases VALUES (?, ?, ?, ?, ?) ON CONFLICT (project, alias) DO UPDATE SET "
                    "version = excluded.version, since = excluded.since, audit_id = excluded.audit_id",
                    [decision.project, decision.alias, decision.version, at, audit_id])
        _enqueue(con, decision.project, "set_alias", f"alias:{decision.alias}", {
            "project": decision.project, "alias": decision.alias, "version": decision.version,
            "from_version": decision.from_version, "audit_id": audit_id, "action": decision.action,
        })
    return applied, mac


def _gate_dict(g: GateResult) -> dict[str, Any]:
    return {"metric": g.metric, "op": g.op, "threshold": g.threshold, "value": _finite(g.value),
            "passed": g.passed, "detail": g.detail}


def _finite(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None else None


# -- tamper evidence (workbench.core.audit has the rules) -------------------------------------

KEYED_FROM = "audit_keyed_from"
"""registry_state row: the first audit id MAC'd with the key (the anchor records it too)."""
SEALED_RUN_COLUMNS = ("id", "project", "status", "snapshot_id", "image_id", "manifest_hash")
SEALED_VERSION_COLUMNS = tuple(c for c in VERSION_COLUMNS if c != "artifact_path")
"""A version's fields under its seal: all but the model's path (a workspace may move)."""


def _key_missing(audit: AuditFiles, keyed_from: int) -> Problem:
    return Problem("audit", f"#{keyed_from} on", f"were MAC'd with the key {audit.key_path}, which is gone: "
                                                 "nothing can be verified or promoted until it is restored "
                                                 "from a backup")


def _adopt(con, key: bytes, audit: AuditFiles) -> Anchor:
    """Start keying a database: seal the versions it has, key the rows after the ones it has,
    and anchor that, all before this transaction commits (so a crash leaves either nothing
    adopted, and adoption runs again, or an anchor that matches)."""
    keyed_from = con.execute("SELECT coalesce(max(id), 0) + 1 FROM audit").fetchone()[0]
    con.execute("INSERT INTO registry_state VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [KEYED_FROM, keyed_from])
    con.execute("DELETE FROM version_seals")
    for project, version in con.execute("SELECT project, version FROM model_versions").fetchall():
        _seal(con, key, project, version)
    head = _head(con)
    with audit.locked():
        audit.write_anchor(key, head)
    return head


def _head(con) -> Anchor:
    """The chain's head now, in one query (keyed_from 0: the database is not keyed yet)."""
    count, last_id, head, sealed, keyed_from = con.execute(
        "SELECT count(*), max(id), arg_max(row_hash, id), (SELECT count(*) FROM version_seals), "
        "(SELECT value FROM registry_state WHERE name = ?) FROM audit", [KEYED_FROM]).fetchone()
    return Anchor(count=count, last_id=last_id, head=head or "", sealed=sealed, keyed_from=keyed_from or 0)


def _chain_rows(con, project: str | None) -> list[ChainRow]:
    where, params = ("WHERE project = ?", [project]) if project else ("", [])
    rows = con.execute(f"SELECT {', '.join(AUDIT_COLUMNS)}, prev_hash, row_hash FROM audit {where} ORDER BY id",
                       params).fetchall()
    return [ChainRow(r[0], dict(zip(AUDIT_COLUMNS, r[:-2])), r[-2], r[-1]) for r in rows]


def _check(con, key: bytes, audit: AuditFiles, head: Anchor, project: str | None) -> tuple[list[Problem], bool]:
    """(problems, anchor behind by verified commits). The chain's links and the anchor are
    always checked whole; the MACs, aliases and seals of `project` only (a promotion's guard:
    its cost grows with the project's history, not the workspace's), or of all projects."""
    links = [ChainLink(*r) for r in con.execute("SELECT id, prev_hash, row_hash FROM audit ORDER BY id").fetchall()]
    rows = _chain_rows(con, project)
    anchor, anchor_problem = audit.read_anchor(key)
    keyed_from = head.keyed_from
    problems = []
    behind = False
    if anchor is None:
        problems.append(Problem("anchor", str(audit.anchor_path), anchor_problem or (
            "is missing (removed): whether the newest audit rows were deleted cannot be told")))
    else:
        if anchor.keyed_from != keyed_from:
            problems.append(Problem("registry_state", KEYED_FROM, f"is {keyed_from}, the anchor records "
                                                                  f"{anchor.keyed_from} (edited)"))
            keyed_from = anchor.keyed_from  # the anchor's MAC vouches for its value
        found, behind = anchor_problems(anchor, links, head.sealed)
        problems += found
    problems = link_problems(links) + mac_problems(key, rows, keyed_from) + problems
    replayed = replay_aliases((r.id, r.fields["project"], r.fields["alias"], r.fields["action"],
                               r.fields["to_version"]) for r in rows)
    where, params = ("WHERE project = ?", [project]) if project else ("", [])
    held = [AliasRow(*r) for r in con.execute(f"SELECT project, alias, version, audit_id FROM aliases {where} "
                                              "ORDER BY project, alias", params).fetchall()]
    problems += alias_problems(replayed, held, project)
    problems += _seal_check(con, key, project)
    # The rows the anchor lacks must verify before the lag counts as a crash's, not a forgery.
    if behind and project is not None and anchor is not None:
        problems += mac_problems(key, [r for r in _chain_rows(con, None) if r.id > (anchor.last_id or 0)], keyed_from)
    return problems, behind and not problems


def _seal(con, key: bytes, project: str, version: int) -> None:
    facts = _sealed_facts(con, project, version)[(project, version)][0]
    sealed = _json(facts)
    con.execute("INSERT INTO version_seals VALUES (?, ?, ?, ?)",
                [project, version, sealed, seal_mac(key, project, version, sealed)])


def _seal_check(con, key: bytes, project: str | None) -> list[Problem]:
    now = _sealed_facts(con, project)
    problems = []
    for (p, v), (facts, seal) in sorted(now.items()):
        if seal is None:
            problems.append(Problem("model_versions", f"{p} version {v}", "has no seal: it was inserted behind the "
                                                                          "workbench's back, not registered by a run"))
        elif not same_mac(seal[1], seal_mac(key, p, v, seal[0])):
            problems.append(Problem("version_seals", f"{p} version {v}", "its MAC does not match (the seal was "
                                                                         "edited)"))
        elif seal[0] != _json(facts):
            problems += seal_problems(p, v, json.loads(seal[0]), json.loads(_json(facts)))
    where, params = ("AND s.project = ?", [project]) if project else ("", [])
    for p, v in con.execute("SELECT s.project, s.version FROM version_seals s WHERE NOT EXISTS (SELECT 1 FROM "
                            f"model_versions mv WHERE mv.project = s.project AND mv.version = s.version) {where} "
                            "ORDER BY 1, 2", params).fetchall():
        problems.append(Problem("model_versions", f"{p} version {v}", "is gone: it was registered and sealed, "
                                                                      "then deleted"))
    return problems


def _json(facts: dict) -> str:
    return json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str)


SEALED_ARTIFACT_COLUMNS = ("run_id", "stage", "name", "kind", "sha256", "size")


def _sealed_facts(con, project: str | None,
                  version: int | None = None) -> dict[tuple[str, int], tuple[dict, tuple[str, str] | None]]:
    """Per version: (its row and the run facts it stands on as {table: {field: value}}, its
    seal (sealed JSON, MAC) or None), in one query, so checking every version stays cheap."""
    conds, params = [], []
    if project is not None:
        conds.append("mv.project = ?")
        params.append(project)
    if version is not None:
        conds.append("mv.version = ?")
        params.append(version)
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    nv, nr, na = len(SEALED_VERSION_COLUMNS), len(SEALED_RUN_COLUMNS), len(SEALED_ARTIFACT_COLUMNS)
    # Metrics and params grouped per run in a join, not per version in a correlated subquery
    # (a few times faster in DuckDB), and only for the runs of the versions asked about.
    runs = f"(SELECT mv.run_id FROM model_versions mv {where})"
    rows = con.execute(
        f"SELECT {', '.join('mv.' + c for c in SEALED_VERSION_COLUMNS)}, "
        f"{', '.join('r.' + c for c in SEALED_RUN_COLUMNS)}, {', '.join('a.' + c for c in SEALED_ARTIFACT_COLUMNS)}, "
        "m.pairs, p.pairs, s.sealed, s.mac "
        "FROM model_versions mv LEFT JOIN runs r ON r.id = mv.run_id "
        "LEFT JOIN artifacts a ON a.run_id = mv.run_id AND a.stage = mv.stage AND a.name = mv.artifact_name "
        "LEFT JOIN (SELECT run_id, list([stage || '/' || name, CAST(value AS VARCHAR)]) AS pairs FROM metrics "
        f"  WHERE run_id IN {runs} GROUP BY run_id) m ON m.run_id = mv.run_id "
        "LEFT JOIN (SELECT run_id, list([stage || '/' || name, value]) AS pairs FROM params "
        f"  WHERE run_id IN {runs} GROUP BY run_id) p ON p.run_id = mv.run_id "
        f"LEFT JOIN version_seals s ON s.project = mv.project AND s.version = mv.version {where}",
        params * 3).fetchall()
    out = {}
    for row in rows:
        fields = dict(zip(SEALED_VERSION_COLUMNS, row[:nv]))
        fields["created_at"] = fields["created_at"].isoformat()
        run = row[nv:nv + nr]
        artifact = row[nv + nr:nv + nr + na]
        metrics, params_, sealed, mac = row[nv + nr + na:]
        facts = {"model_versions": fields,
                 "runs": dict(zip(SEALED_RUN_COLUMNS, run)) if run[0] is not None else {},
                 "artifacts": dict(zip(SEALED_ARTIFACT_COLUMNS, artifact)) if artifact[0] is not None else {},
                 "metrics": {k: v for k, v in metrics or []}, "params": {k: v for k, v in params_ or []}}
        out[(fields["project"], fields["version"])] = (facts, (sealed, mac) if sealed is not None else None)
    return out

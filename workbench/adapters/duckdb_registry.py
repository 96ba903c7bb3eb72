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

import json
from dataclasses import asdict, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, NamedTuple

from workbench.adapters.audit_files import AuditFiles
from workbench.adapters.duckdb_audit import audit_key, chain_head, check_records, seal_version
from workbench.adapters.duckdb_promotion_facts import (
    AliasFacts, decorate, read_alias_facts, read_version_facts, version_not_found,
)
from workbench.adapters.duckdb_registry_rows import (
    AUDIT_COLUMNS, OUTBOX_COLUMNS, VERSION_COLUMNS, audit_from_row, aware, enqueue, finite, gate_dict,
    insert_version, outbox_from_row, payload_paths, utc_now, version_from_row, version_row,
)
from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.core.audit import Anchor, AuditTampered, IntegrityReport, legacy_row_hash, row_mac
from workbench.core.promotion import Action, Decision, VersionFacts, alias_moved
from workbench.core.registry import AuditEntry, ModelVersion, OutboxItem


class UncheckedType:
    """The caller did not see the alias's holder: promote against whoever holds it now."""

    def __repr__(self) -> str:
        return "UNCHECKED"


UNCHECKED = UncheckedType()
Decider = Callable[[VersionFacts | None, AliasFacts], Decision]


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
                key, head = audit_key(con, self.audit)
                problems, behind = check_records(con, key, self.audit, head, None)
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
            head = chain_head(con)
            aliases = {(p, a): v for p, a, v in con.execute("SELECT project, alias, version FROM aliases").fetchall()}
        # Nothing keyed yet (a new workspace, or one from before the key): nothing to compare.
        current = head == anchor if head.keyed_from or key is not None else True
        return current, aliases

    def guard(self, project: str) -> None:
        """Raise AuditTampered unless the project's aliases and versions, and the chain, verify."""
        with self._tx(write=True) as con:
            key, head = audit_key(con, self.audit)
            problems, _behind = check_records(con, key, self.audit, head, project)
        if problems:
            raise AuditTampered(f"{project}: refused", problems)

    # -- registering runs ------------------------------------------------------------------

    def record_run(self, project: str, run_id: int, run_payload: dict[str, Any],
                   draft: ModelVersion | None, cache_key: str = "", late: bool = False
                   ) -> tuple[ModelVersion | None, bool]:
        """Queue the run for MLflow and register its model (once per model file).

        `draft` is the version to register (its number is assigned here); `cache_key` is the
        model stage's, by which a later `reproduce` run is found. Returns the version the run's
        model is (None without a model) and whether this call created it. Calling it again for
        the same run changes nothing, except with `late`: a run queued earlier without a version
        (a sweep trial) gets its version now, if its model file has none.
        """
        with self._tx(write=True) as con:
            seen = con.execute("SELECT 1 FROM mlflow_outbox WHERE kind = 'log_run' AND key = ?",
                               [f"run:{run_id}"]).fetchone()
            existing = None
            if draft is not None:
                existing = version_row(con, "project = ? AND sha256 = ?", [project, draft.sha256])
            if existing is not None:
                existing = self._resolved(decorate(con, [existing]))[0]
            if seen and not late:
                return existing, False
            run_payload = payload_paths(run_payload, self._stored)
            if not seen:
                enqueue(con, project, "log_run", f"run:{run_id}", run_payload)
            if draft is None or existing is not None:
                return existing, False
            number = con.execute("SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE project = ?",
                                 [project]).fetchone()[0]
            version = replace(draft, version=number, created_at=datetime.now(timezone.utc))
            key, head = audit_key(con, self.audit)  # before the insert: adopting seals the versions there are
            insert_version(con, replace(version, artifact_path=self._stored(version.artifact_path)), cache_key)
            # The folder the run came from: another folder's runs never join this registry.
            con.execute("UPDATE model_versions SET project_path = (SELECT project_path FROM runs WHERE id = ?) "
                        "WHERE project = ? AND version = ?", [run_id, project, number])
            seal_version(con, key, project, number)
            anchor = replace(head, sealed=head.sealed + 1)
            enqueue(con, project, "register_version", f"version:{number}", {
                "project": project, "version": number, "run_id": version.run_id, "sha256": version.sha256,
                "artifact_name": version.artifact_name, "stage": version.stage,
                "primary_metric": version.primary_metric, "primary_value": finite(version.primary_value),
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
            found = version_row(con, "project = ? AND version = ?", [project, version])
            if found is None:
                raise version_not_found(con, project, version)
            return self._resolved(decorate(con, [found]))[0]

    def list_versions(self, project: str) -> list[ModelVersion]:
        """Newest first, with the aliases each holds now and has ever held."""
        with self._tx() as con:
            rows = con.execute(f"SELECT {', '.join(VERSION_COLUMNS)} FROM model_versions WHERE project = ? "
                               "ORDER BY version DESC", [project]).fetchall()
            return self._resolved(decorate(con, [version_from_row(r) for r in rows]))

    def version_for_run(self, project: str, run_id: int, kind: str) -> ModelVersion | None:
        """The version a run's model file is (registered by this run or an earlier one)."""
        with self._tx() as con:
            row = con.execute(
                f"SELECT {', '.join('mv.' + c for c in VERSION_COLUMNS)} FROM artifacts a "
                "JOIN model_versions mv ON mv.project = ? AND mv.sha256 = a.sha256 "
                "WHERE a.run_id = ? AND a.kind = ? ORDER BY mv.version LIMIT 1", [project, run_id, kind]).fetchone()
            return self._resolved(decorate(con, [version_from_row(row)]))[0] if row else None

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
            head = chain_head(con)
            if key is not None and head.keyed_from:  # (not keyed yet: the apply step adopts it)
                problems, _behind = check_records(con, key, self.audit, head, project)
                if problems:
                    raise AuditTampered(f"{project}: {alias} cannot move", problems)
            candidate = read_version_facts(con, project, version) if version is not None else None
            return decide(candidate, read_alias_facts(con, project, alias))

    def alias_facts(self, project: str, alias: str) -> AliasFacts:
        with self._tx() as con:
            return read_alias_facts(con, project, alias)

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
            key, head = audit_key(con, self.audit)
            problems, _behind = check_records(con, key, self.audit, head, project)
            if problems:
                raise AuditTampered(f"{project}: {alias} not moved", problems)
            candidate = read_version_facts(con, project, version) if version is not None else None
            facts = read_alias_facts(con, project, alias)
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
        return [audit_from_row(r) for r in rows]

    # -- the MLflow outbox -------------------------------------------------------------------

    def has_due_items(self) -> bool:
        with self._tx() as con:
            return con.execute("SELECT count(*) FROM mlflow_outbox WHERE done_at IS NULL AND "
                               "(next_attempt_at IS NULL OR next_attempt_at <= ?)", [utc_now()]).fetchone()[0] > 0

    def item_done(self, item_id: int, tracking_uri: str, ids: dict[tuple[str, str], str]) -> None:
        with self._tx(write=True) as con:
            con.execute("UPDATE mlflow_outbox SET done_at = ?, attempts = attempts + 1, last_attempt_at = ?, "
                        "last_error = NULL WHERE id = ?", [utc_now(), utc_now(), item_id])
            for (kind, key), mlflow_id in ids.items():
                con.execute("INSERT INTO mlflow_ids VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                            "mlflow_id = excluded.mlflow_id", [tracking_uri, kind, key, mlflow_id])

    def item_failed(self, item_id: int, error: str, retry_in_s: float) -> None:
        with self._tx(write=True) as con:
            con.execute("UPDATE mlflow_outbox SET attempts = attempts + 1, last_error = ?, last_attempt_at = ?, "
                        "next_attempt_at = ? WHERE id = ?",
                        [error, utc_now(), utc_now() + timedelta(seconds=retry_in_s), item_id])

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
        return {"pending": pending, "failing": failing, "next_attempt_at": aware(next_at),
                "last_error": error[0] if error else None, "last_error_at": aware(error[1]) if error else None,
                "last_synced_at": aware(synced)}

    def outbox_items(self, include_done: bool = False, limit: int | None = None) -> list[OutboxItem]:
        """Oldest first; pending ones only unless `include_done`."""
        where = "" if include_done else "WHERE done_at IS NULL"
        with self._tx() as con:
            rows = con.execute(f"SELECT {OUTBOX_COLUMNS} FROM mlflow_outbox {where} ORDER BY id LIMIT ?",
                               [limit if limit is not None else 1 << 62]).fetchall()
        return [replace(item, payload=payload_paths(item.payload, self.lineage.paths.resolved))
                for item in map(outbox_from_row, rows)]


def _record(con, key: bytes, head: Anchor, decision: Decision, actor: str, host: str,
            reason: str) -> tuple[Decision, str]:
    """Append the audit row (chained onto `head`); when the decision allows it, move the alias
    and queue MLflow. Returns the decision as recorded and the row's MAC."""
    allowed = decision.allowed
    at = utc_now()
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
        "gates": json.dumps([gate_dict(g) for g in decision.gates]),
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
        enqueue(con, decision.project, "set_alias", f"alias:{decision.alias}", {
            "project": decision.project, "alias": decision.alias, "version": decision.version,
            "from_version": decision.from_version, "audit_id": audit_id, "action": decision.action,
        })
    return applied, mac

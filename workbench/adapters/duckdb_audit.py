"""The registry's tamper evidence in DuckDB: the workspace key's adoption, the audit chain's
head, version seals, and the check of all of them (workbench.core.audit has the rules).

Every audit row after the key's adoption is MAC'd with the key and chained onto the previous
row; every model version is sealed (its row and the run facts it stands on, MAC'd) in the
transaction that registers it; the anchor file (audit_files) records the chain's head after
each commit, so rows deleted from the end are noticed too.
"""

from __future__ import annotations

import json

from workbench.adapters.audit_files import AuditFiles
from workbench.adapters.duckdb_registry_rows import AUDIT_COLUMNS, VERSION_COLUMNS
from workbench.core.audit import (
    AliasRow, Anchor, AuditTampered, ChainLink, ChainRow, Problem, alias_problems, anchor_problems, link_problems,
    mac_problems, replay_aliases, same_mac, seal_mac, seal_problems,
)

KEYED_FROM = "audit_keyed_from"
"""registry_state row: the first audit id MAC'd with the key (the anchor records it too)."""
SEALED_RUN_COLUMNS = ("id", "project", "status", "snapshot_id", "image_id", "manifest_hash")
SEALED_VERSION_COLUMNS = tuple(c for c in VERSION_COLUMNS if c != "artifact_path")
"""A version's fields under its seal: all but the model's path (a workspace may move)."""


def audit_key(con, audit: AuditFiles) -> tuple[bytes, Anchor]:
    """(the workspace's audit key, the chain's head now), inside a write transaction. The
    key is made on first use, unless records keyed with one exist: then it was removed,
    and a new key would launder whatever was done meanwhile. A database from before the
    key is adopted: its versions sealed, its chain's head anchored."""
    key = audit.key()
    head = chain_head(con)
    if key is None:
        if head.keyed_from:
            raise AuditTampered("the registry is locked", [_key_missing(audit, head.keyed_from)])
        with audit.locked():
            key = audit.key() or audit.create_key()
    if not head.keyed_from:
        head = _adopt(con, key, audit)
    return key, head


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
        seal_version(con, key, project, version)
    head = chain_head(con)
    with audit.locked():
        audit.write_anchor(key, head)
    return head


def chain_head(con) -> Anchor:
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


def check_records(con, key: bytes, audit: AuditFiles, head: Anchor, project: str | None) -> tuple[list[Problem], bool]:
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


def seal_version(con, key: bytes, project: str, version: int) -> None:
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

"""What makes the registry's records tamper-evident, as functions of plain data.

Three things are checked, each against something an editor of the database alone cannot forge:

- the audit chain: each row's MAC is HMAC-SHA256(key, previous row's MAC + the row's fields),
  with a key kept outside the database, so a rewritten row cannot be re-hashed into place;
- the chain's head (row count, last MAC, sealed versions), anchored in a file outside the
  database after each commit, so deleting the newest rows (or all of them) is seen;
- version seals: at registration, the version's row and the run facts it stands on (run id,
  status, snapshot, model artifact sha256, metrics, params) are MAC'd, so an edit to
  `model_versions`, `runs`, `artifacts`, `metrics` or `params` under a version is seen.

And the aliases must be what replaying the audit trail's promotions and rollbacks gives:
an alias cannot move except through an audited promotion or rollback.

Rows written before the key existed (an older workbench) keep their plain sha256 chain; the
first keyed row chains onto their head, so re-hashing them breaks the keyed part.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from workbench.core.errors import WorkbenchError

MOVES = ("promote", "rollback")
"""Audit actions that move an alias (a refusal does not)."""


@dataclass(frozen=True)
class Problem:
    """One thing that does not verify: which table, which row, and what differs."""

    table: str
    row: str
    """The row, as a user finds it: `#12`, `telco-churn production`, `telco-churn version 3`."""
    detail: str

    def __str__(self) -> str:
        return f"{self.table} {self.row}: {self.detail}"


class AuditTampered(WorkbenchError):
    """The records a promotion stands on do not verify: it is refused, nothing is deployed."""

    exit_code = 4

    def __init__(self, what: str, problems: list[Problem]):
        self.problems = problems
        listed = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{what}: the audit trail does not vouch for the registry: {listed}{more}. "
                         "Nothing was changed; see `workbench history PROJECT --verify`")


@dataclass(frozen=True)
class IntegrityReport:
    """What `workbench history --verify` says."""

    rows: int
    """Audit rows in the chain (every project's)."""
    project_rows: int | None
    """Rows of the project asked about."""
    versions: int
    """Sealed model versions checked."""
    problems: list[Problem]
    repaired: list[str]
    """Lags repaired on the way: an anchor a crash left one commit behind."""

    @property
    def intact(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Anchor:
    """The chain's head as last committed, kept outside the database."""

    count: int
    """Audit rows."""
    last_id: int | None
    head: str
    """The last row's MAC ('' when there are no rows)."""
    sealed: int
    """Sealed model versions."""
    keyed_from: int
    """The first audit row id chained with the key (older rows use plain sha256)."""

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "last_id": self.last_id, "head": self.head, "sealed": self.sealed,
                "keyed_from": self.keyed_from}

    def dominates(self, other: "Anchor") -> bool:
        """Newer than `other`: commits only ever add rows and seals."""
        return (self.count, self.sealed) > (other.count, other.sealed)


def canonical(fields: Mapping[str, Any]) -> str:
    return json.dumps({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items()},
                      sort_keys=True, separators=(",", ":"), default=str)


def legacy_row_hash(prev: str, fields: Mapping[str, Any]) -> str:
    """The unkeyed chain of rows written before the key existed."""
    return hashlib.sha256((prev + "\n" + canonical(fields)).encode()).hexdigest()


def row_mac(key: bytes, prev: str, fields: Mapping[str, Any]) -> str:
    return hmac.new(key, (prev + "\n" + canonical(fields)).encode(), hashlib.sha256).hexdigest()


def anchor_mac(key: bytes, anchor: Anchor) -> str:
    return hmac.new(key, ("anchor\n" + canonical(anchor.as_dict())).encode(), hashlib.sha256).hexdigest()


def seal_mac(key: bytes, project: str, version: int, sealed: str) -> str:
    return hmac.new(key, f"seal\n{project}\n{version}\n{sealed}".encode(), hashlib.sha256).hexdigest()


def same_mac(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# -- the chain -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ChainLink:
    """A row's place in the chain: enough to see a row removed, not one edited."""

    id: int
    prev_hash: str
    row_hash: str


@dataclass(frozen=True)
class ChainRow:
    id: int
    fields: Mapping[str, Any]
    prev_hash: str
    row_hash: str


def link_problems(links: list[ChainLink]) -> list[Problem]:
    """Each row must name the row before it (cheap: no row is re-MAC'd)."""
    problems = []
    prev = ""
    for link in links:
        if not same_mac(link.prev_hash, prev):
            problems.append(Problem("audit", f"#{link.id}", "does not follow the row before it (a row before it "
                                                            "was removed or rewritten)"))
        prev = link.row_hash
    return problems


def mac_problems(key: bytes, rows: Iterable[ChainRow], keyed_from: int) -> list[Problem]:
    """Each row must carry the MAC of its own fields and the previous row's MAC it names, so
    one project's rows can be checked without MAC-ing every other project's."""
    problems = []
    for row in rows:
        expected = (row_mac(key, row.prev_hash, row.fields) if row.id >= keyed_from
                    else legacy_row_hash(row.prev_hash, row.fields))
        if not same_mac(row.row_hash, expected):
            problems.append(Problem("audit", f"#{row.id}", "its fields do not match its MAC (the row was edited, "
                                                           "or forged and re-hashed without the workbench's key)"))
    return problems


def anchor_problems(anchor: Anchor, rows: list[ChainLink], sealed: int) -> tuple[list[Problem], bool]:
    """Compare the database's chain with the anchor: (problems, behind).

    `behind` is True when the database holds more than the anchor and the anchor's head is
    still where it was: a commit whose anchor write did not happen (a crash between the two).
    The extra rows are vouched for by their MACs (checked separately: only the key's holder
    could have written them), so that is a repair, not tampering.
    """
    problems = []
    if anchor.count > len(rows):
        missing = anchor.count - len(rows)
        newest = f", up to #{anchor.last_id}" if anchor.last_id is not None else ""
        problems.append(Problem("audit", "(newest rows)", f"{missing} of the {anchor.count} rows the anchor records "
                                                           f"are gone{newest}: deleted from the table"))
    elif anchor.count > 0:
        at = rows[anchor.count - 1]
        if at.id != anchor.last_id or not same_mac(at.row_hash, anchor.head):
            problems.append(Problem("audit", f"#{at.id}", f"is not the row the anchor records as row {anchor.count} "
                                                          f"(#{anchor.last_id}): the chain was rewritten"))
    if sealed < anchor.sealed:
        problems.append(Problem("version_seals", "(sealed versions)",
                                f"{anchor.sealed - sealed} of the {anchor.sealed} sealed model versions are gone: "
                                "deleted from the table"))
    behind = not problems and (len(rows) > anchor.count or sealed > anchor.sealed)
    return problems, behind


# -- aliases -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AliasRow:
    project: str
    alias: str
    version: int
    audit_id: int


def replay_aliases(moves: Iterable[tuple[int, str, str, str, int]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(audit id, project, alias, action, to_version), oldest first -> (project, alias) ->
    (version, audit id of the move): who holds each alias if only audited moves moved it."""
    held: dict[tuple[str, str], tuple[int, int]] = {}
    for audit_id, project, alias, action, to_version in moves:
        if action in MOVES and to_version is not None:
            held[(project, alias)] = (to_version, audit_id)
    return held


def alias_problems(replayed: Mapping[tuple[str, str], tuple[int, int]], rows: Iterable[AliasRow],
                   project: str | None = None) -> list[Problem]:
    """The aliases table against the replayed audit trail (one project's, or all)."""
    problems = []
    seen = set()
    for row in rows:
        key = (row.project, row.alias)
        seen.add(key)
        where = f"{row.project} {row.alias}"
        expected = replayed.get(key)
        if expected is None:
            problems.append(Problem("aliases", where, f"holds version {row.version}, but no audited promotion or "
                                                      f"rollback ever moved {row.alias} (forged)"))
        elif expected[0] != row.version:
            problems.append(Problem("aliases", where, f"holds version {row.version}, but the audit trail puts "
                                                      f"version {expected[0]} there (audit #{expected[1]})"))
        elif expected[1] != row.audit_id:
            problems.append(Problem("aliases", where, f"names audit #{row.audit_id} as its move, the audit trail "
                                                      f"#{expected[1]}"))
    for (p, alias), (version, audit_id) in sorted(replayed.items()):
        if (p, alias) not in seen and (project is None or p == project):
            problems.append(Problem("aliases", f"{p} {alias}", f"is missing: audit #{audit_id} moved it to "
                                                               f"version {version} (the row was deleted)"))
    return problems


# -- version seals ---------------------------------------------------------------------------

def seal_problems(project: str, version: int, sealed: Mapping[str, Any], now: Mapping[str, Any]) -> list[Problem]:
    """What a sealed version (and the run facts under it) looked like, against the tables now.

    Both are {table: {field: value}}; each differing field is named with both values."""
    problems = []
    for table in sorted(set(sealed) | set(now)):
        before, after = sealed.get(table) or {}, now.get(table) or {}
        if not after and before:
            problems.append(Problem(table, _seal_row(table, project, version, before),
                                    f"is gone (model version {version} of {project} stands on it)"))
            continue
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                problems.append(Problem(table, _seal_row(table, project, version, before or after),
                                        f"{name} is {_short(after.get(name))}, sealed as {_short(before.get(name))} "
                                        f"when version {version} of {project} was registered"))
    return problems


def _seal_row(table: str, project: str, version: int, fields: Mapping[str, Any]) -> str:
    if table == "model_versions":
        return f"{project} version {version}"
    if table == "runs":
        return f"run {fields.get('id')}"
    if table == "artifacts":
        return f"run {fields.get('run_id')} {fields.get('stage')}/{fields.get('name')}"
    return f"of {project} version {version}'s run"


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"

"""What a promotion is decided on, read from the registry in the promotion's transaction: the
candidate version's facts, the alias's holder and moves, the production champion, and the
`reproduce` run that may vouch for a version.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import NamedTuple

from workbench.core.errors import VersionNotFound
from workbench.core.promotion import (
    Action, AliasMove, ReproduceRun, VersionFacts, reproduction_verdict,
)
from workbench.core.registry import ModelVersion

MOVES = (Action.PROMOTE.value, Action.ROLLBACK.value)


class AliasFacts(NamedTuple):
    """What a promotion or rollback of one alias is decided on, read in its transaction."""

    holder: int | None
    """The version holding the alias now."""
    champion: VersionFacts | None
    """The version holding production now."""
    moves: list[AliasMove]
    """The alias's successful moves, oldest first."""


def decorate(con, versions: list[ModelVersion]) -> list[ModelVersion]:
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


def version_not_found(con, project: str, version: int) -> VersionNotFound:
    known = [r[0] for r in con.execute("SELECT version FROM model_versions WHERE project = ? ORDER BY version",
                                       [project]).fetchall()]
    listed = ", ".join(map(str, known)) if known else "none yet: a successful run that logs a model registers one"
    return VersionNotFound(f"{project} has no model version {version} (versions: {listed})")


def read_version_facts(con, project: str, version: int) -> VersionFacts:
    row = con.execute("SELECT run_id, run_status, run_reason, metrics, sha256 FROM model_versions "
                      "WHERE project = ? AND version = ?", [project, version]).fetchone()
    if row is None:
        raise version_not_found(con, project, version)
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


def read_alias_facts(con, project: str, alias: str) -> AliasFacts:
    holders = dict(con.execute("SELECT alias, version FROM aliases WHERE project = ?", [project]).fetchall())
    production = holders.get("production")
    champion = read_version_facts(con, project, production) if production is not None else None
    moves = [AliasMove(action, to) for action, to in con.execute(
        "SELECT action, to_version FROM audit WHERE project = ? AND alias = ? AND action IN (?, ?) ORDER BY id",
        [project, alias, *MOVES]).fetchall()]
    return AliasFacts(holder=holders.get(alias), champion=champion, moves=moves)

"""The audit trail against someone who edits the lineage database behind the workbench's back.

One workspace is built once (two versions; v1 staging then production, v2 staging); each case
copies it, edits the copy's database with DuckDB the way issue 10 item 5 did, and then asks the
real `workbench` command: `history --verify` must exit non-zero naming the table, row and what
differs, and a later promotion must be refused without touching the deploy pointers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.test_cli import wb
from tests.test_pipeline_local import write_project
from tests.test_registry import run_with_scale
from workbench.core.audit import legacy_row_hash
from workbench.services.session import WorkbenchSession

AUDIT_COLUMNS = ("id", "occurred_at", "actor", "host", "project", "action", "request", "alias", "version",
                 "from_version", "to_version", "reason", "message", "checks", "gates", "comparison")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audited")
    write_project(root)
    with pytest.MonkeyPatch.context() as env:  # (module-scoped: conftest's setting is not there yet)
        env.setenv("WORKBENCH_MLFLOW_SYNC", "off")  # no detached process writing while cases copy
        session = WorkbenchSession(root, runner="local")
        for scale in (1.5, 1.8):
            run_with_scale(session, root, scale)
        registry = session.registry
        for version, alias in ((1, "staging"), (1, "production"), (2, "staging")):
            assert registry.promote("tiny", version, alias, user="ana").applied
    return root


def copy_of(built: Path, tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(built, ws, symlinks=True)
    return ws


def sql(ws: Path, *statements: str) -> None:
    with duckdb.connect(str(ws / ".workbench" / "lineage.duckdb")) as con:
        for statement in statements:
            con.execute(statement)


def rehash_chain_without_the_key(ws: Path) -> None:
    """What an attacker who knows the old chain's recipe does: edit a row, recompute every hash."""
    with duckdb.connect(str(ws / ".workbench" / "lineage.duckdb")) as con:
        con.execute("UPDATE audit SET reason = 'approved by the board' WHERE id = 2")
        rows = con.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit ORDER BY id").fetchall()
        prev = ""
        for row in rows:
            fields = dict(zip(AUDIT_COLUMNS, row))
            row_hash = legacy_row_hash(prev, fields)
            con.execute("UPDATE audit SET prev_hash = ?, row_hash = ? WHERE id = ?", [prev, row_hash, row[0]])
            prev = row_hash


def append_forged_promotion(ws: Path) -> None:
    """A promotion row appended to the chain (its hash computed the old way) and the alias
    moved to match it: the replay agrees, the anchor is merely 'behind'; only the MAC tells."""
    with duckdb.connect(str(ws / ".workbench" / "lineage.duckdb")) as con:
        last = con.execute(f"SELECT {', '.join(AUDIT_COLUMNS)}, row_hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        fields = dict(zip(AUDIT_COLUMNS, last[:-1])) | {"id": 4, "alias": "production", "version": 2,
                                                          "from_version": 1, "to_version": 2}
        con.execute(f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}, prev_hash, row_hash) VALUES "
                    f"({', '.join('?' * (len(AUDIT_COLUMNS) + 2))})",
                    [fields[c] for c in AUDIT_COLUMNS] + [last[-1], legacy_row_hash(last[-1], fields)])
        con.execute("UPDATE aliases SET version = 2, audit_id = 4 WHERE alias = 'production'")


TAMPERING = {
    "forged promotion row appended, alias moved to match": (
        append_forged_promotion,
        "audit #4: its fields do not match its MAC"),
    "newest audit row deleted": (
        lambda ws: sql(ws, "DELETE FROM audit WHERE id = 3"),
        "audit (newest rows): 1 of the 3 rows the anchor records are gone, up to #3: deleted from the table"),
    "every audit row deleted": (
        lambda ws: sql(ws, "DELETE FROM audit"),
        "audit (newest rows): 3 of the 3 rows the anchor records are gone"),
    "production alias forged": (
        lambda ws: sql(ws, "UPDATE aliases SET version = 2 WHERE alias = 'production'"),
        "aliases tiny production: holds version 2, but the audit trail puts version 1 there (audit #2)"),
    "production alias inserted with no audit row": (
        lambda ws: sql(ws, "DELETE FROM aliases WHERE alias = 'production'",
                       "INSERT INTO aliases VALUES ('tiny', 'production', 2, now()::TIMESTAMP, 99)"),
        "aliases tiny production: holds version 2, but the audit trail puts version 1 there (audit #2)"),
    "model_versions metric edited": (
        lambda ws: sql(ws, "UPDATE model_versions SET primary_value = 0.99 WHERE version = 2"),
        "model_versions tiny version 2: primary_value is 0.99, sealed as 0.9 when version 2 of tiny was registered"),
    "model sha256 edited": (
        lambda ws: sql(ws, "UPDATE model_versions SET sha256 = repeat('0', 64) WHERE version = 2"),
        "model_versions tiny version 2: sha256 is '0000000"),
    "run's snapshot edited": (
        lambda ws: sql(ws, "UPDATE runs SET snapshot_id = 'forged' WHERE id = 2"),
        "runs run 2: snapshot_id is 'forged', sealed as"),
    "run's recorded metric edited": (
        lambda ws: sql(ws, "UPDATE metrics SET value = 0.99 WHERE run_id = 2 AND name = 'score'"),
        "metrics of tiny version 2's run: fit/score is '0.99', sealed as '0.9'"),
    "run's params edited": (
        lambda ws: sql(ws, "UPDATE params SET value = '9.9' WHERE run_id = 2"),
        "params of tiny version 2's run: fit/scale is '9.9', sealed as '1.8'"),
    "model artifact row edited": (
        lambda ws: sql(ws, "UPDATE artifacts SET sha256 = repeat('f', 64) WHERE run_id = 2 AND kind = 'model'"),
        "artifacts run 2 fit/model.json: sha256 is 'ffffff"),
    "version inserted behind the workbench's back": (
        lambda ws: sql(ws, "INSERT INTO model_versions SELECT * REPLACE (3 AS version, repeat('a', 64) AS sha256) "
                           "FROM model_versions WHERE version = 2"),
        "model_versions tiny version 3: has no seal: it was inserted behind the workbench's back"),
    "row rewritten and the chain re-hashed": (
        rehash_chain_without_the_key,
        "audit #2: its fields do not match its MAC (the row was edited, or forged and re-hashed without the "
        "workbench's key)"),
    "anchor file edited by hand": (
        lambda ws: (ws / ".workbench" / "audit" / "anchor.json").write_text(
            (ws / ".workbench" / "audit" / "anchor.json").read_text().replace('"count": 3', '"count": 2')),
        "anchor.json: the anchor"),
    "key removed": (
        lambda ws: (ws / ".workbench" / "audit" / "key").unlink(),
        "audit #1 on: were MAC'd with the key"),
    "anchor file removed": (
        lambda ws: (ws / ".workbench" / "audit" / "anchor.json").unlink(),
        "anchor.json: is missing (removed)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_reported_and_blocks_promotion(built, tmp_path, case):
    tamper, expected = TAMPERING[case]
    ws = copy_of(built, tmp_path)
    before = json.loads((ws / ".workbench" / "deploy" / "tiny" / "production" / "metadata.json").read_text())
    tamper(ws)

    verify = wb(ws, "history", "tiny", "--verify")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "✗ audit trail altered" in verify.stdout and expected in " ".join(verify.stdout.split()), verify.stdout
    assert "re-verified and repaired" not in verify.stdout + verify.stderr  # tampering is never taken for a lag

    # An unrelated promotion (staging, back to v1) is refused as well: nothing is deployed from
    # a registry the trail does not vouch for.
    promote = wb(ws, "promote", "tiny", "1", "--to", "staging", "--yes")
    assert promote.returncode == 4, promote.stdout + promote.stderr
    assert "the audit trail does not vouch for the registry" in promote.stderr, promote.stderr
    after = json.loads((ws / ".workbench" / "deploy" / "tiny" / "production" / "metadata.json").read_text())
    assert after["version"] == before["version"] == 1
    assert json.loads((ws / ".workbench" / "deploy" / "tiny" / "staging" / "metadata.json").read_text())[
        "version"] == 2


@pytest.mark.slow
def test_an_untouched_copy_verifies_and_counts_the_projects_rows(built, tmp_path):
    ws = copy_of(built, tmp_path)
    verify = wb(ws, "history", "tiny", "--verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "✓ audit trail intact: 3 rows of tiny, chain of 3 rows verified" in verify.stdout
    as_json = json.loads(wb(ws, "history", "tiny", "--verify", "--json").stdout)
    assert (as_json["intact"], as_json["rows"], as_json["project_rows"], as_json["problems"]) == (True, 3, 3, [])
    assert wb(ws, "promote", "tiny", "2", "--to", "production", "--yes").returncode == 0


def test_history_verify_counts_the_projects_rows_not_the_workspaces(tmp_path):
    """Issue 11 item 9: two projects share the chain; the count is the project's."""
    write_project(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "tiny", other)
    manifest = other / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('name = "tiny"', 'name = "other"'))
    session = WorkbenchSession(tmp_path, runner="local")
    session.run("tiny")
    session.run("other")
    registry = session.registry
    registry.promote("tiny", 1, "staging")
    registry.promote("other", 1, "staging")
    registry.promote("other", 1, "production")
    verify = wb(tmp_path, "history", "tiny", "--verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "1 rows of tiny, chain of 3 rows verified" in verify.stdout, verify.stdout

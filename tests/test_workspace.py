"""A workspace's identity: a project name names one folder (issue 11 item 1), and a workspace
that is copied or moved refers only to itself (issue 11 item 8). Through the CLI and the TUI,
as the bugs were seen."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import duckdb
import pytest

from tests.test_cli import wb
from tests.test_pipeline_local import write_project
from tests.test_tui import asyncio_test, make_app, private_config, shown  # noqa: F401  (a fixture)
from workbench.adapters.duckdb_schema import v5_workspace_relative
from workbench.core.errors import WorkbenchError
from workbench.services.pipeline import PipelineService
from workbench.services.session import WorkbenchSession
from workbench.services.workspace import ProjectRef, load_manifest


def twin_workspace(root: Path) -> tuple[Path, Path]:
    """A workspace with the tiny project and a copy of its folder under another folder name
    (the same project.name), as `cp -r tiny tiny-copy` leaves it."""
    original = write_project(root)
    copy = root / "tiny-copy"
    shutil.copytree(original, copy)
    return original, copy


# -- item 1: one name, one folder -----------------------------------------------------------


def test_a_copied_project_folder_is_refused_everywhere_naming_both_folders(tmp_path):
    original = write_project(tmp_path)
    assert wb(tmp_path, "run", "tiny", "--runner", "local", "-q").returncode == 0
    copy = tmp_path / "tiny-copy"
    shutil.copytree(original, copy)
    (copy / "params.toml").write_text("[fit]\nscale = 1.9\n")  # the copy would make another model

    listed = {p["path"]: p for p in json.loads(wb(tmp_path, "projects", "--json").stdout)}
    assert set(listed) == {str(original), str(copy)}
    for path, other in ((original, copy), (copy, original)):
        assert listed[str(path)]["name"] == "tiny"
        assert str(other) in listed[str(path)]["error"] and "project.name" in listed[str(path)]["error"]
    human = wb(tmp_path, "projects").stdout.splitlines()
    assert len([line for line in human if line.startswith("✗ tiny")]) == 2, human

    for target in ("tiny", "tiny-copy", str(copy), str(original)):
        done = wb(tmp_path, "run", target, "--runner", "local", "-q")
        assert done.returncode == 3, (target, done.stdout, done.stderr)
        assert str(original) in done.stderr and str(copy) in done.stderr and "Traceback" not in done.stderr
    watched = wb(tmp_path, "watch", "tiny", "--runner", "local")
    assert watched.returncode == 3 and str(copy) in watched.stderr and str(original) in watched.stderr
    # watching every project leaves both out, saying why
    everything = wb(tmp_path, "watch", "--runner", "local")
    assert everything.returncode == 3 and everything.stderr.count("not watching tiny") == 2

    assert [r["id"] for r in json.loads(wb(tmp_path, "runs", "--json").stdout)] == [1], "nothing else ran"
    assert wb(tmp_path, "models", "tiny").returncode == 3, "which folder's registry? neither, until it is settled"

    shutil.rmtree(copy)  # the clash is gone: the project runs again, and its registry holds its own model only
    assert [v["version"] for v in json.loads(wb(tmp_path, "models", "tiny", "--json").stdout)] == [1]
    assert wb(tmp_path, "run", "tiny", "--runner", "local", "-q").returncode == 0


def test_a_copy_made_while_a_run_is_under_way_does_not_join_the_registry(tmp_path):
    """The workspace refuses to run a clashing name; a run of the copy that got past that
    (the copy was made while it started) registers nothing in the original's registry."""
    original, copy = twin_workspace(tmp_path)
    shutil.rmtree(copy)
    session = WorkbenchSession(tmp_path, runner="local")
    first = session.run("tiny")
    assert session.last_registration[0].version == 1

    shutil.copytree(original, copy)
    (copy / "params.toml").write_text("[fit]\nscale = 1.9\n")
    manifest, _ = load_manifest(copy)
    stray = PipelineService(session.workspace, session.store, session.runner).run(ProjectRef(copy, manifest))
    assert stray.status.value == "succeeded"
    with pytest.raises(WorkbenchError, match="neither registered nor mirrored") as refused:
        session.registry.after_run(stray, manifest)
    assert str(copy) in str(refused.value) and str(original) in str(refused.value)
    assert [v.version for v in session.registry.store.list_versions("tiny")] == [1]

    # A project moved to another folder (the old one gone) carries on with its registry.
    shutil.rmtree(original)
    moved = session.run(str(copy))
    version, created = session.last_registration
    assert created and version.version == 2 and version.run_id == moved.id != first.id


@asyncio_test
async def test_the_tui_starts_with_two_folders_of_one_name_and_shows_the_clash(tmp_path):
    original, copy = twin_workspace(tmp_path / "ws")
    app = make_app(tmp_path / "ws")
    async with app.run_test(size=(120, 36)) as pilot:
        main = pilot.app.main_screen
        await shown(pilot, "name used twice")
        assert main.projects.option_count == 2
        rows = list(main.projects.rows.values())
        assert {row.path for row in rows} == {str(original), str(copy)}
        assert all(str(copy) in row.error or str(original) in row.error for row in rows)


# -- item 8: a copied or moved workspace ----------------------------------------------------


def _fingerprint(root: Path) -> dict[str, tuple]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path)] = ("->", os.readlink(path))
        elif path.is_file():
            found[str(path)] = (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def _mentions(root: Path, needle: str) -> list[str]:
    """Every place under `root` that names `needle`: rows of the DuckDB and sqlite tables (read
    through their engines), the bytes of every other file, and symlink targets."""
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            if needle in os.readlink(path):
                hits.append(f"{path} -> {os.readlink(path)}")
        elif path.suffix == ".duckdb":
            con = duckdb.connect(str(path), read_only=True)
            for (table,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
                for row in con.execute(f'SELECT * FROM "{table}"').fetchall():
                    if needle in repr(row):
                        hits.append(f"{path.name}:{table}: {row!r:.300}")
            con.close()
        elif path.suffix == ".db":
            con = sqlite3.connect(path)
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for row in con.execute(f'SELECT * FROM "{table}"').fetchall():
                    if needle in repr(row):
                        hits.append(f"{path.name}:{table}: {row!r:.300}")
            con.close()
        elif path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


@pytest.mark.slow
def test_a_copied_workspace_refers_only_to_itself_and_leaves_the_original_untouched(tmp_path):
    original, copy = tmp_path / "original", tmp_path / "copy"
    write_project(original)
    sync = {"WORKBENCH_MLFLOW_SYNC": "off"}
    assert wb(original, "run", "tiny", "--runner", "local", "-q").returncode == 0
    assert wb(original, "promote", "tiny", "1", "--to", "staging", "--yes").returncode == 0
    assert wb(original, "mirror", "sync", "--json", env=sync).returncode == 0
    subprocess.run(["cp", "-r", str(original), str(copy)], check=True)
    before = _fingerprint(original)

    again = json.loads(wb(copy, "run", "tiny", "--runner", "local", "--json").stdout)
    assert [s["status"] for s in again["stages"]] == ["reused", "reused"], "the copy reuses its own outputs"
    assert all(s["output_dir"].startswith(str(copy) + "/") for s in again["stages"])
    (copy / "tiny" / "params.toml").write_text("[fit]\nscale = 1.7\n")
    changed = json.loads(wb(copy, "run", "tiny", "--runner", "local", "--json").stdout)
    assert [s["status"] for s in changed["stages"]] == ["reused", "succeeded"]
    assert all(s["output_dir"].startswith(str(copy) + "/") for s in changed["stages"])
    assert wb(copy, "promote", "tiny", "2", "--to", "staging", "--yes").returncode == 0
    synced = wb(copy, "mirror", "sync", "--json", env=sync)
    assert synced.returncode == 0 and json.loads(synced.stdout)["status"]["pending"] == 0, synced.stdout

    assert _fingerprint(original) == before, "working in the copy changed the original"
    assert _mentions(copy, str(original)) == []
    # run 1 came with the copy; the copy's runs 2 (reused) and 3 logged theirs into its own store
    artifacts = list((copy / ".workbench" / "mlflow-artifacts").rglob("model.json"))
    assert len(artifacts) == 3 and len(list((original / ".workbench").rglob("mlflow-artifacts/**/model.json"))) == 1


def test_a_store_written_with_absolute_paths_elsewhere_is_migrated_to_the_workspace(tmp_path):
    """What earlier versions stored (absolute paths), of a workspace that was moved since:
    schema migration 5 makes the paths relative, and runs find their outputs where the
    workspace is. (The migration is applied by hand to the rewritten tables: later migrations
    of the file cannot be undone to replay it through the upgrade.)"""
    write_project(tmp_path)
    assert wb(tmp_path, "run", "tiny", "--runner", "local", "-q").returncode == 0
    old = "/somewhere/it/was"
    db = tmp_path / ".workbench" / "lineage.duckdb"
    con = duckdb.connect(str(db))
    for table, column in (("projects", "path"), ("stage_runs", "output_dir"), ("artifacts", "path"),
                          ("model_versions", "artifact_path"), ("datasets", "path")):
        con.execute(f"UPDATE {table} SET {column} = ? || '/' || {column} WHERE {column} NOT LIKE '/%'", [old])
    con.execute("UPDATE mlflow_outbox SET payload = replace(payload, '\"path\": \".workbench', ?)",
                [f'"path": "{old}/.workbench'])
    con.execute("DROP INDEX runs_project_id")  # DuckDB alters no table an index depends on
    con.execute("ALTER TABLE runs DROP COLUMN project_path")
    con.execute("CREATE INDEX runs_project_id ON runs (project, id)")
    con.execute("ALTER TABLE model_versions DROP COLUMN project_path")
    assert con.execute("SELECT count(*) FROM stage_runs WHERE starts_with(output_dir, ?)", [old]).fetchone()[0] == 2
    v5_workspace_relative(con, str(db))
    con.close()

    again = json.loads(wb(tmp_path, "run", "tiny", "--runner", "local", "--json").stdout)
    assert [s["status"] for s in again["stages"]] == ["reused", "reused"]
    assert all(s["output_dir"].startswith(str(tmp_path) + "/") for s in again["stages"])
    assert _mentions(tmp_path / ".workbench", old) == []
    models = json.loads(wb(tmp_path, "models", "tiny", "--json").stdout)
    assert Path(models[0]["artifact_path"]).is_file()

"""A promotion records, in the version's deploy release, the columns the version was trained on
(`schema.json`, from the run's recorded data, not the file as it is now), and the model server
checks requests against the schema of the version that answers: a hot swap to a version trained
on other columns checks those. Tiny project, local runner, real DuckDB, the CLI as a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_pipeline_local import MANIFEST, write_project

MANIFEST_WITH_DATA = MANIFEST.replace('[stages.prep]', '[data]\npaths = ["data.csv"]\ntarget = "y"\n\n[stages.prep]') \
    .replace('inputs = ["prep.py", "data.txt"]', 'inputs = ["prep.py", "data.txt", "data.csv"]')


def release(root: Path, alias: str) -> Path:
    return (root / ".workbench" / "deploy" / "tiny" / alias).resolve()


def test_each_release_records_the_columns_its_version_was_trained_on(tmp_path: Path):
    root = tmp_path / "ws"
    project = write_project(root, **{"workbench.toml": MANIFEST_WITH_DATA,
                                     "data.csv": "age,plan,y\n30,basic,1\n41,pro,0\n"})
    assert wb(root, "run", "tiny", "--runner", "local").returncode == 0
    promoted = wb(root, "promote", "tiny", "1", "--to", "staging", "--yes")
    assert promoted.returncode == 0, promoted.stderr
    first = json.loads((release(root, "staging") / "schema.json").read_text())
    assert first == {"columns": {"age": "number", "plan": "string"}}

    # The data gains a column; the next version is trained on it and records it.
    (project / "data.csv").write_text("age,plan,member,y\n30,basic,true,1\n41,pro,false,0\n")
    (project / "params.toml").write_text("[fit]\nscale = 1.8\n")  # another model, so a new version
    assert wb(root, "run", "tiny", "--runner", "local").returncode == 0
    assert wb(root, "promote", "tiny", "2", "--to", "staging", "--yes").returncode == 0
    second = json.loads((release(root, "staging") / "schema.json").read_text())
    assert second == {"columns": {"age": "number", "plan": "string", "member": "boolean"}}

    # Rolling staging back re-deploys version 1 with what it was trained on, not today's file.
    assert wb(root, "rollback", "tiny", "--alias", "staging", "--yes").returncode == 0
    assert json.loads((release(root, "staging") / "schema.json").read_text()) == first


def test_a_release_without_data_paths_has_no_schema_and_still_promotes(tmp_path: Path):
    root = tmp_path / "ws"
    write_project(root)
    assert wb(root, "run", "tiny", "--runner", "local").returncode == 0
    done = wb(root, "promote", "tiny", "1", "--to", "staging", "--yes")
    assert done.returncode == 0, done.stderr
    assert (release(root, "staging") / "metadata.json").is_file()
    assert not (release(root, "staging") / "schema.json").exists()

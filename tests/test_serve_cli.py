"""`workbench serve` refusing what it cannot serve, before any container starts, and the
schema requests are checked against."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.test_cli import wb, write_project
from tests.test_registry_cli import EXAMPLE
from workbench.services.serving import training_schema


@pytest.mark.docker
def test_serve_without_a_promoted_version_says_how_to_get_one(tmp_path, docker_engine):
    write_project(tmp_path)
    done = wb(tmp_path, "serve", "tiny")
    assert done.returncode != 0
    assert "no version is in production yet (promote one: workbench promote tiny VERSION --to production)" \
        in done.stderr.replace("\n", " ")
    status = wb(tmp_path, "serve", "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout) == []


def test_serve_rejects_a_bad_port_and_a_stray_project(tmp_path):
    write_project(tmp_path)
    bad = wb(tmp_path, "serve", "tiny", "--port", "70000")
    assert bad.returncode == 64 and "must be a port number from 0 to 65535, got '70000'" in bad.stderr
    assert "usage:" in bad.stderr
    stray = wb(tmp_path, "serve", "tiny", "other")
    assert stray.returncode == 64 and "unexpected 'other'" in stray.stderr


def test_training_schema_reads_kinds_and_leaves_the_target_out(tmp_path):
    shutil.copy(EXAMPLE / "data" / "churn.csv", tmp_path / "churn.csv")
    columns = training_schema(tmp_path / "churn.csv", "churn")["columns"]
    assert "churn" not in columns and len(columns) == 19
    assert columns["tenure"] == "number" and columns["monthly_charges"] == "number"
    assert columns["contract"] == "string" and columns["female"] == "number"

"""A team's shared MLflow server (Postgres behind it, artifacts proxied): two engineers' workspaces,
each with a project of the same name, mirror into the one server without overwriting each
other's runs, versions or aliases, and a version promoted in one is visible with its lineage tags
from the other."""

from __future__ import annotations

import time
import json
from pathlib import Path

import pytest

from tests.mlflow_server import team_server  # noqa: F401 - the fixture
from tests.test_pipeline_local import write_project
from workbench.cli.main import main
from workbench.services.session import WorkbenchSession

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def engineer_workspace(root: Path, user: str, scales: list[float], promote: list[tuple[int, str]],
                       monkeypatch) -> WorkbenchSession:
    """`user`'s workspace with the tiny project, run once per scale, versions promoted."""
    monkeypatch.setenv("WORKBENCH_USER", user)
    write_project(root)
    session = WorkbenchSession(root, runner="local")
    for scale in scales:
        (root / "tiny" / "params.toml").write_text(f"[fit]\nscale = {scale}\n")
        session.run("tiny")
    for version, alias in promote:
        assert session.registry.promote("tiny", version, alias).applied
    return session


def sync(root: Path, capsys) -> str:
    assert main(["--workspace", str(root), "mirror", "sync", "--timeout", "120"]) == 0
    return capsys.readouterr().out


def test_two_workspaces_share_one_server_without_clashing(team_server, tmp_path, monkeypatch, capsys):  # noqa: F811
    from mlflow import MlflowClient

    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", team_server.uri)
    ana = engineer_workspace(tmp_path / "ana", "ana", [1.5, 1.8],
                             [(1, "staging"), (1, "production"), (2, "staging")], monkeypatch)
    bo = engineer_workspace(tmp_path / "bo", "bo", [2.5], [(1, "staging"), (1, "production")], monkeypatch)
    monkeypatch.setenv("WORKBENCH_USER", "ana")
    sync(ana.workspace.root, capsys)
    monkeypatch.setenv("WORKBENCH_USER", "bo")
    sync(bo.workspace.root, capsys)

    client = MlflowClient(tracking_uri=team_server.uri, registry_uri=team_server.uri)
    # Each workspace has a registered model and an experiment of its own, named by its namespace.
    ana_versions = client.search_model_versions("name = 'ana.tiny'")
    bo_versions = client.search_model_versions("name = 'bo.tiny'")
    assert sorted(v.tags["workbench.version"] for v in ana_versions) == ["1", "2"]
    assert [v.tags["workbench.version"] for v in bo_versions] == ["1"]
    assert client.get_registered_model("ana.tiny").aliases == {"staging": "2", "production": "1"}
    assert client.get_registered_model("bo.tiny").aliases == {"staging": "1", "production": "1"}
    for name in ("ana", "bo"):
        experiment = client.get_experiment_by_name(f"{name}.tiny")
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(r.data.tags["workbench.run_id"] for r in runs) == (["1", "2"] if name == "ana" else ["1"])
        assert {r.data.tags["workbench.namespace"] for r in runs} == {name}

    # bo sees ana's production version, with the lineage to trace it back to ana's run.
    production = client.get_model_version_by_alias("ana.tiny", "production")
    assert production.tags["workbench.version"] == "1" and production.tags["workbench.run_id"] == "1"
    assert production.tags["workbench.namespace"] == "ana"
    run = client.get_run(production.run_id)
    assert run.data.params["scale"] == "1.5"
    assert run.data.tags["workbench.snapshot_id"] and run.data.tags["workbench.inputs_digest"]
    assert production.tags["workbench.sha256"] == ana.registry.store.get_version("tiny", 1).sha256
    # The model file went through the server's artifact proxy into its artifacts folder.
    assert any(team_server.artifacts.rglob("*")), "no artifact reached the server's artifact store"

    # Syncing again sends nothing twice.
    sync(ana.workspace.root, capsys)
    assert len(client.search_model_versions("name = 'ana.tiny'")) == 2
    # The workspace keeps its namespace whoever drains it later.
    monkeypatch.setenv("WORKBENCH_USER", "zed")
    (ana.workspace.root / "tiny" / "params.toml").write_text("[fit]\nscale = 2.0\n")
    ana.run("tiny")
    sync(ana.workspace.root, capsys)
    assert sorted(v.tags["workbench.version"] for v in client.search_model_versions("name = 'ana.tiny'")) \
        == ["1", "2", "3"]
    assert client.search_registered_models("name = 'zed.tiny'") == []


def test_a_namespace_taken_by_another_workspace_is_refused(team_server, tmp_path, monkeypatch, capsys):  # noqa: F811
    """Two workspaces of one engineer, both named by the login: the second must not write its
    versions into the first's registered model."""
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", team_server.uri)
    first = engineer_workspace(tmp_path / "one", "cy", [1.5], [(1, "staging"), (1, "production")], monkeypatch)
    second = engineer_workspace(tmp_path / "two", "cy", [3.0], [(1, "staging"), (1, "production")], monkeypatch)
    sync(first.workspace.root, capsys)
    assert main(["--workspace", str(second.workspace.root), "mirror", "sync", "--timeout", "60"]) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "cy.tiny" in text and "another workspace" in text and "WORKBENCH_MLFLOW_NAMESPACE" in text, text
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=team_server.uri, registry_uri=team_server.uri)
    assert client.get_model_version_by_alias("cy.tiny", "production").tags["workbench.run_id"] == "1"
    assert len(client.search_model_versions("name = 'cy.tiny'")) == 1
    # With a namespace of its own, the second workspace mirrors.
    monkeypatch.setenv("WORKBENCH_MLFLOW_NAMESPACE", "cy-laptop")
    sync(second.workspace.root, capsys)
    assert client.get_model_version_by_alias("cy-laptop.tiny", "production").tags["workbench.namespace"] == "cy-laptop"


def test_sync_json_is_only_json_and_its_time(team_server, tmp_path, monkeypatch, capsys):  # noqa: F811
    """`mirror sync --json` to a server prints JSON alone; prints the time a sync of N runs (one
    version each) takes against the server (-s to see it)."""
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", team_server.uri)
    runs = 10
    session = engineer_workspace(tmp_path / "dee", "dee", [1.0 + i / 10 for i in range(runs)], [], monkeypatch)
    started = time.perf_counter()
    assert main(["--workspace", str(session.workspace.root), "mirror", "sync", "--timeout", "120", "--json"]) == 0
    took = time.perf_counter() - started
    # MLflow prints a "View run ... at" line per run to a server: never into our output.
    report = json.loads(capsys.readouterr().out)
    assert report["report"]["sent"] == 2 * runs and report["status"]["state"] == "in_sync", report
    assert session.registry.mirror_status().state == "in_sync"
    with capsys.disabled():
        print(f"\npostgres start {team_server.postgres_start_s:.2f} s, mlflow server start "
              f"{team_server.mlflow_start_s:.2f} s, sync of {runs} runs {took:.2f} s")

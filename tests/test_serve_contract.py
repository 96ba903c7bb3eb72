"""Served requests held to the data contract of the version that answers them (runtime/wb_serve.py
with a release's contract.json): in-process, a real LightGBM model in a real deploy folder, the
release's contract made from a real contract file by workbench.core.served_contract, requests
through FastAPI's TestClient. `report` answers and says so; `reject` refuses with a 422; a swap
brings the other version's contract; a release without one checks nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("lightgbm")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from tests.test_serve_app import _train  # noqa: E402
from workbench.adapters.deploy import DeployPointers  # noqa: E402
from workbench.core.contract import parse_contract  # noqa: E402
from workbench.core.served_contract import served_contract  # noqa: E402
from workbench.runtime import wb_serve, wb_traffic  # noqa: E402

SCHEMA = {"columns": {"tenure": "number", "contract": "string", "senior": "number", "signup": "string"}}
CONTRACT = """
[table]
min_rows = 100

[columns.tenure]
type = "integer"
nullable = false
min = 0
max = 60
unique = false

[columns.contract]
type = "string"
categories = ["monthly", "yearly"]

[columns.senior]
type = "integer"
categories = [0, 1]
severity = "warning"

[columns.signup]
type = "date"
min = 2020-01-01

[columns.churned]
type = "integer"

[[rules]]
name = "tenure_small"
sql = "tenure < 1000"
"""
ROW = {"tenure": 3, "contract": "monthly", "senior": 0, "signup": "2021-03-04"}


def contract_json(text: str = CONTRACT) -> str:
    return json.dumps(served_contract(parse_contract(text, "data.csv.contract.toml"), "churned"))


def release(root: Path, alias: str, version: int, contract: str | None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    model = root / f"model-{version}.txt"
    _train(model)
    pointers = DeployPointers(root / "deploy")
    folder, check = pointers.prepare("p", version, version, str(model), hashlib.sha256(model.read_bytes()).hexdigest())
    assert check.ok, check.problem
    documents = {"schema.json": json.dumps(SCHEMA)} | ({"contract.json": contract} if contract else {})
    pointers.activate("p", alias, folder, {"version": version, "run_id": version}, documents)


def client_for(root: Path, policy: str, contract: str | None = None):
    release(root, "production", 1, contract if contract is not None else contract_json())
    holder = wb_serve.ModelHolder(str(root / "deploy" / "p" / "production"), None, None, None)
    assert holder.refresh()
    logged = []
    app = wb_serve.build_app(holder, "production", contract_policy=policy)
    app.state.listeners.append(logged.append)  # what the traffic log's Journal is handed
    return holder, TestClient(app, raise_server_exceptions=False), logged


BROKEN = [  # (the change that breaks it, the column, the rule, the value reported)
    ({"tenure": 2.5}, "tenure", "type", 2.5),
    ({"tenure": None}, "tenure", "nullable", None),
    ({"tenure": -1}, "tenure", "min", -1),
    ({"tenure": 99}, "tenure", "max", 99),
    ({"contract": "weekly"}, "contract", "categories", "weekly"),
    ({"signup": "yesterday"}, "signup", "type", "yesterday"),
    ({"signup": "2019-12-31"}, "signup", "min", "2019-12-31"),
]


@pytest.mark.parametrize("change, column, rule, value", BROKEN)
def test_report_answers_a_broken_request_and_says_so(tmp_path, change, column, rule, value):
    _, client, logged = client_for(tmp_path, "report")
    with client:
        response = client.post("/predict", json=[ROW, ROW | change])
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["predictions"]) == 2
        assert body["contract"] == [{"row": 1, "column": column, "rule": rule, "value": value, "severity": "error"}]
        assert response.headers["X-Contract"] == "broken"
        metrics = client.get("/metrics").text
        assert (f'wb_contract_breaches_total{{alias="production",column="{column}",rule="{rule}",'
                f'version="1",role="champion"}} 1') in metrics
    # the traffic log's line carries the breach and the rows that broke it
    line = json.loads(wb_traffic.request_line(logged[0]))
    assert line["contract_rows"] == [1] and line["contract"][0]["rule"] == rule


@pytest.mark.parametrize("change, column, rule, value", BROKEN)
def test_reject_refuses_a_broken_request_naming_row_column_rule_and_value(tmp_path, change, column, rule, value):
    _, client, logged = client_for(tmp_path, "reject")
    with client:
        response = client.post("/predict", json=[ROW, ROW | change])
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error.startswith(f"record 1: column {column!r} breaks the data contract (data.csv.contract.toml), "
                                f"rule {rule}: must be "), error
        assert error.endswith(f"got {value!r}"), error
        assert response.headers["X-Contract"] == "broken"
        assert "predictions" not in response.json()
        assert 'status="422"' in client.get("/metrics").text
    assert logged[0].status == 422 and logged[0].breaches[0]["column"] == column


def test_a_request_that_keeps_the_contract_is_answered_plainly_in_both_policies(tmp_path):
    for policy in ("report", "reject"):
        _, client, _ = client_for(tmp_path / policy, policy)
        with client:
            response = client.post("/predict", content="tenure,contract,senior,signup\n3,yearly,1,2020-01-01\n",
                                   headers={"Content-Type": "text/csv"})  # CSV numbers arrive as floats: 3.0 fits integer
            assert response.status_code == 200, response.text
            assert "contract" not in response.json() and "X-Contract" not in response.headers
            assert "wb_contract_breaches_total" not in client.get("/metrics").text


def test_a_warning_level_column_is_reported_but_not_refused(tmp_path):
    _, client, _ = client_for(tmp_path, "reject")
    with client:
        response = client.post("/predict", json=[ROW | {"senior": 7}])
        assert response.status_code == 200, response.text
        assert response.json()["contract"] == [{"row": 0, "column": "senior", "rule": "categories", "value": 7,
                                                "severity": "warning"}]


def test_batch_level_rules_and_the_target_are_left_out_of_the_release_contract():
    document = json.loads(contract_json())
    assert set(document["columns"]) == {"tenure", "contract", "senior", "signup"}  # churned is the target
    assert document["left_out"] == ["min_rows", "rule tenure_small"]
    assert document["columns"]["tenure"] == {"type": "integer", "nullable": False, "min": 0, "max": 60,
                                             "severity": "error"}


def test_a_swap_brings_the_other_versions_contract_and_a_release_without_one_checks_nothing(tmp_path):
    holder, client, _ = client_for(tmp_path, "reject")
    wider = CONTRACT.replace("max = 60", "max = 120")
    with client:
        assert client.post("/predict", json=[ROW | {"tenure": 99}]).status_code == 422
        release(tmp_path, "production", 2, contract_json(wider))
        assert holder.refresh()
        response = client.post("/predict", json=[ROW | {"tenure": 99}])
        assert response.status_code == 200 and response.json()["version"] == 2, response.text
        assert client.post("/predict", json=[ROW | {"tenure": 121}]).status_code == 422

        release(tmp_path, "production", 3, None)  # no contract when it was trained: nothing to hold it to
        assert holder.refresh()
        response = client.post("/predict", json=[ROW | {"tenure": -5, "contract": "weekly"}])
        assert response.status_code == 200 and response.json()["version"] == 3, response.text
        assert "contract" not in response.json()


def test_a_bad_policy_is_refused():
    with pytest.raises(ValueError, match="report, reject"):
        wb_serve.build_app(None, "production", contract_policy="warn")


def test_serve_status_shows_the_breaches_per_version_from_the_servers_metrics(tmp_path):
    from workbench.cli.serve_command import _contract_lines
    from workbench.services.serving_stats import parse_metrics, totals

    holder, client, _ = client_for(tmp_path, "report")
    with client:
        client.post("/predict", json=[ROW | {"tenure": 99}, ROW | {"tenure": 70, "contract": "weekly"}])
        release(tmp_path, "production", 2, contract_json())
        assert holder.refresh()
        client.post("/predict", json=[ROW | {"tenure": None}])
        client.post("/predict", json=[ROW])
        stats = totals("http://127.0.0.1:1", parse_metrics(client.get("/metrics").text))
    by_version = {row.version: row.contract_breaches for row in stats.rows}
    assert by_version == {"1": (("tenure", "max", 2), ("contract", "categories", 1)),
                          "2": (("tenure", "nullable", 1),)}
    assert stats.rows[0].as_json()["contract_breaches"][0] == {"column": "tenure", "rule": "max", "count": 2}
    assert _contract_lines(stats.rows) == [
        "  [yellow]version 1 (champion): contract breaches: tenure max 2, contract categories 1[/]",
        "  [yellow]version 2 (champion): contract breaches: tenure nullable 1[/]"]


def test_a_canary_answer_is_held_to_the_challengers_contract(tmp_path):
    release(tmp_path, "production", 1, contract_json())
    release(tmp_path, "staging", 2, contract_json(CONTRACT.replace("max = 60", "max = 120")))
    holders = [wb_serve.ModelHolder(str(tmp_path / "deploy" / "p" / alias), None, None, None)
               for alias in ("production", "staging")]
    assert all(holder.refresh() for holder in holders)
    router = wb_serve.CanaryRouter(holders[0], holders[1], 1.0, False)  # every key to the challenger
    app = wb_serve.build_app(holders[0], "production", router=router, contract_policy="reject")
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/predict", json=[ROW | {"tenure": 99}])
        assert response.status_code == 200 and response.headers["X-Model-Role"] == "challenger", response.text
        response = client.post("/predict", json=[ROW | {"tenure": 121}])
        assert response.status_code == 422 and "at most 120" in response.json()["error"], response.text
        assert 'column="tenure",rule="max",version="2",role="challenger"} 1' in client.get("/metrics").text

"""Drift batches held to the data contract of the file they are compared with: a batch that
breaks it is "breaks the contract" (neither drifted nor clean, never retrained on), through the
CLI; a batch that keeps it is judged on drift as before, and an unlabelled batch (no target
column) or a small one (fewer rows than min_rows) does not break it by that alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_drift import batch, in_production, sales, workbench, write_project
from workbench.services.contracts import infer_text
from workbench.services.session import WorkbenchSession


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    project = write_project(tmp_path)
    data = project / "data" / "sales.csv"
    text = infer_text(data, "data/sales.csv") + '\n[[rules]]\nname = "sane_amount"\nsql = "amount < 1000"\n'
    (project / "data" / "sales.csv.contract.toml").write_text(text)
    in_production(WorkbenchSession(tmp_path, runner="local"))
    return tmp_path


def test_a_batch_that_breaks_the_contract_is_reported_as_such_by_line(ws):
    rows = sales(200, seed=4)
    rows[9]["plan"] = "platinum"      # line 11: not one of the plans
    rows[19]["amount"] = "5000.00"     # line 21: breaks the custom rule and the range
    batch(ws, "odd.csv", rows)
    shown = workbench(ws, "drift", "shop", "odd.csv", "--runner", "local", "--json")
    assert shown.returncode == 3, shown.stderr
    data = json.loads(shown.stdout)
    assert data["verdict"] == "breaks the contract"
    assert "plan: 1 row not in categories [basic, plus, pro] (line 11: platinum)" in data["rule"]
    assert "breaking rule 'sane_amount' (amount < 1000) (line 21: amount=5000.0)" in data["rule"]
    assert data["batch"]["drifted"] is None and not data["decision"]["retrain"]

    listed = workbench(ws, "drift", "shop", "odd.csv")
    assert "⊘ breaks the contract" in listed.stdout and "no drift" not in listed.stdout


def test_a_batch_that_breaks_the_contract_is_alerted_as_such_not_as_drift(ws):
    from tests.notify_receiver import Receiver

    receiver = Receiver().start()
    try:
        (ws / "workspace.toml").write_text(f'[[notify.webhooks]]\nurl = "{receiver.url}"\n')
        rows = sales(200, seed=4)
        rows[9]["plan"] = "platinum"  # line 11
        batch(ws, "odd.csv", rows)
        assert workbench(ws, "drift", "shop", "odd.csv", "--runner", "local").returncode == 3
        assert workbench(ws, "notify", "sync").returncode == 0
        kinds = [body["kind"] for body in receiver.bodies()]
    finally:
        receiver.stop()
    assert kinds == ["contract_broken"], kinds
    assert "batch data/incoming/odd.csv breaks the contract" in receiver.bodies()[0]["summary"]
    assert "(line 11: platinum)" in receiver.bodies()[0]["summary"]


def test_a_batch_that_keeps_the_contract_is_judged_on_drift(ws):
    rows = sales(120, seed=5)  # fewer rows than min_rows: a batch is a slice, not the data
    for row in rows:
        del row["bought"]  # unlabelled: the target column is not required of a batch
    batch(ws, "fine.csv", rows, columns=["amount", "plan"])
    shown = workbench(ws, "drift", "shop", "fine.csv", "--runner", "local", "--json")
    data = json.loads(shown.stdout)
    assert shown.returncode == 0, shown.stderr
    assert data["verdict"] == "no drift"
    assert not any(f["kind"].startswith("contract") for f in data["batch"]["report"]["findings"])

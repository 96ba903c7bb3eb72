"""The example served in its container with a data contract and `[serving] contract = "reject"`:
the promotion's release carries the run's contract.json, the host passes the policy to the
server, and a request breaking the contract is refused with a 422 naming it, while a clean one
is answered. The in-process tests (tests/test_serve_contract.py) cover each rule and `report`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_registry_cli import EXAMPLE, P, ok
from tests.test_serve_docker import _free_port, _post, _rows
from workbench.services.contracts import infer_text

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_the_served_example_refuses_a_request_that_breaks_its_contract(docker_engine, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    shutil.copytree(EXAMPLE, ws / P, ignore=shutil.ignore_patterns(".workbench"))
    data = ws / P / "data" / "churn.csv"
    (data.parent / "churn.csv.contract.toml").write_text(infer_text(data, "data/churn.csv"))
    manifest = ws / P / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('latency_p95_ms = "<= 50"', 'latency_p95_ms = "<= 1000"')
                        + '\n[serving]\ncontract = "reject"\n')
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    ok(wb(ws, "run", P, "--runner", "local", "-q"))
    ok(wb(ws, "promote", P, "1", "--to", "staging", "--yes"))
    release = (ws / ".workbench" / "deploy" / P / "staging").resolve()
    assert json.loads((release / "contract.json").read_text())["columns"]["tenure"]["type"] == "integer"

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "workbench", "--workspace", str(ws), "serve", P,
                               "--alias", "staging", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            status = json.loads(ok(wb(ws, "serve", "status", "--json")).stdout)
            if status and all(s["healthy"] for s in status):
                break
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, status
            time.sleep(1)
        url = next(s["url"] for s in status if s["alias"] == "staging")
        row = _rows(ws, 1)[0]
        code, body, headers = _post(url, json.dumps([row]).encode())
        assert code == 200 and "contract" not in body, body
        code, body, headers = _post(url, json.dumps([row, row | {"tenure": 10_000.0}]).encode())
        assert code == 422, body
        assert body["error"].startswith("record 1: column 'tenure' breaks the data contract "
                                        "(data/churn.csv.contract.toml), rule max: must be at most "), body
        assert headers["X-Contract"] == "broken"
    finally:
        wb(ws, "serve", "stop")
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()

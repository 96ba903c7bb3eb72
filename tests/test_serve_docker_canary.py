"""Canary and shadow for real: the example trained twice, version 1 in production and version 2 in
staging, `[serving] canary = 0.3` and `shadow = true`, `workbench serve` in containers, keyed
requests over real HTTP. The in-process tests are tests/test_serve_canary.py."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.test_cli import wb
from tests.test_registry_cli import P, ok
from tests.test_serve_docker import _free_port, _rows, example_in_production

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _post_keyed(url: str, body: bytes, key: str) -> tuple[int, dict, object]:
    request = urllib.request.Request(url + "/predict", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "X-Request-Key": key})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read()), response.headers


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _count(metrics: str, version: int, role: str) -> int:
    found = re.search(rf'wb_requests_total{{alias="production",version="{version}",role="{role}",status="200"}} '
                      r"(\d+)", metrics)
    return int(found.group(1)) if found else 0


def test_canary_and_shadow_over_real_http(docker_engine, tmp_path, monkeypatch):
    ws = example_in_production(tmp_path, monkeypatch, "canary = 0.3\nshadow = true")
    params = ws / P / "params.toml"
    params.write_text(params.read_text().replace("num_boost_round = 200", "num_boost_round = 120"))
    ok(wb(ws, "run", P, "--runner", "local", "-q"))
    ok(wb(ws, "promote", P, "2", "--to", "staging", "--yes"))

    server = subprocess.Popen([sys.executable, "-m", "workbench", "--workspace", str(ws), "serve", P,
                               "--port", str(_free_port()), "--poll", "0.5"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            status = json.loads(ok(wb(ws, "serve", "status", "--json")).stdout)
            if len(status) == 2 and all(s["healthy"] for s in status):
                break
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, status
            time.sleep(1)
        url = next(s["url"] for s in status if s["alias"] == "production")
        health = json.loads(_get(url + "/health"))
        assert health["version"] == 1
        assert health["challenger"] | {"state": ""} == {
            "alias": "staging", "version": 2, "release": health["challenger"]["release"], "share": 0.3,
            "shadow": True, "active": True, "state": ""}

        body = json.dumps(_rows(ws, 1)).encode()
        roles, first = {"champion": 0, "challenger": 0}, []
        for i in range(300):
            code, answer, headers = _post_keyed(url, body, f"customer-{i}")
            assert code == 200, answer
            role = headers["X-Model-Role"]
            assert headers["X-Model-Version"] == str(answer["version"])
            assert answer["version"] == {"champion": 1, "challenger": 2}[role], (role, answer)
            roles[role] += 1
            first.append(role)
        spread = 3.29 * math.sqrt(300 * 0.3 * 0.7)  # the binomial 99.9% interval
        assert 90 - spread <= roles["challenger"] <= 90 + spread, roles
        # the same key is answered by the same version again
        again = [_post_keyed(url, body, f"customer-{i}")[2]["X-Model-Role"] for i in range(20)]
        assert again == first[:20]

        # shadow scores land after the answers: wait for the last ones, then they match one to one
        deadline = time.monotonic() + 20
        while True:
            metrics = _get(url + "/metrics")
            champion, shadow = _count(metrics, 1, "champion"), _count(metrics, 2, "shadow")
            if shadow == champion or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert champion == roles["champion"] + again.count("champion")
        assert shadow == champion
        assert _count(metrics, 2, "challenger") == roles["challenger"] + again.count("challenger")
    finally:
        wb(ws, "serve", "stop")
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()

"""`workbench serve` for real: the example project trained, promoted with the CLI, served in
locked-down containers, asked over real HTTP; a promotion under a continuous client loop swaps
the production server's model with no failed request."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_registry_cli import EXAMPLE, P, ok

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _free_port() -> int:
    """A port N with N+1 free too (`serve --port N` gives staging N+1): other tests and helpers'
    servers hold ports on this machine, and a taken N+1 failed the fixture once."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


def _post(url: str, body: bytes, kind: str = "application/json") -> tuple[int, dict, object]:
    request = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": kind}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def _rows(ws: Path, n: int) -> list[dict]:
    with open(ws / P / "data" / "churn.csv", newline="") as fh:
        rows = [r for _, r in zip(range(n), csv.DictReader(fh))]
    numeric = {"female", "senior_citizen", "partner", "dependents", "tenure", "phone_service",
               "paperless_billing", "monthly_charges", "total_charges"}
    out = []
    for row in rows:
        row.pop("churn")
        out.append({k: (float(v) if v else None) if k in numeric else v for k, v in row.items()})
    return out


def _switch_under_load(url: str, body: bytes, switch, before: int, after: int, clients: int = 4) -> None:
    """Ask `url` from `clients` threads in a loop while `switch()` moves its alias: no request
    fails, the answers' versions go from `before` to `after`, and each answer's version agrees
    with the server's swap time: a response received before it came from `before`, a request
    sent after it was answered by `after` (same host, same clock)."""
    failures, answers, stop = [], [], threading.Event()

    def client() -> None:
        while not stop.is_set():
            sent = time.time()
            try:
                code, answer, _ = _post(url, body)
            except OSError as exc:
                failures.append(repr(exc))
                continue
            if code != 200:
                failures.append(answer)
            else:
                answers.append((sent, time.time(), answer["version"]))

    loops = [threading.Thread(target=client) for _ in range(clients)]
    for loop in loops:
        loop.start()
    try:
        time.sleep(1)
        switch()
        deadline = time.monotonic() + 30
        while not answers or answers[-1][2] != after:
            assert time.monotonic() < deadline, answers[-5:]
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        for loop in loops:
            loop.join()
    assert failures == []
    with urllib.request.urlopen(url + "/health", timeout=10) as response:
        swapped_at = json.loads(response.read())["swapped_at"]
    received_before = [v for sent, received, v in answers if received < swapped_at]
    sent_after = [v for sent, received, v in answers if sent > swapped_at]
    assert received_before and set(received_before) == {before}
    assert sent_after and set(sent_after) == {after}
    assert len(answers) > 50, len(answers)


def example_in_production(tmp_path: Path, monkeypatch, serving: str) -> Path:
    """A workspace with the example trained (local runner) and version 1 in staging and
    production; `serving`: the manifest's [serving] lines."""
    ws = tmp_path / "ws"
    shutil.copytree(EXAMPLE, ws / P, ignore=shutil.ignore_patterns(".workbench"))
    manifest = ws / P / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('latency_p95_ms = "<= 50"', 'latency_p95_ms = "<= 1000"')
                        + f"\n[promotion]\ntolerance = 0.5\n\n[serving]\n{serving}\n")
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WORKBENCH_USER", "ana")
    ok(wb(ws, "run", P, "--runner", "local", "-q"))
    ok(wb(ws, "promote", P, "1", "--to", "staging", "--yes"))
    ok(wb(ws, "promote", P, "1", "--to", "production", "--yes"))
    return ws


@pytest.fixture
def served_example(docker_engine, tmp_path, monkeypatch):
    ws = example_in_production(tmp_path, monkeypatch, "segment_seconds = 1")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "workbench", "--workspace", str(ws), "serve", P,
                               "--port", str(port), "--poll", "0.5"],
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
        yield ws, {s["alias"]: s for s in status}, server
    finally:
        wb(ws, "serve", "stop")
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()


def test_serve_answers_checks_requests_and_swaps_on_promotion(served_example, docker_engine):
    ws, servers, server = served_example
    production, staging = servers["production"], servers["staging"]
    assert production["url"].startswith("http://127.0.0.1:") and production["version"] == 1
    assert staging["version"] == 1 and staging["port"] == production["port"] + 1

    rows = _rows(ws, 5)
    code, body, headers = _post(production["url"], json.dumps({"records": rows}).encode())
    assert code == 200, body
    assert len(body["predictions"]) == 5 and all(0 <= p <= 1 for p in body["predictions"])
    assert body["version"] == 1 and headers["X-Model-Version"] == "1" and headers["X-Request-Id"] == body["request_id"]

    csv_body = "tenure,monthly_charges\n3,29.5\n"
    code, body, _ = _post(production["url"], csv_body.encode(), "text/csv")
    assert code == 422 and "missing column(s)" in body["error"]
    code, body, _ = _post(production["url"], json.dumps([rows[0] | {"tenure": "long"}]).encode())
    assert code == 422 and "'tenure' must be a number" in body["error"]
    code, body, _ = _post(production["url"], b"{oops")
    assert code == 400 and "not valid JSON" in body["error"]

    container = docker_engine.containers.get(production["container"])
    config, host = container.attrs["Config"], container.attrs["HostConfig"]
    assert config["User"] not in ("", "0", "root", "0:0")
    assert host["ReadonlyRootfs"] is True and host["Memory"] == 1024 ** 3 and host["NanoCpus"] == 10 ** 9
    assert host["PortBindings"]["8080/tcp"][0]["HostIp"] == "127.0.0.1"
    assert container.labels["workbench.role"] == "server" and container.labels["workbench.owner_pid"]
    assert production["container"].startswith(f"wb-serve-{P}-production-")

    # A second version, promoted while a client keeps asking production.
    params = ws / P / "params.toml"
    params.write_text(params.read_text().replace("num_boost_round = 200", "num_boost_round = 120"))
    ok(wb(ws, "run", P, "--runner", "local", "-q"))
    ok(wb(ws, "promote", P, "2", "--to", "staging", "--yes"))
    one_row = json.dumps([rows[0]]).encode()
    _switch_under_load(production["url"], one_row, lambda: ok(wb(ws, "promote", P, "2", "--to", "production",
                                                                    "--yes")), 1, 2)
    status = {s["alias"]: s for s in json.loads(ok(wb(ws, "serve", "status", "--json")).stdout)}
    assert status["production"]["version"] == 2 and status["staging"]["version"] == 2
    with urllib.request.urlopen(production["url"] + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    for version in (1, 2):
        assert f'wb_requests_total{{alias="production",version="{version}",role="champion",status="200"}}' in metrics
    assert 'wb_model_version{alias="production"} 2' in metrics

    # A rollback under the same load swaps back, as cleanly.
    _switch_under_load(production["url"], one_row, lambda: ok(wb(ws, "rollback", P, "--yes")), 2, 1)
    ok(wb(ws, "promote", P, "2", "--to", "production", "--yes"))

    # A server container that dies is started again by the foreground `workbench serve`.
    killed = docker_engine.containers.get(production["container"])
    first_start = killed.attrs["State"]["StartedAt"]
    killed.kill()
    deadline = time.monotonic() + 60
    while True:
        killed.reload()
        status = {s["alias"]: s for s in json.loads(ok(wb(ws, "serve", "status", "--json")).stdout)}
        if killed.attrs["State"]["StartedAt"] != first_start and status["production"]["healthy"]:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    code, body, _ = _post(production["url"], one_row)
    assert code == 200 and body["version"] == 2

    stopped = json.loads(ok(wb(ws, "serve", "stop", P, "--json")).stdout)["stopped"]
    assert sorted(stopped) == sorted([production["container"], staging["container"]])
    assert json.loads(ok(wb(ws, "serve", "status", "--json")).stdout) == []
    assert server.wait(timeout=30) == 0  # the foreground `workbench serve` saw its servers go
    assert "the servers were stopped" in server.stdout.read()
    assert f"the production server {production['container']} stopped (exit code 137): restarted it" \
        in server.stderr.read().replace("\n", " ")


def test_servers_of_a_killed_workbench_are_orphans_the_next_serve_removes(served_example, docker_engine):
    ws, servers, server = served_example
    old = {s["container"] for s in servers.values()}
    server.kill()  # SIGKILL: no cleanup of its own
    server.wait(timeout=30)
    left = {s["container"] for s in json.loads(ok(wb(ws, "serve", "status", "--json")).stdout)}
    assert left == old  # nothing removed them yet

    again = subprocess.Popen([sys.executable, "-m", "workbench", "--workspace", str(ws), "serve", P,
                              "--alias", "production", "--max-restarts", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            status = json.loads(ok(wb(ws, "serve", "status", "--json")).stdout)
            if [s["alias"] for s in status] == ["production"] and status[0]["healthy"]:
                break
            assert again.poll() is None, again.communicate()
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status[0]["container"] not in old
        assert all(name not in {c.name for c in docker_engine.containers.list(all=True)} for name in old)

        # --max-restarts 1: the first crash is restarted, the second is given up on, and with no
        # server left the foreground process says so and fails.
        container = docker_engine.containers.get(status[0]["container"])
        started_at = container.attrs["State"]["StartedAt"]
        container.kill()
        deadline = time.monotonic() + 60
        while True:
            container.reload()
            if container.attrs["State"]["StartedAt"] != started_at and container.status == "running":
                break
            assert again.poll() is None and time.monotonic() < deadline, again.communicate()
            time.sleep(0.2)
        container.kill()
        assert again.wait(timeout=60) == 1
    finally:
        wb(ws, "serve", "stop")
        if again.poll() is None:
            again.wait(timeout=30)
    said = again.stderr.read().replace("\n", " ")
    assert "removed 2 container(s) left by a workbench that stopped" in said
    assert f"the production server {container.name} stopped (exit code 137): restarted it" in said
    assert f"the production server {container.name} stopped (exit code 137), crash 2 in 5 minutes: " \
           "not restarting it again" in said
    assert "no server of telco-churn is left running" in said
    assert container.name not in {c.name for c in docker_engine.containers.list(all=True)}


PREDICT = '''"""Serving: the example's own feature preparation (fixed category levels), then LightGBM."""
import lightgbm as lgb

import common


def load(model_path):
    return lgb.Booster(model_file=model_path)


def predict(frame, booster):
    return booster.predict(common.features(frame))
'''


def test_a_serving_predict_function_of_the_project_answers(docker_engine, tmp_path, monkeypatch):
    lightgbm = pytest.importorskip("lightgbm")
    pd = pytest.importorskip("pandas")
    ws = tmp_path / "ws"
    shutil.copytree(EXAMPLE, ws / P, ignore=shutil.ignore_patterns(".workbench"))
    (ws / P / "stages" / "predict.py").write_text(PREDICT)
    manifest = ws / P / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('latency_p95_ms = "<= 50"', 'latency_p95_ms = "<= 1000"')
                        + '\n[serving]\npredict = "stages/predict.py:predict"\n')
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    ok(wb(ws, "run", P, "--runner", "local", "-q"))
    ok(wb(ws, "promote", P, "1", "--to", "staging", "--yes"))
    ok(wb(ws, "promote", P, "1", "--to", "production", "--yes"))
    server = subprocess.Popen([sys.executable, "-m", "workbench", "--workspace", str(ws), "serve", P,
                               "--alias", "production"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            status = json.loads(ok(wb(ws, "serve", "status", "--json")).stdout)
            if status and status[0]["healthy"]:
                break
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        sample = _rows(ws, 20)
        code, body, _ = _post(status[0]["url"], json.dumps(sample).encode())
        assert code == 200, body
        # The same rows through the same function on the host, with the released model file.
        release = (ws / ".workbench" / "deploy" / P / "production").resolve()
        model_file = json.loads((release / "metadata.json").read_text())["model_file"]
        from workbench.runtime import RUNTIME_DIR

        monkeypatch.syspath_prepend(str(RUNTIME_DIR))  # common.py imports wb
        monkeypatch.syspath_prepend(str(ws / P / "stages"))
        monkeypatch.delitem(sys.modules, "common", raising=False)
        import common  # the copy's stages/common.py

        expected = lightgbm.Booster(model_file=str(release / model_file)).predict(
            common.features(pd.DataFrame(sample)))
        assert body["predictions"] == pytest.approx(list(expected), abs=1e-9)
    finally:
        wb(ws, "serve", "stop")
        server.wait(timeout=30)


def test_a_predict_function_that_cannot_load_fails_serve_at_once_naming_it(docker_engine, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    shutil.copytree(EXAMPLE, ws / P, ignore=shutil.ignore_patterns(".workbench"))
    (ws / P / "stages" / "predict.py").write_text(
        "import no_such_module\n\ndef predict(frame, model):\n    return []\n")
    manifest = ws / P / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('latency_p95_ms = "<= 50"', 'latency_p95_ms = "<= 1000"')
                        + '\n[serving]\npredict = "stages/predict.py:predict"\n')
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    ok(wb(ws, "run", P, "--runner", "local", "-q"))
    ok(wb(ws, "promote", P, "1", "--to", "staging", "--yes"))
    ok(wb(ws, "promote", P, "1", "--to", "production", "--yes"))
    started = time.monotonic()
    done = wb(ws, "serve", P, "--alias", "production")
    assert done.returncode == 3 and time.monotonic() - started < 60
    assert "did not become healthy (could not load 1-" in done.stderr
    assert "ModuleNotFoundError: No module named 'no_such_module'" in done.stderr
    assert json.loads(ok(wb(ws, "serve", "status", "--json")).stdout) == []  # nothing left running


def test_serve_status_shows_requests_errors_latency_and_rate_per_version(served_example):
    ws, servers, _ = served_example
    production = servers["production"]
    good = json.dumps({"records": _rows(ws, 2)}).encode()
    for _ in range(6):
        assert _post(production["url"], good)[0] == 200
    for _ in range(2):
        assert _post(production["url"], b"{oops")[0] == 400
    status = {s["alias"]: s for s in json.loads(ok(wb(ws, "serve", "status", "--json")).stdout)}
    stats = status["production"]["stats"]
    assert stats["served_version"] == 1 and stats["problem"] == "" and stats["rate_over_s"] == 1.0
    [row] = stats["rows"]
    assert (row["version"], row["role"], row["requests"], row["client_errors"], row["server_errors"]) == \
        ("1", "champion", 8, 2, 0)
    assert row["error_rate"] == 0.25 and row["rate"] == 0.0  # nothing asked in the second between scrapes
    assert 0 < row["p50_s"] <= row["p95_s"] <= row["p99_s"] <= 5.0
    assert status["staging"]["stats"]["rows"] == []

    text = ok(wb(ws, "serve", "status")).stdout
    assert "production  version 1" in text and "healthy" in text
    assert all(word in text for word in ("requests", "req/s", "p50", "p95", "p99", "errors", "champion"))
    assert "2 (25.0%)" in text and "no requests yet" in text  # production's errors; staging asked nothing

    # True labels for three of the answered requests: once the traffic log's segments close
    # (segment_seconds = 1), status shows production's live quality on them.
    answered = [_post(production["url"], good)[1]["request_id"] for _ in range(3)]
    feedback = json.dumps([{"request_id": rid, "labels": [1, 0]} for rid in answered]).encode()
    request = urllib.request.Request(production["url"] + "/feedback", data=feedback,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202 and json.loads(response.read()) == {"accepted": 3}
    deadline = time.monotonic() + 30
    while True:
        status = {s["alias"]: s for s in json.loads(ok(wb(ws, "serve", "status", "--json")).stdout)}
        [row] = status["production"]["stats"]["rows"]
        if row["quality"] is not None:
            break
        assert time.monotonic() < deadline, row
        time.sleep(0.5)
    assert row["quality"]["metric"] == "auc" and row["quality"]["labelled_rows"] == 6
    assert 0.0 <= row["quality"]["value"] <= 1.0
    assert f"auc {row['quality']['value']:.4g} (6 labelled)" in ok(wb(ws, "serve", "status")).stdout

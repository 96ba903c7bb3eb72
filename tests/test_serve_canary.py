"""Canary and shadow in the production server (runtime/wb_serve.py CanaryRouter), in-process: two
real LightGBM models (production v1, staging v2 trained on flipped labels, so their answers
differ) in a real deploy folder, requests through FastAPI's TestClient or a raw ASGI call. The
container test is test_canary_and_shadow_over_real_http in tests/test_serve_docker_canary.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import subprocess
import sys

import pytest

from tests.test_serve_app import ROW, SCHEMA, _release
from workbench.adapters.deploy import DeployPointers
from workbench.core.errors import ManifestError
from workbench.core.manifest import parse_manifest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from workbench.runtime import wb_serve  # noqa: E402

ROWS = [ROW | {"tenure": float(t), "senior": float(t % 2)} for t in range(0, 50, 3)]


def _holders(root, challenger_alias: str = "staging"):
    schema_file = root / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    schema = wb_serve.Schema.load(str(schema_file))
    deploy = root / "deploy" / "p"
    champion = wb_serve.ModelHolder(str(deploy / "production"), None, None, schema)
    challenger = wb_serve.ModelHolder(str(deploy / challenger_alias), None, None, schema)
    champion.refresh()
    challenger.refresh()
    return champion, challenger


def _client(root, share: float, shadow: bool):
    champion, challenger = _holders(root)
    router = wb_serve.CanaryRouter(champion, challenger, share, shadow)
    app = wb_serve.build_app(champion, "production", router=router)
    return TestClient(app, raise_server_exceptions=False), app, champion, challenger


@pytest.fixture
def two_versions(tmp_path):
    _release(tmp_path, "production", 1)
    _release(tmp_path, "staging", 2, flip=True)
    return tmp_path


def _binomial_bounds(n: int, p: float, z: float = 3.29) -> tuple[float, float]:
    """The 99.9% interval of a Binomial(n, p) count (normal approximation; n*p >= 100 here)."""
    spread = z * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_canary_share_of_2000_distinct_keys_is_within_binomial_bounds(two_versions, share):
    champion, challenger = _holders(two_versions)
    router = wb_serve.CanaryRouter(champion, challenger, share, False)
    canaried = sum(router.choose(f"customer-{i}")[1] == wb_serve.CHALLENGER for i in range(2000))
    low, high = _binomial_bounds(2000, share)
    assert low <= canaried <= high, canaried


def test_each_answer_names_the_version_and_role_the_router_chose(two_versions):
    client, _, champion, challenger = _client(two_versions, 0.1, shadow=False)
    router = wb_serve.CanaryRouter(champion, challenger, 0.1, False)
    roles = []
    with client:
        for i in range(300):
            response = client.post("/predict", json=[ROW], headers={"X-Request-Key": f"customer-{i}"})
            assert response.status_code == 200, response.text
            role, version = response.headers["X-Model-Role"], response.json()["version"]
            assert response.headers["X-Model-Version"] == str(version)
            assert role == router.choose(f"customer-{i}")[1]
            assert version == (2 if role == wb_serve.CHALLENGER else 1), (role, version)
            roles.append(role)
    assert set(roles) == {wb_serve.CHAMPION, wb_serve.CHALLENGER}


def test_a_key_sees_one_version_across_requests_rebuilt_servers_and_processes(two_versions):
    keys = [f"k{i}" for i in range(60)]

    def roles_of(client) -> dict[str, str]:
        seen: dict[str, set[str]] = {}
        for _ in range(3):
            for key in keys:
                response = client.post("/predict", json=[ROW], headers={"X-Request-Key": key})
                seen.setdefault(key, set()).add(response.headers["X-Model-Role"])
        assert all(len(roles) == 1 for roles in seen.values()), seen
        return {key: roles.pop() for key, roles in seen.items()}

    first = roles_of(_client(two_versions, 0.5, shadow=False)[0])
    again = roles_of(_client(two_versions, 0.5, shadow=False)[0])  # new holders, router and app
    assert first == again
    assert set(first.values()) == {wb_serve.CHAMPION, wb_serve.CHALLENGER}
    # another process with another hash seed (a restarted server) puts each key on the same side
    code = ("import sys; from workbench.runtime import wb_serve; "
            "print(''.join('c' if wb_serve.routing_point(k) < 0.5 else 'p' for k in sys.argv[1:]))")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=os.getcwd())
    other = subprocess.run([sys.executable, "-c", code, *keys], capture_output=True, text=True, env=env, check=True)
    assert other.stdout.strip() == "".join("c" if first[k] == wb_serve.CHALLENGER else "p" for k in keys)


def test_without_a_key_the_request_id_routes_at_random(two_versions):
    client = _client(two_versions, 0.5, shadow=False)[0]
    roles = [client.post("/predict", json=[ROW]).headers["X-Model-Role"] for _ in range(60)]
    assert set(roles) == {wb_serve.CHAMPION, wb_serve.CHALLENGER}


def test_shadow_never_changes_an_answer_and_its_records_reach_the_listeners(two_versions):
    plain = wb_serve.build_app(_holders(two_versions)[0], "production")
    shadowed_client, shadowed, _, challenger = _client(two_versions, 0.0, shadow=True)
    records: list[wb_serve.Served] = []
    shadowed.state.listeners.append(records.append)
    with TestClient(plain) as plain_client, shadowed_client:
        for index, row in enumerate(ROWS):
            headers = {"X-Request-Id": f"req-{index}", "X-Request-Key": f"key-{index}"}
            without = plain_client.post("/predict", json=[row], headers=headers)
            with_shadow = shadowed_client.post("/predict", json=[row], headers=headers)
            assert with_shadow.status_code == without.status_code == 200
            assert with_shadow.content == without.content  # byte for byte: predictions, version, id
            assert with_shadow.headers["X-Model-Role"] == wb_serve.CHAMPION
    by_role = {role: [s for s in records if s.role == role] for role in (wb_serve.CHAMPION, wb_serve.SHADOW)}
    assert len(by_role[wb_serve.CHAMPION]) == len(by_role[wb_serve.SHADOW]) == len(ROWS)
    for answered, shadow in zip(by_role[wb_serve.CHAMPION], by_role[wb_serve.SHADOW]):
        assert shadow.request_id == answered.request_id and shadow.key == answered.key
        assert shadow.version == 2 and shadow.status == 200 and shadow.records == answered.records
        assert shadow.predictions == wb_serve.score(challenger.current, answered.records)
        assert shadow.predictions != answered.predictions  # the flipped model: a real second opinion
    metrics = shadowed_client.get("/metrics").text
    assert f'wb_requests_total{{alias="production",version="2",role="shadow",status="200"}} {len(ROWS)}' in metrics


def test_the_shadow_scores_after_the_answer_is_sent(two_versions):
    _, app, _, _ = _client(two_versions, 0.0, shadow=True)
    events: list[str] = []
    app.state.listeners.append(lambda served: events.append(f"listener:{served.role}"))
    body = json.dumps([ROW]).encode()

    async def call() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json"),
                                              (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        chunks = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            return chunks.pop(0) if chunks else {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.body" and not message.get("more_body"):
                events.append("answer sent")

        await app(scope, receive, send)

    asyncio.run(call())
    assert events == ["listener:champion", "answer sent", "listener:shadow"]


def test_a_canaried_request_is_not_shadowed(two_versions):
    client, app, _, _ = _client(two_versions, 0.5, shadow=True)
    records: list[wb_serve.Served] = []
    app.state.listeners.append(records.append)
    with client:
        for i in range(100):
            client.post("/predict", json=[ROW], headers={"X-Request-Key": f"c{i}"})
    roles = [s.role for s in records]
    assert roles.count(wb_serve.CHALLENGER) > 0
    assert roles.count(wb_serve.SHADOW) == roles.count(wb_serve.CHAMPION)
    shadowed = {s.request_id for s in records if s.role == wb_serve.SHADOW}
    assert shadowed == {s.request_id for s in records if s.role == wb_serve.CHAMPION}


def test_health_reports_the_challenger(two_versions):
    client = _client(two_versions, 0.1, shadow=True)[0]
    challenger = client.get("/health").json()["challenger"]
    assert challenger["alias"] == "staging" and challenger["version"] == 2
    assert challenger["share"] == 0.1 and challenger["shadow"] is True and challenger["active"] is True


def test_no_staging_version_sends_all_traffic_to_the_champion(tmp_path):
    _release(tmp_path, "production", 1)
    client, app, _, _ = _client(tmp_path, 1.0, shadow=True)
    records: list[wb_serve.Served] = []
    app.state.listeners.append(records.append)
    with client:
        for i in range(20):
            response = client.post("/predict", json=[ROW], headers={"X-Request-Key": f"k{i}"})
            assert response.status_code == 200 and response.json()["version"] == 1
            assert response.headers["X-Model-Role"] == wb_serve.CHAMPION
        health = client.get("/health").json()
    assert {s.role for s in records} == {wb_serve.CHAMPION}
    assert health["healthy"] and health["challenger"]["active"] is False
    assert "no release" in health["challenger"]["state"]


def test_staging_on_productions_version_sends_all_traffic_to_the_champion(tmp_path):
    _release(tmp_path, "production", 1)
    _release(tmp_path, "staging", 1)
    client = _client(tmp_path, 1.0, shadow=True)[0]
    roles = {client.post("/predict", json=[ROW], headers={"X-Request-Key": f"k{i}"}).headers["X-Model-Role"]
             for i in range(20)}
    assert roles == {wb_serve.CHAMPION}
    health = client.get("/health").json()["challenger"]
    assert health["active"] is False and "champion's own version (1)" in health["state"]


def _broken_release(root, alias: str, version: int) -> None:
    model = root / f"broken-{version}.txt"
    model.write_text("not a lightgbm model\n")
    pointers = DeployPointers(root / "deploy")
    release, _ = pointers.prepare("p", version, version, str(model), hashlib.sha256(model.read_bytes()).hexdigest())
    pointers.activate("p", alias, release, {"version": version, "run_id": version})


def test_a_challenger_that_fails_to_load_never_touches_productions_answers(tmp_path):
    _release(tmp_path, "production", 1)
    _broken_release(tmp_path, "staging", 2)
    reference = TestClient(wb_serve.build_app(_holders(tmp_path)[0], "production"))
    client = _client(tmp_path, 1.0, shadow=True)[0]
    for i in range(20):
        headers = {"X-Request-Key": f"k{i}", "X-Request-Id": f"r{i}"}
        response = client.post("/predict", json=[ROW], headers=headers)
        assert response.status_code == 200 and response.headers["X-Model-Role"] == wb_serve.CHAMPION
        assert response.content == reference.post("/predict", json=[ROW], headers=headers).content
    health = client.get("/health").json()
    assert health["healthy"] and health["challenger"]["active"] is False
    assert "could not load" in health["challenger"]["state"]


def test_the_challenger_is_hot_swapped_and_a_broken_swap_keeps_the_old_challenger(two_versions):
    client, _, champion, challenger = _client(two_versions, 1.0, shadow=False)
    assert client.post("/predict", json=[ROW]).json()["version"] == 2
    _release(two_versions, "staging", 3)
    assert challenger.refresh()
    response = client.post("/predict", json=[ROW])
    assert response.json()["version"] == 3 and response.headers["X-Model-Role"] == wb_serve.CHALLENGER
    _broken_release(two_versions, "staging", 4)
    assert not challenger.refresh()
    assert client.post("/predict", json=[ROW]).json()["version"] == 3
    health = client.get("/health").json()
    assert health["version"] == 1 and health["challenger"]["version"] == 3
    assert "could not load" in health["challenger"]["problem"]
    assert champion.swaps == 1


def test_the_canary_share_must_be_a_fraction(two_versions):
    champion, challenger = _holders(two_versions)
    with pytest.raises(ValueError, match="between 0 and 1"):
        wb_serve.CanaryRouter(champion, challenger, 1.5, False)


BASE = '[project]\nname = "p"\n[stages.train]\ncommand = "python train.py"\n'


def test_serving_canary_and_shadow_are_read_from_the_manifest():
    serving = parse_manifest(BASE + "[serving]\ncanary = 0.1\nshadow = true\n").serving
    assert serving.canary == 0.1 and serving.shadow is True
    default = parse_manifest(BASE).serving
    assert default.canary == 0.0 and default.shadow is False


@pytest.mark.parametrize("line, words", [
    ("canary = 1.5", "serving.canary: must be at least 0 and at most 1"),
    ("canary = -0.1", "serving.canary: must be at least 0 and at most 1"),
    ('canary = "10%"', "serving.canary: must be"),
    ('shadow = "yes"', "serving.shadow: must be"),
])
def test_a_bad_canary_or_shadow_names_the_key(line, words):
    with pytest.raises(ManifestError) as info:
        parse_manifest(BASE + f"[serving]\n{line}\n")
    assert words in str(info.value)

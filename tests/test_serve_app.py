"""The serving module (runtime/wb_serve.py) in-process: a real LightGBM model in a real deploy
folder written by DeployPointers, requests through FastAPI's TestClient. The container test is
tests/test_serve_docker.py."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

lightgbm = pytest.importorskip("lightgbm")
pd = pytest.importorskip("pandas")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from workbench.adapters.deploy import DeployPointers  # noqa: E402
from workbench.runtime import wb_serve  # noqa: E402

SCHEMA = {"columns": {"tenure": "number", "contract": "string", "senior": "number", "id": "string"}}


def _train(path: Path, flip: bool = False, drop: tuple[str, ...] = ()) -> None:
    rows = 200
    frame = pd.DataFrame({
        "tenure": [float(i % 50) for i in range(rows)],
        "contract": pd.Categorical(["monthly" if i % 3 else "yearly" for i in range(rows)]),
        "senior": [float(i % 2) for i in range(rows)],
    })
    frame = frame.drop(columns=list(drop))
    label = [(1 if (i % 50) < 20 else 0) ^ int(flip) for i in range(rows)]
    booster = lightgbm.train({"objective": "binary", "verbosity": -1, "min_data_in_leaf": 5},
                             lightgbm.Dataset(frame, label), num_boost_round=5)
    booster.save_model(str(path))


def _release(root: Path, alias: str, version: int, flip: bool = False, drop: tuple[str, ...] = (),
             schema: dict | None = None) -> None:
    model = root / f"model-{version}.txt"
    _train(model, flip, drop)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    pointers = DeployPointers(root / "deploy")
    release, check = pointers.prepare("p", version, version, str(model), digest)
    assert check.ok, check.problem
    documents = {"schema.json": json.dumps(schema)} if schema is not None else None
    pointers.activate("p", alias, release, {"version": version, "run_id": version}, documents)


@pytest.fixture
def served(tmp_path):
    _release(tmp_path, "production", 1)
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    holder = wb_serve.ModelHolder(str(tmp_path / "deploy" / "p" / "production"), None, None,
                                  wb_serve.Schema.load(str(schema_file)))
    assert holder.refresh()
    app = wb_serve.build_app(holder, "production", max_body=4096)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield tmp_path, holder, client


ROW = {"tenure": 3, "contract": "monthly", "senior": 0}


def test_predict_json_records_and_list_answer_version_and_request_id(served):
    _, _, client = served
    for body in ({"records": [ROW, ROW | {"tenure": 40}]}, [ROW]):
        response = client.post("/predict", json=body)
        assert response.status_code == 200, response.text
        data = response.json()
        assert len(data["predictions"]) == len(body["records"] if isinstance(body, dict) else body)
        assert all(0.0 <= p <= 1.0 for p in data["predictions"])
        assert data["version"] == 1
        assert response.headers["X-Model-Version"] == "1"
        assert response.headers["X-Request-Id"] == data["request_id"]


def test_predict_csv_and_optional_known_column(served):
    _, _, client = served
    response = client.post("/predict", content="tenure,contract,senior,id\n3,monthly,0,a\n40,yearly,1,b\n",
                           headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2


def test_health_names_alias_version_and_since(served):
    _, _, client = served
    data = client.get("/health").json()
    assert data["alias"] == "production" and data["version"] == 1 and data["healthy"] and data["since"]


@pytest.mark.parametrize("body, headers, status, words", [
    (b"{not json", {"Content-Type": "application/json"}, 400, "not valid JSON"),
    (b'{"rows": []}', {"Content-Type": "application/json"}, 400, '"records"'),
    (b'[1, 2]', {"Content-Type": "application/json"}, 400, "record 0 is not an object"),
    (json.dumps([ROW | {"colour": "red"}]).encode(), {"Content-Type": "application/json"}, 422,
     "unknown column(s) colour"),
    (json.dumps([{"tenure": 3, "contract": "monthly"}]).encode(), {"Content-Type": "application/json"}, 422,
     "missing column(s) senior"),
    (json.dumps([ROW | {"tenure": "three"}]).encode(), {"Content-Type": "application/json"}, 422,
     "'tenure' must be a number"),
    (json.dumps([ROW | {"contract": 5}]).encode(), {"Content-Type": "application/json"}, 422,
     "'contract' must be a string"),
    (b"tenure,contract,senior\nx,monthly,0\n", {"Content-Type": "text/csv"}, 422, "'tenure' must be a number"),
    (b"[]", {"Content-Type": "application/json"}, 422, "no records"),
    (b"a", {"Content-Type": "application/xml"}, 415, "unsupported content type"),
    (json.dumps([ROW] * 200).encode(), {"Content-Type": "application/json"}, 413, "more than the 4096"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(served, body, headers, status, words):
    _, _, client = served
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert response.headers["X-Request-Id"]
    assert client.get("/health").status_code == 200  # still serving


def test_a_predict_function_that_raises_is_a_422_not_a_500(tmp_path):
    _release(tmp_path, "production", 1)
    project = tmp_path / "project"
    (project / "stages").mkdir(parents=True)
    (project / "stages" / "predict.py").write_text(
        "def load(path):\n    return open(path).read()[:10]\n"
        "def predict(frame, model):\n"
        "    if (frame['tenure'] < 0).any():\n        raise ValueError('tenure below zero')\n"
        "    return [len(model)] * len(frame)\n")
    holder = wb_serve.ModelHolder(str(tmp_path / "deploy" / "p" / "production"), str(project),
                                  "stages/predict.py:predict", None)
    assert holder.refresh()
    with TestClient(wb_serve.build_app(holder, "production"), raise_server_exceptions=False) as client:
        ok = client.post("/predict", json=[{"tenure": 1}])
        assert ok.status_code == 200 and ok.json()["predictions"] == [10]
        bad = client.post("/predict", json=[{"tenure": -1}])
        assert bad.status_code == 422 and "tenure below zero" in bad.json()["error"]


def test_hot_swap_under_load_fails_no_request_and_switches_once(served):
    root, holder, client = served
    failures, versions = [], []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            response = client.post("/predict", json=[ROW])
            if response.status_code != 200:
                failures.append(response.text)
            else:
                versions.append(response.json()["version"])

    worker = threading.Thread(target=load)
    worker.start()
    try:
        while len(versions) < 20:
            pass
        _release(root, "production", 2, flip=True)
        assert holder.refresh()
        seen = len(versions)
        while len(versions) < seen + 20:
            pass
    finally:
        stop.set()
        worker.join()
    assert failures == []
    switches = sum(1 for a, b in zip(versions, versions[1:]) if a != b)
    assert versions[0] == 1 and versions[-1] == 2 and switches == 1


def test_a_broken_release_leaves_the_old_model_serving(served):
    root, holder, client = served
    model = root / "broken.txt"
    model.write_text("not a lightgbm model\n")
    pointers = DeployPointers(root / "deploy")
    release, _ = pointers.prepare("p", 9, 9, str(model), hashlib.sha256(model.read_bytes()).hexdigest())
    pointers.activate("p", "production", release, {"version": 9, "run_id": 9})
    assert not holder.refresh()
    health = client.get("/health").json()
    assert health["version"] == 1 and "could not load" in health["problem"]
    assert client.post("/predict", json=[ROW]).json()["version"] == 1


def test_a_null_number_is_a_missing_value_not_text(served):
    _, _, client = served
    response = client.post("/predict", json=[ROW | {"tenure": None}])
    assert response.status_code == 200, response.text


def test_required_columns_follow_the_served_version(served):
    root, holder, client = served
    without_senior = {"tenure": 3, "contract": "monthly"}
    refused = client.post("/predict", json=[without_senior])
    assert refused.status_code == 422 and "missing column(s) senior" in refused.json()["error"]
    _release(root, "production", 2, drop=("senior",))
    assert holder.refresh()
    answered = client.post("/predict", json=[without_senior])
    assert answered.status_code == 200 and answered.json()["version"] == 2


def test_a_release_that_records_its_schema_is_checked_against_it_after_a_swap(served):
    root, holder, client = served
    with_region = ROW | {"region": "north"}
    refused = client.post("/predict", json=[with_region])
    assert refused.status_code == 422 and "unknown column(s) region" in refused.json()["error"]
    # Version 2 was trained on data with a region column: its release says so.
    _release(root, "production", 2, schema={"columns": SCHEMA["columns"] | {"region": "string"}})
    assert holder.refresh()
    answered = client.post("/predict", json=[with_region])
    assert answered.status_code == 200 and answered.json()["version"] == 2
    mistyped = client.post("/predict", json=[ROW | {"region": 7}])
    assert mistyped.status_code == 422 and "'region' must be a string" in mistyped.json()["error"]


def test_metrics_count_requests_statuses_latency_and_rows_per_version(served):
    root, holder, client = served
    client.post("/predict", json=[ROW, ROW])
    client.post("/predict", json=[ROW | {"colour": "red"}])
    _release(root, "production", 2, flip=True)
    assert holder.refresh()
    client.post("/predict", json=[ROW])
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    lines = set(response.text.splitlines())
    for line in ('wb_requests_total{alias="production",version="1",role="champion",status="200"} 1',
                 'wb_requests_total{alias="production",version="1",role="champion",status="422"} 1',
                 'wb_requests_total{alias="production",version="2",role="champion",status="200"} 1',
                 'wb_rows_predicted_total{alias="production",version="1",role="champion"} 2',
                 'wb_rows_predicted_total{alias="production",version="2",role="champion"} 1',
                 'wb_request_seconds_bucket{alias="production",version="1",role="champion",le="+Inf"} 2',
                 'wb_request_seconds_count{alias="production",version="2",role="champion"} 1',
                 'wb_model_version{alias="production"} 2',
                 'wb_model_swaps_total{alias="production"} 2'):
        assert line in lines, line


def test_a_callers_request_id_is_kept_only_when_tame(served):
    _, _, client = served
    kept = client.post("/predict", json=[ROW], headers={"X-Request-Id": "order-42"})
    assert kept.json()["request_id"] == "order-42" and kept.headers["X-Request-Id"] == "order-42"
    replaced = client.post("/predict", json=[ROW], headers={"X-Request-Id": "x" * 500})
    generated = replaced.json()["request_id"]
    assert len(generated) == 32 and replaced.headers["X-Request-Id"] == generated

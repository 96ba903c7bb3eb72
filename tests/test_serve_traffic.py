"""The traffic log and POST /feedback of the serving module (runtime/wb_serve.py with
runtime/wb_traffic.py) in-process: a real LightGBM model in a real deploy folder, requests through
FastAPI's TestClient, segments read back from the real folder."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("lightgbm")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from tests.test_serve_app import ROW, SCHEMA, _release  # noqa: E402
from workbench.runtime import wb_serve, wb_traffic  # noqa: E402


def _holder(tmp_path: Path) -> wb_serve.ModelHolder:
    _release(tmp_path, "production", 1)
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    holder = wb_serve.ModelHolder(str(tmp_path / "deploy" / "p" / "production"), None, None,
                                  wb_serve.Schema.load(str(schema_file)))
    assert holder.refresh()
    return holder


def _serve(tmp_path: Path, **journal_options):
    folder = tmp_path / "traffic"
    journal = wb_traffic.Journal(str(folder), **journal_options)
    app = wb_serve.build_app(_holder(tmp_path), "production", max_body=4096, traffic=journal)
    return folder, journal, app


@pytest.fixture
def logged(tmp_path):
    folder, journal, app = _serve(tmp_path)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield folder, journal, client
    journal.close()


def _closed(folder: Path, kind: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if wb_traffic.SEGMENT_NAME.fullmatch(p.name) and p.name.startswith(kind))


def _lines(folder: Path, kind: str) -> list[dict]:
    return [json.loads(line) for path in _closed(folder, kind) for line in path.read_text().splitlines()]


def test_every_request_class_is_journaled_with_its_fields(logged):
    folder, journal, client = logged
    sent = [  # (body, content type, status)
        (json.dumps({"records": [ROW, ROW | {"tenure": 40}]}), "application/json", 200),
        ("{not json", "application/json", 400),
        ('{"rows": []}', "application/json", 400),
        (json.dumps([ROW | {"colour": "red"}]), "application/json", 422),
        (json.dumps([ROW | {"tenure": float("nan")}]), "application/json", 200),
        ("a", "application/xml", 415),
        (json.dumps([ROW] * 200), "application/json", 413),
    ]
    answers = []
    for body, kind, status in sent:
        response = client.post("/predict", content=body, headers={"Content-Type": kind, "X-Request-Key": "k1"})
        assert response.status_code == status, response.text
        answers.append(response.json())
    journal.close()
    lines = _lines(folder, "requests")
    assert [line["status"] for line in lines] == [status for _, _, status in sent]
    assert [line["request_id"] for line in lines] == [a["request_id"] for a in answers]
    for line, answer in zip(lines, answers):
        assert set(line) == {"request_id", "key", "alias", "role", "version", "status", "seconds", "at",
                             "inputs", "outputs", "error"}
        assert line["key"] == "k1" and line["alias"] == "production" and line["role"] == "champion"
        assert line["version"] == 1 and line["seconds"] > 0 and abs(line["at"] - time.time()) < 60
        if line["status"] == 200:
            assert line["outputs"] == answer["predictions"] and line["error"] is None
        else:
            assert line["outputs"] is None and line["error"] == answer["error"]
    assert lines[0]["inputs"] == [ROW, ROW | {"tenure": 40}]
    assert lines[4]["inputs"][0]["tenure"] is None  # NaN in, strict JSON out
    assert not list(folder.glob(".*.part"))


def test_segments_close_by_rows_with_names_that_never_repeat(tmp_path):
    folder, journal, app = _serve(tmp_path, segment_rows=3)
    with TestClient(app) as client:
        for _ in range(7):
            assert client.post("/predict", json=[ROW]).status_code == 200
        assert journal.flush()
        assert [len(p.read_text().splitlines()) for p in _closed(folder, "requests")] == [3, 3]
        assert len(list(folder.glob(".requests-*.jsonl.part"))) == 1  # the 7th line, still open
    journal.close()
    segments = _closed(folder, "requests")
    assert [len(p.read_text().splitlines()) for p in segments] == [3, 3, 1]
    pid = str(os.getpid())
    assert all(p.name.split("-")[2] == f"{pid}.jsonl" for p in segments)


def test_segments_close_by_age(tmp_path):
    folder, journal, app = _serve(tmp_path, segment_s=0.3)
    with TestClient(app) as client:
        assert client.post("/predict", json=[ROW]).status_code == 200
        deadline = time.monotonic() + 5
        while not _closed(folder, "requests"):
            assert time.monotonic() < deadline, list(folder.iterdir())
            time.sleep(0.05)
        assert not list(folder.glob(".*.part"))
    journal.close()


def test_a_full_queue_drops_and_counts_and_never_blocks_a_request(tmp_path):
    folder, journal, app = _serve(tmp_path, queue_rows=2)
    release = threading.Event()
    real_write = journal._write

    def stuck_write(kind, item):  # a slow disk: the writer holds the first record until released
        release.wait(10)
        real_write(kind, item)

    journal._write = stuck_write
    with TestClient(app) as client:
        started = time.perf_counter()
        codes = [client.post("/predict", json=[ROW]).status_code for _ in range(6)]
        assert codes == [200] * 6 and time.perf_counter() - started < 5
        assert journal.dropped >= 3  # the writer holds one, two fit in the queue, the rest are dropped
        dropped = journal.dropped
        assert f'wb_traffic_dropped_total{{alias="production"}} {dropped}' in client.get("/metrics").text
        assert client.get("/health").json()["traffic"]["dropped"] == dropped
        release.set()
        assert journal.flush()
    journal.close()
    assert len(_lines(folder, "requests")) == 6 - dropped


def test_a_disk_error_stops_the_log_in_health_and_predictions_go_on(tmp_path):
    folder, journal, app = _serve(tmp_path)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/predict", json=[ROW]).status_code == 200
        assert journal.flush()
        part = next(folder.glob(".requests-*.part"))
        fd = os.open("/dev/full", os.O_WRONLY)  # every write to /dev/full fails as on a full disk
        os.dup2(fd, journal._segments["requests"]._fd)  # the open segment now lives on a full disk
        os.close(fd)
        for _ in range(3):
            assert client.post("/predict", json=[ROW]).status_code == 200
        assert journal.flush()
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["healthy"]
        assert "No space left on device" in health.json()["traffic_problem"]
        assert 'wb_traffic_up{alias="production"} 0' in client.get("/metrics").text
        response = client.post("/feedback", json={"request_id": "r1", "label": 1})
        assert response.status_code == 503 and "No space left" in response.json()["error"]
        assert part.exists()


def test_an_unwritable_folder_is_a_problem_in_health_not_a_failure(tmp_path):
    (tmp_path / "traffic").write_text("a file where the folder should be")
    _, _, app = _serve(tmp_path)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/predict", json=[ROW]).status_code == 200
        assert "cannot use the traffic folder" in client.get("/health").json()["traffic_problem"]


@pytest.mark.parametrize("body, accepted", [
    ({"request_id": "r1", "label": 1}, [("r1", [1])]),
    ({"request_id": "r2", "labels": [0, 1, None]}, [("r2", [0, 1, None])]),
    ([{"request_id": "r3", "label": "yes"}, {"request_id": "r4", "labels": [True]}], [("r3", ["yes"]), ("r4", [True])]),
    ({"feedback": [{"request_id": "r5", "label": 0.5}]}, [("r5", [0.5])]),
])
def test_feedback_shapes_are_accepted_into_feedback_segments(logged, body, accepted):
    folder, journal, client = logged
    response = client.post("/feedback", json=body)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": len(accepted)}
    journal.close()
    lines = _lines(folder, "feedback")
    assert [(line["request_id"], line["labels"]) for line in lines] == accepted
    assert all(set(line) == {"request_id", "labels", "at"} and abs(line["at"] - time.time()) < 60 for line in lines)


@pytest.mark.parametrize("body, status, words", [
    (b"{nope", 400, "not valid JSON"),
    (b'{"label": 1}', 422, "no request_id"),
    (b'{"request_id": "../../etc", "label": 1}', 422, "request_id must be 1-128"),
    (b'{"request_id": "' + b"a" * 129 + b'", "label": 1}', 422, "request_id must be 1-128"),
    (b'{"request_id": 7, "label": 1}', 422, "request_id must be 1-128"),
    (b'{"request_id": "r", "labels": 1}', 422, '"labels" must be a list'),
    (b'{"request_id": "r"}', 422, "not neither"),
    (b'{"request_id": "r", "label": 1, "labels": [1]}', 422, "not both"),
    (b'{"request_id": "r", "label": {"a": 1}}', 422, "a label must be"),
    (b'{"request_id": "r", "label": 1, "colour": 2}', 422, "unknown key(s) colour"),
    (b'[{"request_id": "r", "label": 1}, 5]', 400, "feedback item 1 is not an object"),
    (b"[]", 422, "no feedback"),
    (b'{"feedback": 3}', 400, "only a list"),
    (json.dumps({"request_id": "r", "labels": [1] * 3000}).encode(), 413, "more than the 4096"),
])
def test_malformed_feedback_gets_a_4xx_naming_the_problem(logged, body, status, words):
    folder, journal, client = logged
    response = client.post("/feedback", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    journal.close()
    assert _lines(folder, "feedback") == []


def test_feedback_without_a_traffic_log_is_a_409_saying_why(tmp_path):
    app = wb_serve.build_app(_holder(tmp_path), "production")
    with TestClient(app) as client:
        response = client.post("/feedback", json={"request_id": "r1", "label": 1})
        assert response.status_code == 409
        assert "keeps no traffic log" in response.json()["error"]
        assert "wb_traffic" not in client.get("/metrics").text
        assert "traffic" not in client.get("/health").json()


def test_a_killed_servers_part_segment_is_closed_by_the_next_one(tmp_path):
    folder = tmp_path / "traffic"
    folder.mkdir()
    (folder / ".requests-1700000000000-7.jsonl.part").write_text('{"a": 1}\n{"a": 2}\n{"a"')
    (folder / ".feedback-1700000000001-7.jsonl.part").write_text('{"half')
    journal = wb_traffic.Journal(str(folder))
    journal.close()
    assert sorted(p.name for p in folder.iterdir()) == ["requests-1700000000000-7.jsonl"]
    assert (folder / "requests-1700000000000-7.jsonl").read_text() == '{"a": 1}\n{"a": 2}\n'


def test_a_part_segment_whose_last_line_is_longer_than_a_read_keeps_its_complete_lines(tmp_path):
    folder = tmp_path / "traffic"
    folder.mkdir()
    long_line = b'{"inputs": "' + b"x" * 3000 + b'"}\n'
    part = folder / ".requests-1700000000000-7.jsonl.part"
    part.write_bytes(long_line + long_line + b'{"cut off by a kill' + b"y" * 2500)
    fd = os.open(part, os.O_RDONLY)
    try:
        assert wb_traffic._after_last_newline(fd, part.stat().st_size, chunk=1000) == 2 * len(long_line)
    finally:
        os.close(fd)
    assert wb_traffic.recover_parts(str(folder)) == 1
    assert (folder / "requests-1700000000000-7.jsonl").read_bytes() == long_line + long_line

"""The traffic log of a real serving container: the example served with the CLI, requests and
feedback over real HTTP, `workbench serve stop`, then the closed segments read on the host with
adapters/traffic_files.py; the traffic folder is the container's only writable mount."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.test_cli import wb
from tests.test_registry_cli import P, ok
from tests.test_serve_docker import _post, _rows, served_example  # noqa: F401 - a fixture
from workbench.adapters.traffic_files import closed_segments, open_segment, traffic_folder

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _feedback(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/feedback", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def _read(folder, kind: str) -> list[dict]:
    lines = []
    for path in closed_segments(folder, kind):
        with open_segment(path) as fh:
            lines += [json.loads(line) for line in fh.read().splitlines()]
    return lines


def test_requests_and_feedback_are_logged_to_the_only_writable_mount(served_example, docker_engine):
    ws, servers, server = served_example
    production = servers["production"]
    rows = _rows(ws, 20)
    answers = []
    for row in rows:
        code, body, _ = _post(production["url"], json.dumps([row]).encode())
        assert code == 200, body
        answers.append(body)
    assert _feedback(production["url"], {"request_id": answers[0]["request_id"], "label": 1}) == (202, {"accepted": 1})
    assert _feedback(production["url"], {"feedback": [{"request_id": a["request_id"], "labels": [0]}
                                                      for a in answers[1:5]]}) == (202, {"accepted": 4})

    container = docker_engine.containers.get(production["container"])
    writable = [m["Destination"] for m in container.attrs["Mounts"] if m["RW"]]
    assert writable == ["/wb/traffic"]
    for path in ("/probe", "/wb/deploy/probe", "/wb/lib/probe", "/wb/schema/probe"):
        code, output = container.exec_run(["python", "-c", f"open({path!r}, 'w')"])
        assert code != 0 and b"Read-only file system" in output, (path, output)
    code, output = container.exec_run(["python", "-c", "open('/wb/traffic/probe', 'w').write('x')"])
    assert code == 0, output
    health = json.loads(urllib.request.urlopen(production["url"] + "/health", timeout=10).read())
    assert health["traffic"]["dropped"] == 0 and "traffic_problem" not in health

    ok(wb(ws, "serve", "stop", P))
    assert server.wait(timeout=60) == 0
    folder = traffic_folder(ws / ".workbench", P, "production")
    assert folder == ws / ".workbench" / "serving" / P / "traffic" / "production"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert not list(folder.glob(".*.part"))  # SIGTERM closed the open segments
    requests = _read(folder, "requests")
    assert [line["request_id"] for line in requests] == [a["request_id"] for a in answers]
    for line, row, answer in zip(requests, rows, answers):
        assert line["inputs"] == [row] and line["outputs"] == answer["predictions"]
        assert line["version"] == 1 and line["status"] == 200 and line["role"] == "champion"
    feedback = _read(folder, "feedback")
    assert [(line["request_id"], line["labels"]) for line in feedback] == \
        [(answers[0]["request_id"], [1])] + [(a["request_id"], [0]) for a in answers[1:5]]
    assert _read(traffic_folder(ws / ".workbench", P, "staging"), "requests") == []

"""The serving monitor on the example project (telco-churn): served traffic drawn by its own
tools/make_batch.py, typed as the server's schema types requests, becomes a drift batch that is
checked like any batch: a drifted one is recorded as drifted (local runs), and one whose
feedback says the model got worse is scored by the project's score command, decays, and retrains
in a real Docker run with trigger drift."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import pytest

from tests.test_drift_core import EXAMPLE
from tests.traffic_segments import feedback_line, request_line, write_segment
from workbench.adapters.traffic_log import FEEDBACK, REQUESTS, traffic_dir
from workbench.core.model import RunStatus, StageStatus, Trigger
from workbench.services.drift import DriftService
from workbench.services.serving import training_schema
from workbench.services.serving_monitor import ServingMonitor
from workbench.services.session import WorkbenchSession

NOW = 1_700_000_000.0
SERVING = "\n[serving]\nbatch_rows = 1000\n"


def example(tmp_path, runner: str) -> WorkbenchSession:
    project = tmp_path / "telco-churn"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("incoming"))
    manifest = project / "workbench.toml"
    # The latency gate measures the machine as much as the model: a loaded CI box is not a slow model.
    manifest.write_text(manifest.read_text().replace('latency_p95_ms = "<= 50"', 'latency_p95_ms = "<= 1000"')
                        + SERVING)
    session = WorkbenchSession(tmp_path, runner=runner)
    record = session.run("telco-churn")
    assert record.status is RunStatus.SUCCEEDED and record.gates_passed, record.reason
    version = session.last_registration[0].version
    for alias in ("staging", "production"):
        assert session.registry.promote("telco-churn", version, alias, user="test").applied
    return session


def served(tmp_path, kind: str, rows: int = 1000, flip_labels: bool = False) -> tuple[list[dict], list[dict]]:
    """(logged requests of 10 rows each, their feedback), from make_batch.py rows typed as the
    server types a request's values."""
    out = tmp_path / f"{kind}.csv"
    subprocess.run([sys.executable, str(EXAMPLE / "tools" / "make_batch.py"), "--kind", kind, "--labels", "--rows",
                    str(rows), "--out", str(out)], check=True, capture_output=True)
    kinds = training_schema(EXAMPLE / "data" / "churn.csv", "churn")["columns"]
    with open(out, newline="") as fh:
        table = list(csv.DictReader(fh))
    requests, feedback = [], []
    for i in range(0, len(table), 10):
        chunk = table[i:i + 10]
        inputs = [{c: as_served(r[c], kinds[c]) for c in kinds} for r in chunk]
        request = request_line(inputs, [0.5] * len(chunk), at=NOW + i)
        labels = [r["churn"] for r in chunk]
        if flip_labels:
            labels = ["No" if label == "Yes" else "Yes" for label in labels]
        requests.append(request)
        feedback.append(feedback_line(request, labels))
    return requests, feedback


def as_served(text: str, kind: str):
    if kind != "number":
        return text
    if not text.strip():
        return None  # a blank total_charges: a missing value
    number = float(text)
    return int(number) if number.is_integer() else number


@pytest.mark.slow
def test_drifted_example_traffic_is_a_drifted_batch_recorded(tmp_path):
    session = example(tmp_path, "local")
    folder = traffic_dir(session.workspace.state_dir, "telco-churn", "production")
    requests, _ = served(tmp_path, "drifted")
    write_segment(folder, REQUESTS, requests, opened_ms=1000)
    said = []
    monitor = ServingMonitor(session, "telco-churn", said.append)
    batch = monitor.tick(NOW)
    assert batch.rows == 1000 and not batch.labelled
    monitor.wait(120)
    recorded, = DriftService(session).batches("telco-churn", with_reports=True)
    assert recorded.rows == 1000 and recorded.report.drifted and recorded.path == str(batch.path)
    assert "contract" in recorded.report.drifted_columns
    assert said[0].startswith("traffic batch 1 (1,000 rows, v1): drifted (") and "no labels" in said[0], said
    assert monitor.retrains == []


@pytest.mark.docker
@pytest.mark.slow
def test_example_traffic_whose_feedback_says_worse_decays_and_retrains_in_docker(tmp_path, docker_base_image):
    session = example(tmp_path, "docker")
    folder = traffic_dir(session.workspace.state_dir, "telco-churn", "production")
    requests, feedback = served(tmp_path, "clean", flip_labels=True)
    write_segment(folder, REQUESTS, requests, opened_ms=1000)
    write_segment(folder, FEEDBACK, feedback, opened_ms=2000)
    said = []
    monitor = ServingMonitor(session, "telco-churn", said.append)
    assert not monitor.tick(NOW).labelled  # the traffic batch: inputs only, clean
    monitor.wait(600)
    assert monitor.tick(NOW + 3700).labelled  # batch_minutes later: the labelled rows, with the target
    monitor.wait(600)
    _, (_, outcome) = monitor.outcomes
    report = outcome.report
    assert not report.drifted and report.decay.metric == "auc" and report.decay.decayed and report.decay.value < 0.3
    assert outcome.decision.retrain and outcome.decision.cause == "decay"
    record, = monitor.retrains
    assert record.trigger is Trigger.DRIFT and record.runner == "docker"
    # Trained for real on the data plus the batch; with every label of the batch flipped, the new
    # model may well fail the auc gate: the policy retrains, the gates still judge.
    assert [s.status for s in record.stages] == [StageStatus.SUCCEEDED] * 3, record.reason
    assert record.status in (RunStatus.SUCCEEDED, RunStatus.GATE_FAILED), record.reason
    assert record.datasets[0].row_count == 7043 + 1000
    assert any(f"-> retraining (run {record.id})" in line for line in said), said
    assert DriftService(session).batches("telco-churn")[0].retrain_run_id == record.id


@pytest.mark.docker
@pytest.mark.slow
def test_workbench_serve_turns_logged_traffic_into_a_checked_batch_on_its_console(tmp_path, docker_engine,
                                                                                  monkeypatch):
    """Through the front end: the foreground `workbench serve` loop ticks the monitor."""
    import os
    import threading
    import time

    from tests.test_cli import wb
    from tests.test_registry_cli import ok

    ws = tmp_path / "ws"
    project = ws / "telco-churn"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("incoming"))
    manifest = project / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('latency_p95_ms = "<= 50"', 'latency_p95_ms = "<= 1000"')
                        + "\n[serving]\nbatch_rows = 100\n")
    monkeypatch.setenv("WORKBENCH_USER", "ana")
    ok(wb(ws, "run", "telco-churn", "--runner", "local", "-q"))
    ok(wb(ws, "promote", "telco-churn", "1", "--to", "staging", "--yes"))
    ok(wb(ws, "promote", "telco-churn", "1", "--to", "production", "--yes"))
    server = subprocess.Popen([sys.executable, "-m", "workbench", "--workspace", str(ws), "serve", "telco-churn",
                               "--alias", "production"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "COLUMNS": "300"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any(line.startswith("Ctrl-C stops") for line in lines):
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, lines
            time.sleep(0.5)
        requests, _ = served(tmp_path, "drifted", rows=100)
        write_segment(traffic_dir(ws / ".workbench", "telco-churn", "production"), REQUESTS, requests,
                      opened_ms=1000, pid=4242)
        deadline = time.monotonic() + 120
        while not any(line.startswith("traffic batch 1") for line in lines):
            assert server.poll() is None, (lines, server.communicate())
            assert time.monotonic() < deadline, lines
            time.sleep(0.5)
    finally:
        wb(ws, "serve", "stop")
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
    said = next(line for line in lines if line.startswith("traffic batch 1"))
    assert said.startswith("traffic batch 1 (100 rows, v1): drifted (") and "no labels (churn)" in said, said
    listed = ok(wb(ws, "drift", "telco-churn")).stdout
    assert "production-" in listed and "✗" in listed

"""Alerts (issue 17 item 3): events of real runs, promotions and served endpoints go to a real
local HTTP receiver, from a durable outbox in the lineage store, once each, in order, after the
receiver was down for a while; a dead receiver costs a run nothing; `[notify]` errors name the
file and the key; `workbench notify test | status` from the command line."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.notify_receiver import Receiver, free_port
from tests.test_cli import wb
from tests.test_pipeline_local import MANIFEST, write_project
from tests.test_serving_stats import metrics_text, series
from workbench.core.alert_events import run_alerts
from workbench.core.errors import ManifestError
from workbench.core.gates import GateResult
from workbench.core.model import RunRecord, RunStatus, StageResult, StageStatus, Trigger
from workbench.core.notify_config import ServingThresholds, parse_workspace_notify
from workbench.services.serving import ServerStatus
from workbench.services.serving_alarms import CHECK_S, ServingAlarm
from workbench.services.serving_stats import ScrapeWindow, parse_metrics
from workbench.services.session import WorkbenchSession

FAILING_GATE = {"params.toml": "[fit]\nscale = 0.2\n"}  # score 0.1, the gate wants >= 0.5
FAILING_STAGE = "import sys\nprint('boom')\nsys.exit(3)\n"


def notify_toml(*hooks: str, retry: float = 0.2, extra: str = "") -> str:
    return (f"[cluster]\nscheduler = 'tcp://nowhere:8786'\n\n[notify]\nretry_after_s = {retry}\nmax_retry_s = 0.5\n"
            + "".join(f"\n[[notify.webhooks]]\n{hook}\n" for hook in hooks) + extra)


def workspace_with(root: Path, *hooks: str, **files: str) -> Path:
    write_project(root, **files)
    (root / "workspace.toml").write_text(notify_toml(*hooks))
    return root


def wait_until(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_receiver_that_was_down_gets_each_event_once_in_order_after_a_restart(tmp_path):
    receiver = Receiver()  # not started: the receiver is down
    root = workspace_with(tmp_path, f'url = "{receiver.url}"')
    first = WorkbenchSession(root, runner="local")
    passed = first.run("tiny")  # registers version 1: no alert
    assert passed.status is RunStatus.SUCCEEDED
    first.registry.promote("tiny", 1, "staging", reason="looks good")  # promoted
    (root / "tiny" / "params.toml").write_text("[fit]\nscale = 0.2\n")
    gate = first.run("tiny")  # gate_failed
    (root / "tiny" / "fit.py").write_text(FAILING_STAGE)
    failed = first.run("tiny")  # run_failed
    assert (gate.status, failed.status) == (RunStatus.GATE_FAILED, RunStatus.FAILED)
    for n in range(3):
        first.alerts.emit("batch_drifted", "tiny", f"batch {n} drifted", {"n": n})
    assert first.alerts.problems == []

    # A new process (the restart): it finds the events in the outbox and keeps trying.
    later = WorkbenchSession(root, runner="local")
    later.alerts.start_delivery_thread()
    try:
        wait_until(lambda: later.alerts.status().failing, what="a failed delivery")
        time.sleep(1.0)  # several retries fail while the receiver is down
        down = later.alerts.status()
        assert down.pending == 6 and "connection refused" in down.last_error
        receiver.start()
        bodies = receiver.wait_for(6)
        time.sleep(1.5)  # long enough for a duplicate to arrive, if one were sent
    finally:
        later.alerts.stop_delivery_thread()
        receiver.stop()
    bodies = receiver.bodies()
    assert [b["kind"] for b in bodies] == ["promoted", "gate_failed", "run_failed"] + ["batch_drifted"] * 3
    assert [b["details"].get("n") for b in bodies[3:]] == [0, 1, 2]
    assert bodies[0]["summary"] == "tiny version 1 promoted to staging"
    assert bodies[1]["details"]["run_id"] == gate.id and "score >= 0.5 (got 0.1)" in bodies[1]["summary"]
    assert bodies[2]["details"]["failed_stages"] == ["fit"] and "exit 3" in bodies[2]["summary"]
    ids = [headers["x-workbench-event-id"] for headers, _body in receiver.received]
    assert ids == [b["id"] for b in bodies] and len(set(ids)) == 6
    assert later.alerts.status().pending == 0


def test_a_dead_receiver_does_not_slow_a_run(tmp_path):
    """A receiver that accepts connections and never answers: sending to it would take the
    sender's whole timeout (10 s). The run emits into the outbox and finishes as fast as a run
    with no receiver at all."""
    plain = tmp_path / "plain"
    write_project(plain, **FAILING_GATE)
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)  # never accepted, never answered
    dead = workspace_with(tmp_path / "dead", f'url = "http://127.0.0.1:{hanging.getsockname()[1]}/hook"',
                          **FAILING_GATE)
    try:
        timings = {}
        for name, root in (("plain", plain), ("dead", dead)):
            session = WorkbenchSession(root, runner="local")
            session.alerts.deliver_here()  # as the TUI does: delivery in a thread of this process
            session.run("tiny")  # warm-up: imports, the store's first open
            (root / "tiny" / "params.toml").write_text("[fit]\nscale = 0.3\n")
            started = time.monotonic()
            record = session.run("tiny")
            timings[name] = time.monotonic() - started
            assert record.status is RunStatus.GATE_FAILED
            if name == "dead":
                assert session.alerts.status().pending == 2  # both gate failures wait in the outbox
            session.alerts.stop_delivery_thread(timeout=0.1)
    finally:
        hanging.close()
    assert timings["dead"] < timings["plain"] + 2.0, timings


def test_slack_format_and_event_filters(tmp_path):
    slack, scripts = Receiver().start(), Receiver().start()
    try:
        root = workspace_with(tmp_path, f'url = "{slack.url}"\nformat = "slack"\nevents = ["gate_failed"]',
                              f'url = "{scripts.url}"\nevents = ["promoted"]\nheaders = {{ Authorization = '
                              '"Bearer ${ALERT_TOKEN}" }', **FAILING_GATE)
        session = WorkbenchSession(root, runner="local")
        session.alerts.deliver_here()
        record = session.run("tiny")
        message = slack.wait_for(1)[0]
        assert set(message) == {"text", "blocks"}
        # Slack reads &, < and > as markup: escaped, they show as written.
        assert message["text"] == f"tiny · run {record.id} of tiny failed its gates: score &gt;= 0.5 (got 0.1)"
        assert message["blocks"][0]["type"] == "section" and "*tiny · gate failed*" in message["blocks"][0]["text"]["text"]
        assert "*run_id*: 1" in message["blocks"][1]["text"]["text"]
        assert message["blocks"][-1]["type"] == "context"
        session.alerts.stop_delivery_thread()
        assert scripts.bodies() == []  # it asked for promotions only
    finally:
        slack.stop()
        scripts.stop()


def test_a_header_naming_an_unset_variable_waits_and_says_so(tmp_path, monkeypatch):
    receiver = Receiver().start()
    try:
        monkeypatch.delenv("ALERT_TOKEN", raising=False)
        root = workspace_with(tmp_path, f'url = "{receiver.url}"\nheaders = {{ Authorization = "Bearer ${{ALERT_TOKEN}}" }}')
        session = WorkbenchSession(root, runner="local")
        assert session.alerts.emit("test", "tiny", "hello")
        assert session.alerts.drain() == (0, 1)
        assert "names ${ALERT_TOKEN}, which is not set" in session.alerts.status().last_error
        monkeypatch.setenv("ALERT_TOKEN", "s3cret")
        assert session.alerts.drain(force=True) == (1, 0)
        headers, body = receiver.received[0]
        assert headers["authorization"] == "Bearer s3cret" and body["summary"] == "hello"
    finally:
        receiver.stop()


@pytest.mark.parametrize("toml, key, problem", [
    ('[notify]\n[[notify.webhooks]]\nurl = "ftp://x"\n', "notify.webhooks[0].url", "http:// or https:// URL"),
    ('[notify]\n[[notify.webhooks]]\nurl = "http://x"\nevents = ["run_fail"]\n', "notify.webhooks[0].events",
     "unknown event 'run_fail'"),
    ('[notify]\n[[notify.webhooks]]\nurl = "http://x"\nformat = "teams"\n', "notify.webhooks[0].format",
     "must be 'json' or 'slack'"),
    ('[notify]\n[[notify.webhooks]]\nurl = "http://x"\nheader = {}\n', "notify.webhooks[0].header", "unknown key"),
    ('[notify]\n[[notify.webhooks]]\nurl = "http://x"\nheaders = { "X-Workbench-Event-Id" = "1" }\n',
     "notify.webhooks[0].headers", "set by the workbench itself"),
    ('[notify]\n[[notify.webhooks]]\nevents = []\n', "notify.webhooks[0].url", "is required"),
    ('[notify]\nretry_after_s = -1\n', "notify.retry_after_s", "must be above 0"),
    ('[notify.serving]\nwindow_s = 30\n', "notify.serving", "sets no threshold"),
    ('[notify.serving]\nmax_error_rate = 5\n', "notify.serving.max_error_rate", "at most 1"),
    ('[notify]\nwebhook = []\n', "notify.webhook", "unknown key"),
])
def test_bad_config_names_the_file_the_key_and_the_problem(toml, key, problem):
    with pytest.raises(ManifestError) as caught:
        parse_workspace_notify("[cluster]\nanything = 'goes'\n" + toml, "/ws/workspace.toml")
    assert caught.value.path == "/ws/workspace.toml" and caught.value.key == key
    assert problem in caught.value.problem


def test_other_sections_of_workspace_toml_are_not_ours_to_judge():
    spec = parse_workspace_notify("[cluster]\nscheduler = 'tcp://x:8786'\n[ui]\nwhatever = 1\n")
    assert spec.webhooks == () and spec.serving is None


def test_a_broken_notify_section_fails_the_cli_with_file_and_key(tmp_path):
    write_project(tmp_path, **{"workbench.toml": MANIFEST + '\n[notify]\n[[notify.webhooks]]\nurl = "http://x"\n'
                                                           'format = "teams"\n'})
    done = wb(tmp_path, "notify", "test", "--project", "tiny")
    assert done.returncode == 3
    assert "tiny/workbench.toml: notify.webhooks[0].format: must be 'json' or 'slack'" in done.stderr.replace("\n", "")
    (tmp_path / "tiny" / "workbench.toml").write_text(MANIFEST)
    (tmp_path / "workspace.toml").write_text("[notify]\nretry = 1\n")
    done = wb(tmp_path, "notify", "status")
    assert done.returncode == 0  # status reads the outbox, not the config
    done = wb(tmp_path, "notify", "test")
    assert done.returncode == 3 and "workspace.toml: notify.retry: unknown key" in done.stderr.replace("\n", "")


def test_notify_test_through_the_cli(tmp_path):
    live, project_only = Receiver().start(), Receiver().start()
    dead = f"http://127.0.0.1:{free_port()}/hook"
    try:
        write_project(tmp_path, **{"workbench.toml": MANIFEST + f'\n[[notify.webhooks]]\nurl = "{project_only.url}"\n'})
        (tmp_path / "workspace.toml").write_text(notify_toml(f'url = "{live.url}"'))
        done = wb(tmp_path, "notify", "test")
        assert done.returncode == 0, done.stderr
        assert f"✓ {live.url}  HTTP 200" in done.stdout and project_only.url not in done.stdout
        assert [b["kind"] for b in live.bodies()] == ["test"] and project_only.bodies() == []

        done = wb(tmp_path, "notify", "test", "--project", "tiny", "--json")
        assert done.returncode == 0, done.stderr
        assert [(r["receiver"], r["ok"]) for r in json.loads(done.stdout)] == [(live.url, True), (project_only.url, True)]
        assert project_only.bodies()[0]["project"] == "tiny"

        (tmp_path / "workspace.toml").write_text(notify_toml(f'url = "{live.url}"', f'url = "{dead}"'))
        done = wb(tmp_path, "notify", "test")
        assert done.returncode == 1
        assert f"✗ {dead}" in done.stdout and "cannot connect (connection refused)" in done.stdout
        assert f"✓ {live.url}" in done.stdout
        assert wb(tmp_path, "notify", "status", "--json").returncode == 0  # a test is not queued
        assert json.loads(wb(tmp_path, "notify", "status", "--json").stdout)["undelivered"] == []
    finally:
        live.stop()
        project_only.stop()


def test_notify_status_lists_what_waits_and_sync_sends_it(tmp_path):
    receiver = Receiver()
    root = workspace_with(tmp_path, f'url = "{receiver.url}"', **FAILING_GATE)
    done = wb(root, "run", "tiny", "--runner", "local", "-q")  # WORKBENCH_NOTIFY_SYNC=off: nobody delivers
    assert done.returncode == 2
    session = WorkbenchSession(root)
    assert session.alerts.drain() == (0, 1)
    status = wb(root, "notify", "status")
    assert status.returncode == 0
    text = " ".join(status.stdout.split())
    assert "1 alert delivery(ies) waiting" in text and "gate_failed" in text and "connection refused" in text
    doctor = " ".join(wb(root, "doctor").stdout.split())
    assert "! alerts 1 alert delivery(ies) waiting; last error:" in doctor and "connection refused" in doctor
    receiver.start()
    try:
        synced = wb(root, "notify", "sync")
        assert synced.returncode == 0 and "delivered 1" in synced.stdout
        assert [b["kind"] for b in receiver.bodies()] == ["gate_failed"]
        assert "every alert delivered" in wb(root, "notify", "status").stdout
    finally:
        receiver.stop()


def test_a_cli_run_leaves_delivery_to_a_detached_process(tmp_path):
    receiver = Receiver().start()
    try:
        root = workspace_with(tmp_path, f'url = "{receiver.url}"', **FAILING_GATE)
        done = wb(root, "run", "tiny", "--runner", "local", "-q", env={"WORKBENCH_NOTIFY_SYNC": "background"})
        assert done.returncode == 2
        body = receiver.wait_for(1, timeout=30)[0]
        assert body["kind"] == "gate_failed" and body["project"] == "tiny"
        wait_until(lambda: WorkbenchSession(root).alerts.status().pending == 0, what="the outbox to empty")
    finally:
        receiver.stop()


def test_served_endpoint_thresholds_alert_once_when_crossed_and_once_when_back(tmp_path):
    """The rule on real /metrics text (as wb_serve writes it), through a real receiver."""
    receiver = Receiver().start()
    try:
        root = workspace_with(tmp_path, f'url = "{receiver.url}"')
        session = WorkbenchSession(root, runner="local")
        alarm = ServingAlarm(session, "tiny", ServingThresholds(max_error_rate=0.05, max_p99_ms=8, window_s=60,
                                                                min_requests=20))
        window = ScrapeWindow("http://127.0.0.1:1", window_s=65)

        def scraped(at: float, ok: int, server_errors: int = 0, slow: int = 0):
            """Counters since the server started: `ok` answered 200, `server_errors` 500, `slow` of
            them in (5, 10] ms, the rest within 5 ms."""
            total = ok + server_errors
            window.add(parse_metrics(metrics_text(1, {("1", "champion"): series(ok, server=server_errors,
                                                                                 fast=total - slow)}), at=at))
            return alarm.judge("production", window.stats(60))

        assert scraped(0, 100) == 0
        assert scraped(10, 200) == 0  # 100 more, all fast and fine
        assert scraped(20, 300, server_errors=20) == 1  # 20 errors of 220 in the window: 9.1%
        assert scraped(30, 400, server_errors=20) == 0  # still over (6.25%): said once
        assert scraped(50, 2000, server_errors=20) == 1  # 20 of 1,920: back under
        assert scraped(60, 2100, server_errors=20, slow=300) == 1  # 300 of 2,020 in (5, 10] ms: p99 about 9.9 ms, over 8
        session.alerts.drain()
        kinds = [(b["kind"], b["details"]["measure"]) for b in receiver.bodies()]
        assert kinds == [("serving_error_rate", "error_rate"), ("serving_recovered", "error_rate"),
                         ("serving_latency", "p99_ms")]
        assert receiver.bodies()[0]["summary"].startswith("tiny production: error rate 9.1% is above 5.0%")
    finally:
        receiver.stop()


def test_a_project_adds_its_receivers_to_the_workspace_s_and_keeps_its_retry_timing(tmp_path):
    shared = "http://127.0.0.1:1/shared"
    write_project(tmp_path, **{"workbench.toml": MANIFEST + f'\n[[notify.webhooks]]\nurl = "{shared}"\nformat = "slack"\n'
                                                           '[[notify.webhooks]]\nurl = "http://127.0.0.1:1/own"\n'
                                                           '[notify.serving]\nmax_p99_ms = 250\n'})
    (tmp_path / "workspace.toml").write_text(notify_toml(f'url = "{shared}"', 'url = "http://127.0.0.1:1/ops"',
                                                         extra="\n[notify.serving]\nmax_error_rate = 0.1\n"))
    alerts = WorkbenchSession(tmp_path).alerts
    project, workspace = alerts.receivers("tiny"), alerts.receivers("")
    assert [(h.url, h.format) for h in project.webhooks] == [
        ("http://127.0.0.1:1/ops", "json"), (shared, "slack"), ("http://127.0.0.1:1/own", "json")]
    assert [h.url for h in workspace.webhooks] == [shared, "http://127.0.0.1:1/ops"]
    assert (project.retry_after_s, project.max_retry_s) == (0.2, 0.5)  # the workspace's: the project sets none
    assert (project.serving.max_p99_ms, project.serving.max_error_rate) == (250, None)
    assert workspace.serving.max_error_rate == 0.1


def test_an_alert_a_broken_config_keeps_from_queueing_is_said_and_the_run_stands(tmp_path):
    write_project(tmp_path, **FAILING_GATE)
    (tmp_path / "workspace.toml").write_text('[notify]\n[[notify.webhooks]]\nurl = "http://x"\nformat = "teams"\n')
    done = wb(tmp_path, "run", "tiny", "--runner", "local", "-q")
    assert done.returncode == 2  # the gate's exit code, not the config's
    assert "alert gate_failed of tiny not queued" in done.stderr.replace("\n", " ")
    assert "notify.webhooks[0].format: must be 'json' or 'slack'" in done.stderr.replace("\n", "")


def test_which_runs_are_alerts():
    """Table-style, on records as the pipeline returns them."""

    def record(status, trigger=Trigger.MANUAL, gate_passed=True, stage_status=StageStatus.SUCCEEDED):
        return RunRecord(id=7, project="p", trigger=trigger, status=status, runner="local",
                         started_at=datetime.now(timezone.utc), stages=[
                             StageResult("fit", stage_status, "python fit.py", "k", "/o", exit_code=2,
                                         reason="exited 2")],
                         gates=[GateResult("auc", ">=", 0.8, 0.7 if not gate_passed else 0.9, gate_passed, "")])

    cases = [
        (record(RunStatus.SUCCEEDED), []),
        (record(RunStatus.GATE_FAILED, gate_passed=False), ["gate_failed"]),
        (record(RunStatus.FAILED, stage_status=StageStatus.FAILED), ["run_failed"]),
        (record(RunStatus.CANCELLED), []),
        (record(RunStatus.SUPERSEDED), []),
        (record(RunStatus.GATE_FAILED, Trigger.SWEEP, gate_passed=False), []),
        (record(RunStatus.FAILED, Trigger.SWEEP, stage_status=StageStatus.FAILED), ["run_failed"]),
        (record(RunStatus.SUCCEEDED, Trigger.DRIFT), ["retrain_finished"]),
        (record(RunStatus.FAILED, Trigger.DRIFT, stage_status=StageStatus.FAILED), ["run_failed", "retrain_finished"]),
    ]
    for rec, kinds in cases:
        assert [kind for kind, _summary, _details in run_alerts(rec)] == kinds, (rec.status, rec.trigger)
    (_kind, summary, details), = run_alerts(record(RunStatus.FAILED, stage_status=StageStatus.FAILED))
    assert summary == "run 7 of p failed: stage fit failed (exit 2): exited 2" and details["failed_stages"] == ["fit"]


def test_the_serving_alarm_scrapes_metrics_over_http_and_alerts_on_latency(tmp_path):
    """ServingAlarm.tick as the serving keeper calls it: the server's /metrics answered by a real
    HTTP server (wb_serve's text format), a check every CHECK_S, one alert for the crossing."""
    counters = {"ok": 0, "slow": 0}

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = metrics_text(3, {("3", "champion"): series(counters["ok"], fast=counters["ok"] - counters["slow"]),
                                    ("4", "shadow"): series(counters["ok"] // 2, fast=0)}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver = Receiver().start()
    try:
        write_project(tmp_path, **{"workbench.toml": MANIFEST + f'\n[[notify.webhooks]]\nurl = "{receiver.url}"\n'
                                                               '[notify.serving]\nmax_p99_ms = 8\nmin_requests = 50\n'})
        session = WorkbenchSession(tmp_path)
        alarm = ServingAlarm.for_project(session, "tiny")
        assert alarm is not None and alarm.thresholds.max_p99_ms == 8
        served = [ServerStatus("tiny", "production", 3, f"http://0.0.0.0:{server.server_address[1]}", None, "c", "", True)]
        clock = 1000.0
        for ok, slow in ((0, 0), (100, 0), (200, 0), (300, 90), (400, 90), (400, 90)):
            counters.update(ok=ok, slow=slow)
            alarm.tick(lambda: served, now=clock)
            alarm.tick(lambda: served, now=clock + 1)  # not due yet: no scrape
            clock += CHECK_S
        session.alerts.drain()
        bodies = receiver.bodies()
        # The shadow answered every request slowly from the start: its answers reach no client.
        assert [b["kind"] for b in bodies] == ["serving_latency"], bodies
        assert bodies[0]["details"]["requests"] == 300  # when the champion's own answers got slow
        assert bodies[0]["details"]["served_version"] == 3 and bodies[0]["details"]["limit"] == 8
        assert bodies[0]["summary"].startswith("tiny production: p99 latency")
    finally:
        server.shutdown()
        server.server_close()
        receiver.stop()


def test_a_webhook_s_secret_path_is_never_stored_or_shown(tmp_path):
    secret = "http://127.0.0.1:{port}/services/T000/B000/XXXXsecretXXXX"
    receiver = Receiver()
    url = secret.format(port=receiver.port)
    root = workspace_with(tmp_path, f'url = "{url}"', **FAILING_GATE)
    session = WorkbenchSession(root, runner="local")
    session.run("tiny")
    assert session.alerts.drain() == (0, 1)
    status = wb(root, "notify", "status")
    test = wb(root, "notify", "test")
    shown = session.alerts.undelivered()[0].receiver_shown
    assert shown.startswith(f"http://127.0.0.1:{receiver.port}/services/… (#") and "XXXX" not in shown
    for text in (status.stdout, test.stdout, session.alerts.status().last_error):
        assert "secret" not in text and f"127.0.0.1:{receiver.port}/services/…" in " ".join(text.split()), text
    for stored in (root / ".workbench").glob("lineage.duckdb*"):  # the file and its write-ahead log
        assert b"XXXXsecretXXXX" not in stored.read_bytes(), stored
    receiver.start()
    try:
        assert session.alerts.drain(force=True) == (1, 0)  # the full URL, from the config, when sending
        assert [b["kind"] for b in receiver.bodies()] == ["gate_failed"]
    finally:
        receiver.stop()


def test_gc_deletes_alerts_delivered_long_ago_and_keeps_what_waits(tmp_path):
    """The outbox holds what waits; delivered alerts older than 30 days go with `workbench gc`."""
    from workbench.adapters.duckdb_alerts import DuckDBAlertOutbox

    root = workspace_with(tmp_path, 'url = "http://127.0.0.1:9/hook"')
    session = WorkbenchSession(root)
    outbox = DuckDBAlertOutbox(session.store)
    old, recent, waiting = (outbox.add(f"e{n}", "tiny", "run_failed", f"alert {n}", {}, [("r", "http://r")])
                            for n in range(3))
    for alert_id in (old, recent):
        outbox.delivered(alert_id, "r")
    with session.store.transaction(write=True) as con:  # delivered 40 days ago
        con.execute("UPDATE alert_deliveries SET delivered_at = delivered_at - INTERVAL 40 DAY WHERE alert_id = ?",
                    [old])
    dry = wb(root, "gc", "--dry-run")
    assert "would delete 1 alert(s) delivered over 30 days ago" in dry.stdout, dry.stdout
    done = wb(root, "gc")
    assert done.returncode == 0 and "deleted 1 alert(s) delivered over 30 days ago" in done.stdout, done.stdout
    with session.store.transaction() as con:
        left = [row[0] for row in con.execute("SELECT id FROM alerts ORDER BY id").fetchall()]
        deliveries = [row[0] for row in con.execute("SELECT alert_id FROM alert_deliveries ORDER BY 1").fetchall()]
    assert left == deliveries == [recent, waiting]

"""The serving monitor (services/serving_monitor.py) on real segments, a real DuckDB lineage
store and real drift checks: production's champion traffic becomes batches at `[serving]
batch_rows` or `batch_minutes`, the cursor survives a restart (nothing batched twice, nothing
skipped), feedback labels a batch only when it labels every row, a drifted and decayed batch is
recorded and retrains in the background (a real run with trigger drift), and live quality joins
feedback to predictions per version."""

from __future__ import annotations

import json
import time

import duckdb
import pytest

from tests.test_drift import MANIFEST, in_production, sales, workbench, write_project
from tests.traffic_segments import feedback_line, request_line, write_segment
from workbench.adapters.traffic_log import FEEDBACK, REQUESTS, traffic_dir
from workbench.core.model import RunStatus, Trigger
from workbench.services.drift import DriftService
from workbench.services.live_quality import live_quality, traffic_totals
from workbench.services import serving_monitor
from workbench.services.serving_monitor import ServingMonitor
from workbench.services.session import WorkbenchSession

SERVING = "\n[serving]\nbatch_rows = 400\nbatch_minutes = 5\n"
NOW = 1_700_000_000.0


def requests_of(rows: list[dict], per_request: int = 10, version=1, at=NOW) -> list[dict]:
    """Logged requests of `per_request` rows each: the inputs without the label, a score."""
    out = []
    for i in range(0, len(rows), per_request):
        chunk = rows[i:i + per_request]
        inputs = [{"amount": float(r["amount"]), "plan": r["plan"]} for r in chunk]
        outputs = [min(1.0, max(0.0, (float(r["amount"]) - 30) / 50)) for r in chunk]
        out.append(request_line(inputs, outputs, version=version, at=at + i / 1000))
    return out


def labels_of(rows: list[dict], requests: list[dict], per_request: int = 10) -> list[dict]:
    return [feedback_line(req, [r["bought"] for r in rows[i * per_request:(i + 1) * per_request]])
            for i, req in enumerate(requests)]


def table(path) -> list[tuple]:
    con = duckdb.connect()
    try:
        return con.execute(f"SELECT * FROM read_csv('{path}', all_varchar = true)").fetchall(), \
            [d[0] for d in con.execute(f"DESCRIBE SELECT * FROM read_csv('{path}')").fetchall()]
    finally:
        con.close()


@pytest.fixture
def shop(tmp_path):
    write_project(tmp_path, MANIFEST + SERVING)
    session = WorkbenchSession(tmp_path, runner="local")
    in_production(session)
    return tmp_path, session, traffic_dir(session.workspace.state_dir, "shop", "production")


def test_batches_cut_at_batch_rows_then_batch_minutes_and_a_restart_neither_repeats_nor_skips(shop, monkeypatch):
    monkeypatch.setattr(serving_monitor, "KEEP_BATCHES", 1)
    ws, session, folder = shop
    said = []
    first = requests_of(sales(300, seed=2))
    write_segment(folder, REQUESTS, first, opened_ms=1000)
    monitor = ServingMonitor(session, "shop", said.append)
    assert monitor.tick(NOW) is None and monitor.pending_rows == 300

    second = requests_of(sales(200, seed=3), at=NOW + 10)
    noise = [request_line([{"amount": 1.0, "plan": "basic"}], None, status=422, at=NOW + 11),
             request_line([{"amount": 1e6, "plan": "pro"}], [0.5], role="challenger", at=NOW + 11)]
    write_segment(folder, REQUESTS, second[:10] + noise + second[10:], opened_ms=2000)
    write_segment(folder / "..", REQUESTS, second, opened_ms=2500)  # not the alias's folder: not read
    batch = monitor.tick(NOW + 1)
    assert (batch.number, batch.rows, batch.requests, batch.versions, batch.labelled) == (1, 400, 40, (1,), False)
    rows, columns = table(batch.path)
    assert columns == ["amount", "plan"] and len(rows) == 400
    assert batch.path.parent == ws / ".workbench" / "serving" / "shop" / "batches"
    cursor = json.loads((ws / ".workbench" / "serving" / "shop" / "monitor.json").read_text())
    assert cursor["positions"] == {"requests-1700000001000-7.jsonl": 30, "requests-1700000002000-7.jsonl": 12}
    monitor.wait(60)

    restarted = ServingMonitor(session, "shop", said.append)
    assert restarted.tick(NOW + 2) is None and restarted.pending_rows == 100  # not 500: no row twice
    first_file = batch.path
    batch = restarted.tick(NOW + 1 + 5 * 60)  # batch_minutes after the last batch, with rows pending
    assert (batch.number, batch.rows) == (2, 100)
    assert not first_file.exists() and batch.path.exists()  # KEEP_BATCHES = 1
    rows, _ = table(batch.path)
    assert [float(r[0]) for r in rows] == [r["amount"] for q in second[10:] for r in q["inputs"]]
    restarted.wait(60)
    assert restarted.tick(NOW + 1000) is None  # nothing new: no empty batch

    checked = DriftService(session).batches("shop")
    assert [b.rows for b in checked] == [100, 400]
    assert said[0].startswith("traffic batch 1 (400 rows, v1): no drift -> no retrain: no drift"), said


def test_traffic_batches_carry_inputs_and_labels_arriving_later_make_a_labelled_batch(shop):
    ws, session, folder = shop
    said = []
    rows = sales(400, seed=4)
    requests = requests_of(rows)
    write_segment(folder, REQUESTS, requests, opened_ms=1000)
    monitor = ServingMonitor(session, "shop", said.append)
    traffic = monitor.tick(NOW)
    assert not traffic.labelled and table(traffic.path)[1] == ["amount", "plan"]
    monitor.wait(60)

    # A day later the labels come, for all but one request, plus one for a request never logged.
    late = NOW + 86_400
    feedback = [feedback_line(q, [r["bought"] for r in rows[i * 10:(i + 1) * 10]], at=late + i / 1000)
                for i, q in enumerate(requests)][:-1]
    feedback.append({"request_id": "never-served", "labels": [1], "at": late})
    write_segment(folder, FEEDBACK, feedback, opened_ms=90_000_000)
    assert monitor.tick(late + 2) is None  # its request's segment might still be open: wait
    labelled = monitor.tick(late + 1000)  # batch_minutes passed since the last labelled batch
    got, columns = table(labelled.path)
    assert labelled.labelled and labelled.name == "labelled batch 1" and labelled.path.name.startswith(
        "production-labelled-")
    assert (labelled.rows, labelled.requests, labelled.unmatched) == (390, 39, 1)
    assert columns == ["amount", "plan", "bought"] and [r[2] for r in got] == [r["bought"] for r in rows[:390]]
    monitor.wait(60)
    report = monitor.outcomes[-1][1].report
    assert report.decay is not None and not report.decay.decayed  # scored by the project's score command
    assert said[-1].startswith("labelled batch 1 (390 rows, v1; 1 label(s) skipped: not of an answer of the "
                               "champion's in the log (a challenger's, or deleted))")

    # Restarted: the labels already batched are not batched again.
    restarted = ServingMonitor(session, "shop", said.append)
    assert restarted.tick(late + 5000) is None
    cursor = json.loads((ws / ".workbench" / "serving" / "shop" / "monitor.json").read_text())
    assert cursor["labelled_batches"] == 1 and cursor["batches"] == 1


def test_drifted_traffic_with_worse_labels_is_recorded_and_retrains_in_the_background(shop):
    ws, session, folder = shop
    said = []
    rows = sales(400, seed=8, shift=15, mix=(0.1, 0.2, 0.7), flip=True)
    requests = requests_of(rows)
    write_segment(folder, REQUESTS, requests, opened_ms=1000)
    write_segment(folder, FEEDBACK, labels_of(rows, requests), opened_ms=1500)
    monitor = ServingMonitor(session, "shop", said.append)
    traffic = monitor.tick(NOW + 200)  # the traffic batch first: drifted, but no labels to train on
    assert not traffic.labelled
    monitor.wait(120)
    assert "no labels" in monitor.outcomes[0][1].decision.reason
    batch = monitor.tick(NOW + 200)  # then the labelled one (feedback arrived at NOW + 100)
    assert batch.labelled
    monitor.wait(120)
    _, (_, outcome) = monitor.outcomes
    assert outcome.report.drifted and outcome.report.decay.decayed and outcome.decision.retrain
    record, = monitor.retrains
    assert record.trigger is Trigger.DRIFT and record.status is RunStatus.SUCCEEDED
    assert record.datasets[0].row_count == 1500 + 400  # the training data plus the traffic batch
    assert f"labelled batch 1 (400 rows, v1): drifted (amount" in said[1]
    assert said[1].endswith(f"-> retraining (run {record.id})") and "accuracy" in said[1], said
    version = session.registry.version_for_run("shop", record.id).version
    assert f"traffic retrain run {record.id}: succeeded -> version {version} registered (`workbench promote shop " \
           f"{version} --to staging` puts it behind the canary)" in said, said
    recorded, _traffic = DriftService(session).batches("shop")
    assert recorded.path == str(batch.path) and recorded.retrain_run_id == record.id

    shown = workbench(ws, "drift", "shop", batch.path.name)  # found by its name, as an incoming batch is
    assert shown.returncode == 0, shown.stderr
    assert "checked before" in shown.stdout and f"· run {record.id}" in shown.stdout


def test_live_quality_joins_feedback_to_each_version_s_answers(shop):
    ws, session, folder = shop
    old, new = sales(200, seed=11), sales(100, seed=12)
    old_requests, new_requests = requests_of(old), requests_of(new, version=2, at=NOW + 30)
    for r in new_requests:  # version 2 answers the opposite: a worse model
        r["outputs"] = [1 - p for p in r["outputs"]]
    unlabelled = requests_of(sales(50, seed=13), version=2, at=NOW + 40)
    write_segment(folder, REQUESTS, old_requests + new_requests + unlabelled, opened_ms=1000)
    write_segment(folder, FEEDBACK, labels_of(old, old_requests) + labels_of(new, new_requests), opened_ms=2000)
    found = live_quality(session, "shop")

    from sklearn.metrics import roc_auc_score
    truth = [r["bought"] == "yes" for r in old]
    assert set(found) == {1, 2}
    assert found[1].metric == "auc" and found[1].labelled_rows == 200
    assert found[1].value == pytest.approx(roc_auc_score(truth, [p for q in old_requests for p in q["outputs"]]))
    assert found[2].labelled_rows == 100 and found[2].value < 0.5 < found[1].value
    assert set(live_quality(session, "shop", by_role=True)) == {(1, "champion"), (2, "champion")}

    totals = traffic_totals(session, "shop", minutes=1, now=NOW + 50)
    assert totals[("production", 2, "champion")].requests == 15 and totals[("production", 1, "champion")].errors == 0


def test_the_monitor_keeps_the_log_under_log_max_mb(tmp_path):
    write_project(tmp_path, MANIFEST + "\n[serving]\nlog_max_mb = 1\nbatch_rows = 100000\n")
    session = WorkbenchSession(tmp_path, runner="local")
    folder = traffic_dir(session.workspace.state_dir, "shop", "production")
    big = requests_of(sales(8000, seed=1), per_request=100)
    paths = [write_segment(folder, REQUESTS, big, opened_ms=ms) for ms in (1000, 2000, 3000)]
    assert paths[0].stat().st_size > 400_000
    monitor = ServingMonitor(session, "shop")
    monitor.tick(NOW)
    assert [p.exists() for p in paths] == [False, True, True]
    assert monitor.pending_rows == 16_000  # the deleted segment's rows are gone with it


def test_an_unreadable_cursor_is_said_once_and_serving_goes_on(tmp_path):
    write_project(tmp_path, MANIFEST + SERVING)
    session = WorkbenchSession(tmp_path, runner="local")
    cursor = session.workspace.state_dir / "serving" / "shop" / "monitor.json"
    cursor.parent.mkdir(parents=True)
    cursor.write_text("{not json")
    write_segment(traffic_dir(session.workspace.state_dir, "shop", "production"), REQUESTS,
                  requests_of(sales(500, seed=1)), opened_ms=1000)
    said = []
    monitor = ServingMonitor(session, "shop", said.append)
    assert monitor.tick(NOW) is None and monitor.tick(NOW + 1) is None
    assert len(said) == 1 and said[0].startswith(f"traffic monitor: cannot read the traffic monitor's cursor {cursor}")
    assert "delete it" in said[0] and not (cursor.parent / "batches").exists()


def test_workbench_gc_deletes_the_traffic_log_past_log_max_mb(tmp_path):
    write_project(tmp_path, MANIFEST + "\n[serving]\nlog_max_mb = 1\n")
    folder = traffic_dir(tmp_path / ".workbench", "shop", "production")
    big = requests_of(sales(8000, seed=1), per_request=100)
    paths = [write_segment(folder, REQUESTS, big, opened_ms=ms) for ms in (1000, 2000, 3000)]
    dry = workbench(tmp_path, "gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"serving/shop/traffic/production/{paths[0].name} (past [serving] log_max_mb)" in dry.stdout, dry.stdout
    assert all(p.exists() for p in paths)
    done = workbench(tmp_path, "gc")
    assert done.returncode == 0, done.stderr
    assert [p.exists() for p in paths] == [False, True, True]


def test_one_retrain_at_a_time_a_batch_checked_meanwhile_records_it_as_not_done(tmp_path):
    write_project(tmp_path, MANIFEST.replace("cooldown_minutes = 60", "cooldown_minutes = 0") + SERVING)
    fit = tmp_path / "shop" / "fit.py"  # a retrain (more rows than the 1,500 of the data file) takes seconds
    fit.write_text(fit.read_text().replace('rows = rule.read("data/sales.csv")',
                                           'rows = rule.read("data/sales.csv")\n'
                                           'import time; time.sleep(6 if len(rows) > 1500 else 0)'))
    session = WorkbenchSession(tmp_path, runner="local")
    in_production(session)
    folder = traffic_dir(session.workspace.state_dir, "shop", "production")
    said = []
    monitor = ServingMonitor(session, "shop", said.append)
    for n, seed in enumerate((8, 9)):
        rows = sales(400, seed=seed, shift=15, mix=(0.1, 0.2, 0.7), flip=True)
        at = NOW + n * 1000
        requests = requests_of(rows, at=at)
        write_segment(folder, REQUESTS, requests, opened_ms=1000 + n * 1000)
        write_segment(folder, FEEDBACK, [feedback_line(q, f["labels"], at=at + 100)
                                         for q, f in zip(requests, labels_of(rows, requests))],
                      opened_ms=1500 + n * 1000)
        traffic = monitor.tick(at + 1)  # inputs only: drift, no labels to train on
        assert not traffic.labelled and traffic.number == n + 1
        while monitor.busy_checking:
            time.sleep(0.05)
        labelled = monitor.tick(at + 200)  # the feedback, once its requests' segments surely closed
        assert labelled.labelled and labelled.number == n + 1
        while monitor.busy_checking:
            time.sleep(0.05)
        if n == 0:
            assert monitor.busy_retraining
    second = monitor.outcomes[3][1]
    assert monitor.busy_retraining, "the first retrain ended before the second batch was checked"
    assert not second.decision.retrain and second.decision.reason.endswith("retraining was not allowed for this check")
    monitor.wait(120)
    assert len(monitor.retrains) == 1
    assert any(line.startswith("labelled batch 2") and line.endswith("(a retrain from traffic is running)")
               for line in said), said
    recorded = DriftService(session).batches("shop")
    assert [b.retrain_run_id for b in recorded] == [None, None, monitor.retrains[0].id, None]


def test_a_retrained_version_put_in_staging_by_auto_staging_is_said_to_be_behind_the_canary(tmp_path):
    write_project(tmp_path, MANIFEST + SERVING + "\n[promotion]\nauto_staging = true\n")
    session = WorkbenchSession(tmp_path, runner="local")
    assert session.run("shop").status is RunStatus.SUCCEEDED  # version 1, in staging by auto_staging
    assert session.registry.promote("shop", 1, "production", user="test").applied
    folder = traffic_dir(session.workspace.state_dir, "shop", "production")
    rows = sales(400, seed=8, shift=15, mix=(0.1, 0.2, 0.7), flip=True)
    requests = requests_of(rows)
    write_segment(folder, REQUESTS, requests, opened_ms=1000)
    write_segment(folder, FEEDBACK, labels_of(rows, requests), opened_ms=1500)
    said = []
    monitor = ServingMonitor(session, "shop", said.append)
    assert not monitor.tick(NOW + 200).labelled
    monitor.wait(120)
    assert monitor.tick(NOW + 200).labelled
    monitor.wait(120)
    record, = monitor.retrains
    staged = session.registry.aliases("shop")["staging"]
    assert session.registry.version(("shop"), staged).run_id == record.id
    assert f"traffic retrain run {record.id}: succeeded -> version {staged}, in staging by [promotion] " \
           "auto_staging: production's canary and shadow follow it" in said, said


def test_rows_that_broke_the_data_contract_are_left_out_of_traffic_batches_and_counted(shop):
    ws, session, folder = shop
    said = []
    requests = requests_of(sales(400, seed=6))
    for index, broken in ((0, [2, 5]), (1, list(range(10)))):  # the server's contract_rows (wb_traffic.py)
        requests[index]["contract_rows"] = broken
        for row in broken:
            requests[index]["inputs"][row]["amount"] = 99_999.0
    write_segment(folder, REQUESTS, requests, opened_ms=1000)
    monitor = ServingMonitor(session, "shop", said.append)
    assert monitor.tick(NOW) is None and monitor.pending_rows == 388  # not batch_rows (400) yet
    batch = monitor.tick(NOW + 5 * 60)  # batch_minutes later
    assert (batch.rows, batch.requests, batch.left_out) == (388, 40, 12)
    rows, _ = table(batch.path)
    assert len(rows) == 388 and all(float(r[0]) != 99_999.0 for r in rows)
    monitor.wait(60)
    assert "12 served row(s) left out: they broke the data contract" in said[0], said

"""End to end on the real Docker engine: the example project, reuse, failures with recorded
reasons, and a workbench killed mid-run. Lineage is checked in the DuckDB file itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from workbench.core.model import RunStatus, StageStatus
from workbench.services.session import WorkbenchSession

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "projects" / "telco-churn"


def created_containers(client, project: str, since: datetime) -> list[str]:
    """Container-create events the engine saw for this project since `since`."""
    events = client.events(since=since, until=datetime.now(timezone.utc) + timedelta(seconds=2), decode=True,
                           filters={"type": "container", "event": "create", "label": f"workbench.project={project}"})
    return [e["id"] for e in events]


def query(db: Path, sql: str, *params):
    """Read the lineage file directly, as any DuckDB client would: it may be busy for a moment
    while a workbench process writes (the store itself retries the same way)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            with duckdb.connect(str(db), read_only=True) as con:
                return con.execute(sql, params).fetchall()
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def example_ws(tmp_path_factory, docker_engine, docker_base_image):
    root = tmp_path_factory.mktemp("ws")
    shutil.copytree(EXAMPLE, root / "telco-churn", ignore=shutil.ignore_patterns(".workbench"))
    os.environ["WORKBENCH_BASE_IMAGE"] = docker_base_image
    yield root
    os.environ.pop("WORKBENCH_BASE_IMAGE", None)


@pytest.fixture(scope="module")
def first_run(example_ws):
    return WorkbenchSession(example_ws, runner="docker").run("telco-churn")


def test_example_runs_end_to_end_in_docker(example_ws, first_run):
    record = first_run
    assert record.status is RunStatus.SUCCEEDED, record.reason
    assert record.runner == "docker" and record.image_tag.startswith("workbench-env/")
    assert [s.stage for s in record.stages] == ["validate", "train", "evaluate"]
    assert all(s.status is StageStatus.SUCCEEDED for s in record.stages)
    metrics = record.metrics
    assert metrics["auc"] > 0.80 and metrics["rows"] == 7043
    for name in ("accuracy", "precision", "recall", "f1", "log_loss", "latency_p50_ms", "latency_p95_ms",
                 "demographic_parity_difference.female", "equalized_odds_difference.senior_citizen"):
        assert name in metrics
    assert len(record.gates) == 4
    # Latency depends on how busy the machine is; the other gates are deterministic.
    assert all(g.passed for g in record.gates if g.metric != "latency_p95_ms")

    db = example_ws / ".workbench" / "lineage.duckdb"
    (status, image_id), = query(db, "SELECT status, image_id FROM runs WHERE id = ?", record.id)
    assert status == "succeeded" and image_id.startswith("sha256:")
    stage_rows = query(db, "SELECT stage, status FROM stage_runs WHERE run_id = ? ORDER BY stage", record.id)
    assert stage_rows == [("evaluate", "succeeded"), ("train", "succeeded"), ("validate", "succeeded")]
    (auc,), = query(db, "SELECT value FROM metrics WHERE run_id = ? AND name = 'auc'", record.id)
    assert auc == pytest.approx(metrics["auc"])
    artifacts = dict(query(db, "SELECT name, sha256 FROM artifacts WHERE run_id = ?", record.id))
    model = next(a for a in record.stages[1].artifacts if a.name == "model.txt")
    assert artifacts["model.txt"] == model.sha256 and Path(model.path).is_file()
    (rows, fingerprint), = query(db, "SELECT d.row_count, d.fingerprint FROM run_datasets r "
                                     "JOIN datasets d USING (fingerprint) WHERE r.run_id = ?", record.id)
    assert rows == 7043
    inputs = dict(query(db, "SELECT path, sha256 FROM input_files WHERE run_id = ? AND stage = 'train'", record.id))
    assert inputs["data/churn.csv"] == fingerprint and "params.toml" not in inputs  # read by key instead
    keys = dict(query(db, "SELECT key, value FROM stage_params WHERE run_id = ? AND stage = 'train'", record.id))
    assert set(keys) == {"split", "train"} and json.loads(keys["split"]) == {"seed": 42, "test_size": 0.25}
    gates = query(db, "SELECT metric, passed FROM gate_results WHERE run_id = ?", record.id)
    assert dict(gates) == {g.metric: g.passed for g in record.gates}


def test_the_docker_run_keeps_its_models_explanation(example_ws, first_run):
    """wb.explain ran in the evaluate stage's container, where lightgbm and the rows are; the host
    read its explanations.json and the model's text, and kept both (issue 12 item 4)."""
    db = example_ws / ".workbench" / "lineage.duckdb"
    model = first_run.stages[1].artifacts[0]
    (name, sha, shap_rows), = query(db, "SELECT model, model_sha256, shap_rows FROM explanations "
                                        "WHERE run_id = ? AND stage = 'train'", first_run.id)
    assert (name, sha, shap_rows) == ("model.txt", model.sha256, 1000)
    features = query(db, "SELECT feature, gain, split, mean_abs_shap FROM feature_importance "
                         "WHERE run_id = ? ORDER BY position", first_run.id)
    assert len(features) == 19 and features[0][0] == "contract"
    assert [f[1] for f in features] == sorted((f[1] for f in features), reverse=True)
    assert all(shap is not None and (shap > 0) == (split > 0) for _, _, split, shap in features)


def test_the_workbench_evaluates_the_example_predictions(example_ws, first_run):
    """The evaluate stage writes predictions.parquet; the workbench computed the metrics its
    gates read from it, and kept the whole evaluation (issue 12 item 3)."""
    evaluation = WorkbenchSession(example_ws, runner="docker").evaluations(first_run.id)["evaluate"]
    assert (evaluation["task"], evaluation["rows"], evaluation["label"]) == ("binary", 1761, "churn")
    assert evaluation["confusion"]["labels"] == [0, 1] and evaluation["threshold"] == 0.5
    assert [g["group"] for g in evaluation["groups"]["senior_citizen"]] == ["0", "1"]
    metrics = first_run.metrics
    assert metrics["auc"] == evaluation["roc"]["auc"] and metrics["ece"] == evaluation["calibration"]["ece"]
    fairness = evaluation["fairness"]["female"]
    assert metrics["demographic_parity_difference.female"] == fairness["demographic_parity_difference"]
    evaluate = first_run.stages[2]
    assert any(line.startswith("evaluation of predictions.parquet: binary, 1761 rows") for line in evaluate.log_tail)


def test_unchanged_rerun_starts_no_container(example_ws, first_run, docker_engine):
    since = datetime.now(timezone.utc)
    started = time.perf_counter()
    record = WorkbenchSession(example_ws, runner="docker").run("telco-churn")
    elapsed = time.perf_counter() - started
    assert record.status is RunStatus.SUCCEEDED
    assert record.reused_stages == ["validate", "train", "evaluate"]
    assert created_containers(docker_engine, "telco-churn", since) == []
    assert record.metrics == first_run.metrics
    assert elapsed < 5  # a sanity bound only; the benchmark measures the real figure


def test_params_change_reruns_train_and_evaluate_not_validate(example_ws, first_run, docker_engine):
    params = example_ws / "telco-churn" / "params.toml"
    original = params.read_text()
    params.write_text(original.replace("num_leaves = 15", "num_leaves = 7"))
    try:
        since = datetime.now(timezone.utc)
        record = WorkbenchSession(example_ws, runner="docker").run("telco-churn")
    finally:
        params.write_text(original)
    assert {s.stage: str(s.status) for s in record.stages} == {
        "validate": "reused", "train": "succeeded", "evaluate": "succeeded"}
    # Both stages ran in one warm worker container (cold mode would create one per stage).
    assert len(created_containers(docker_engine, "telco-churn", since)) == 1
    assert record.stages[1].params["num_leaves"] == "7"


def test_an_evaluate_params_edit_reruns_evaluate_alone(example_ws, first_run):
    """evaluate names [evaluate] of params.toml, train [split] and [train]: an [evaluate] edit
    reuses train's model (issue 12 item 2)."""
    params = example_ws / "telco-churn" / "params.toml"
    original = params.read_text()
    params.write_text(original.replace("latency_samples = 200", "latency_samples = 50"))
    try:
        record = WorkbenchSession(example_ws, runner="docker").run("telco-churn")
    finally:
        params.write_text(original)
    assert {s.stage: str(s.status) for s in record.stages} == {
        "validate": "reused", "train": "reused", "evaluate": "succeeded"}
    assert json.loads(record.stages[2].param_values["params.toml:evaluate"])["latency_samples"] == 50


def test_a_cold_reproduction_of_the_warm_run_matches(example_ws, first_run, docker_engine):
    since = datetime.now(timezone.utc)
    record, result = WorkbenchSession(example_ws, runner="docker").reproduce(first_run.id)
    assert record.trigger == "reproduce" and record.snapshot_id == first_run.snapshot_id
    assert [str(s.status) for s in record.stages] == ["succeeded"] * 3, "a reproduction reuses nothing"
    assert result.matched, [str(d) for d in result.differences]
    assert result.artifacts_identical == {"model.txt": True}
    assert {"auc", "accuracy", "log_loss", "demographic_parity_difference.female"} <= set(result.compared)
    assert "latency_p95_ms" not in result.compared
    events = docker_engine.events(since=since, until=datetime.now(timezone.utc) + timedelta(seconds=2), decode=True,
                                  filters={"type": "container", "event": "create",
                                           "label": ["workbench.project=telco-churn", f"workbench.run_id={record.id}"]})
    assert len(list(events)) == 3, "cold: one fresh container per stage"


BAD_STAGES = """
[project]
name = "bad"

[environment]
memory = "64m"

[stages.exits]
command = "echo about to fail; exit 1"

[stages.hog]
command = "python3 -c 'x = bytearray(300 * 1024 * 1024); print(len(x))'"

[stages.net]
command = "python3 -c 'import urllib.request; urllib.request.urlopen(\\"http://example.com\\", timeout=5)'"

[stages.write_project]
command = "echo x > $WB_PROJECT_DIR/new.txt"
"""


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, docker_engine, docker_base_image):
    root = tmp_path_factory.mktemp("bad")
    (root / "bad").mkdir()
    (root / "bad" / "workbench.toml").write_text(BAD_STAGES)
    os.environ["WORKBENCH_BASE_IMAGE"] = docker_base_image
    try:
        return root, WorkbenchSession(root, runner="docker").run("bad")
    finally:
        os.environ.pop("WORKBENCH_BASE_IMAGE", None)


@pytest.mark.parametrize("stage,reason", [
    ("exits", "exited with code 1"),
    ("hog", "exceeded its memory limit"),
    ("net", "exited with code 1"),
    ("write_project", "exited with code"),
])
def test_bad_stages_fail_with_a_recorded_reason(bad_run, stage, reason):
    root, record = bad_run
    assert record.status is RunStatus.FAILED
    stored = {s.stage: s for s in WorkbenchSession(root).get_run(record.id).stages}
    assert stored[stage].status is StageStatus.FAILED
    assert reason in stored[stage].reason


def test_failure_log_tails_say_why(bad_run):
    root, record = bad_run
    stored = {s.stage: s for s in WorkbenchSession(root).get_run(record.id).stages}
    assert stored["exits"].log_tail == ["about to fail"]
    assert any("Network is unreachable" in line or "Temporary failure in name resolution" in line
               or "Name or service not known" in line for line in stored["net"].log_tail), stored["net"].log_tail
    assert any("Read-only file system" in line for line in stored["write_project"].log_tail)


SLOW = """
[project]
name = "slow"

[stages.sleep]
command = "echo started; sleep 60"
"""


def test_killed_workbench_leaves_a_consistent_store_and_no_container(tmp_path, docker_engine, docker_base_image):
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "workbench.toml").write_text(SLOW)
    env = dict(os.environ, WORKBENCH_BASE_IMAGE=docker_base_image)
    cmd = [sys.executable, "-m", "workbench", "--workspace", str(tmp_path)]
    proc = subprocess.Popen(cmd + ["run", "slow", "--runner", "docker"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        if "sleep │ started" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    labels = {"label": ["workbench.project=slow"]}
    assert len(docker_engine.containers.list(filters=labels)) == 1  # left behind by the dead process

    listed = subprocess.run(cmd + ["runs", "--json"], capture_output=True, text=True, env=env, check=True)
    (run,) = json.loads(listed.stdout)
    assert run["status"] == "interrupted"
    record = WorkbenchSession(tmp_path).get_run(run["id"])
    assert "stopped before the run finished" in record.reason and record.stages == []

    report = WorkbenchSession(tmp_path, runner="docker").recover()
    assert report.removed_containers == 1
    assert docker_engine.containers.list(all=True, filters=labels) == []

"""The MLflow mirror: the outbox's drain against a fake target (order, backoff, failures), then
against a real MLflow sqlite store: down during promotions, then up, and everything arrives
exactly once; retried and half-done sends create no duplicates; the background sync."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tests.test_pipeline_local import write_project
from workbench.core.errors import MirrorError
from workbench.services.registry import RegistryService
from workbench.services.session import WorkbenchSession

# MLflow's own SQLAlchemy use warns about itself; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class FakeMlflow:
    """A MirrorTarget that records calls; `down` makes every call fail as an unreachable server."""

    def __init__(self, uri: str = "fake://"):
        self.tracking_uri = uri
        self.calls: list[tuple] = []
        self.down = False
        self.fail_project: str | None = None
        self.runs: dict[int, str] = {}
        self.versions: dict[tuple[str, int], str] = {}
        self.aliases: dict[tuple[str, str], str] = {}

    def _check(self, project: str) -> None:
        if self.down:
            raise MirrorError("MLflow at fake://: not reachable (connection refused)", unreachable=True)
        if project == self.fail_project:
            raise MirrorError(f"MLflow at fake://: {project} is refused")

    def log_run(self, payload, known_id):
        self._check(payload["project"])
        self.calls.append(("log_run", payload["run_id"]))
        return self.runs.setdefault(payload["run_id"], f"r{payload['run_id']}")

    def register_version(self, payload, run_id, known_version):
        self._check(payload["project"])
        self.calls.append(("register_version", payload["version"]))
        key = (payload["project"], payload["version"])
        return run_id or f"r{payload['run_id']}", self.versions.setdefault(key, str(len(self.versions) + 1))

    def set_alias(self, payload, known_version):
        self._check(payload["project"])
        self.calls.append(("set_alias", payload["alias"], payload["version"]))
        version = known_version or self.versions[(payload["project"], payload["version"])]
        self.aliases[(payload["project"], payload["alias"])] = version
        return version


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    write_project(tmp_path)
    return tmp_path


def registry_with(root: Path, target: FakeMlflow | None = None, uri: str | None = None) -> RegistryService:
    session = WorkbenchSession(root, runner="local")
    return RegistryService(session.workspace, session.store,
                           mlflow_uri=uri or (target.tracking_uri if target else None),
                           mirror_target=(lambda _uri: target) if target else None)


def make_history(root: Path) -> WorkbenchSession:
    """Two runs, two versions; version 1 to staging and production, version 2 to staging."""
    session = WorkbenchSession(root, runner="local")
    session.run("tiny")
    (root / "tiny" / "params.toml").write_text("[fit]\nscale = 1.8\n")
    session.run("tiny")
    registry = session.registry
    for version, alias in ((1, "staging"), (1, "production"), (2, "staging")):
        assert registry.promote("tiny", version, alias).applied
    return session


# -- the drain, against a fake -----------------------------------------------------------------

def test_drain_sends_in_order_once(ws):
    make_history(ws)
    fake = FakeMlflow()
    registry = registry_with(ws, fake)
    assert registry.mirror_status().state == "pending" and registry.mirror_status().pending == 7
    report = registry.drain_mirror(timeout_s=10)
    assert (report.sent, report.failed, report.pending, report.error) == (7, 0, 0, None)
    assert fake.calls == [("log_run", 1), ("register_version", 1), ("log_run", 2), ("register_version", 2),
                          ("set_alias", "staging", 1), ("set_alias", "production", 1), ("set_alias", "staging", 2)]
    assert fake.aliases == {("tiny", "staging"): "2", ("tiny", "production"): "1"}
    assert registry.drain_mirror(timeout_s=10).sent == 0 and len(fake.calls) == 7
    status = registry.mirror_status()
    assert status.state == "in_sync" and status.summary == "MLflow in sync" and status.last_synced_at is not None


def test_down_keeps_everything_pending_with_the_error_and_backs_off(ws):
    make_history(ws)
    fake = FakeMlflow()
    fake.down = True
    registry = registry_with(ws, fake)
    report = registry.drain_mirror(timeout_s=10)
    assert (report.sent, report.failed, report.pending) == (0, 1, 7)  # the first failure stops the drain
    status = registry.mirror_status()
    assert status.state == "error" and status.failing == 1
    assert status.last_error == "MLflow at fake://: not reachable (connection refused)"
    assert status.next_attempt_at is not None
    fake.down = False
    # Without force, the failed item's backoff keeps the whole project waiting (order holds).
    assert registry.mirror.drain(timeout_s=10, force=False).sent == 0 and fake.calls == []
    assert registry.drain_mirror(timeout_s=10).sent == 7
    assert registry.mirror_status().state == "in_sync"


def test_one_projects_failure_does_not_block_another(tmp_path):
    write_project(tmp_path)
    other = write_project(tmp_path / "more")
    (other / "workbench.toml").write_text((other / "workbench.toml").read_text().replace('name = "tiny"',
                                                                                          'name = "other"'))
    session = WorkbenchSession(tmp_path, runner="local")
    session.run("tiny")
    session.run("other")
    fake = FakeMlflow()
    fake.fail_project = "tiny"
    report = registry_with(tmp_path, fake).drain_mirror(timeout_s=10)
    assert (report.sent, report.failed, report.pending) == (2, 1, 2)
    assert fake.calls == [("log_run", 2), ("register_version", 1)]


def test_misconfigured_uri_is_an_error_state_not_an_exception(ws):
    make_history(ws)
    registry = registry_with(ws, uri="bogus://nowhere")
    report = registry.drain_mirror(timeout_s=10)
    assert report.sent == 0 and report.pending == 7 and "bogus://nowhere" in report.error
    assert registry.mirror_status().state == "error"


def test_mirror_off(ws, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", "off")
    make_history(ws)
    registry = registry_with(ws)
    assert registry.mirror_status().state == "off"
    assert registry.drain_mirror().error == "the MLflow mirror is off"
    assert registry.request_mirror_sync() is False


# -- a real MLflow -----------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_state(uri: str) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    versions = client.search_model_versions("name = 'tiny'")
    return {
        "runs": sorted((r.data.tags["workbench.run_id"], r.info.status) for r in runs),
        "versions": sorted((v.tags["workbench.version"], v.tags["workbench.run_id"], v.version) for v in versions),
        "aliases": client.get_registered_model("tiny").aliases,
        "client": client,
        "run_objects": runs,
    }


def test_mlflow_down_during_promotions_then_up_everything_arrives_once(ws, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    down = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", down)
    session = WorkbenchSession(ws, runner="local")
    session.run("tiny")
    (ws / "tiny" / "params.toml").write_text("[fit]\nscale = 1.8\n")
    session.run("tiny")
    registry = session.registry
    timings = []
    for version, alias in ((1, "staging"), (1, "production"), (2, "staging"), (2, "production")):
        started = time.perf_counter()
        assert registry.promote("tiny", version, alias).applied
        timings.append(time.perf_counter() - started)
    assert max(timings) < 1.0, timings  # MLflow is not on a promotion's path at all
    assert registry.rollback("tiny").applied  # production back to 1

    report = registry.drain_mirror(timeout_s=20)
    assert report.sent == 0 and report.pending == 9 and "not reachable" in report.error
    status = registry.mirror_status()
    assert status.state == "error" and status.tracking_uri == down and f"MLflow at {down}" in status.last_error

    good = f"sqlite:///{tmp_path / 'mlflow-up.db'}"
    up = RegistryService(session.workspace, session.store, mlflow_uri=good)
    report = up.drain_mirror(timeout_s=60)
    assert (report.sent, report.pending, report.error) == (9, 0, None)
    state = mlflow_state(good)
    assert state["runs"] == [("1", "FINISHED"), ("2", "FINISHED")]
    assert [(wb, run) for wb, run, _ in state["versions"]] == [("1", "1"), ("2", "2")]
    mlflow_version = {wb: int(v) for wb, _, v in state["versions"]}
    assert state["aliases"] == {"staging": mlflow_version["2"], "production": mlflow_version["1"]}
    client = state["client"]
    assert client.get_model_version_by_alias("tiny", "production").tags["workbench.version"] == "1"
    run = next(r for r in state["run_objects"] if r.data.tags["workbench.run_id"] == "1")
    assert run.data.params == {"scale": "1.5"} and run.data.metrics == {"rows": 3.0, "score": 0.75}
    assert run.data.tags["workbench.snapshot_id"] == session.get_run(1).snapshot_id
    assert run.data.tags["workbench.image_id"] == session.get_run(1).image_id
    assert [f.path for f in client.list_artifacts(run.info.run_id, "model")] == ["model/model.json"]
    # Artifacts of a database store go to the workspace, not to ./mlruns of the current folder.
    assert (ws / ".workbench" / "mlflow-artifacts" / "tiny").is_dir() and not Path("mlruns").exists()

    again = up.drain_mirror(timeout_s=30)
    assert again.sent == 0 and mlflow_state(good)["runs"] == state["runs"]


def test_resending_after_a_crash_creates_no_duplicates(ws, tmp_path):
    """A drain that died after MLflow took an item, but before the outbox knew, sends it again:
    the run and the version are found by their workbench tags; a half-logged run is redone."""
    session = make_history(ws)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = RegistryService(session.workspace, session.store, mlflow_uri=uri)
    assert registry.drain_mirror(timeout_s=60).sent == 7
    before = mlflow_state(uri)
    client = before["client"]
    # A half-logged third run (no workbench.mirrored tag) and an outbox that forgot everything.
    session.run("tiny")  # run 3 reuses version 2
    experiment = client.get_experiment_by_name("tiny").experiment_id
    client.create_run(experiment, tags={"workbench.run_id": "3"})
    with duckdb.connect(str(ws / ".workbench" / "lineage.duckdb")) as con:
        con.execute("UPDATE mlflow_outbox SET done_at = NULL")
        con.execute("DELETE FROM mlflow_ids")
    fresh = RegistryService(session.workspace, session.store, mlflow_uri=uri)
    report = fresh.drain_mirror(timeout_s=60)
    assert report.sent == 8 and report.pending == 0
    after = mlflow_state(uri)
    assert after["runs"] == [("1", "FINISHED"), ("2", "FINISHED"), ("3", "FINISHED")]
    assert after["versions"] == before["versions"] and after["aliases"] == before["aliases"]


def test_background_sync_after_a_command(ws, tmp_path, monkeypatch):
    """What the CLI does after `run`, `promote` and `rollback`: a detached process drains the
    outbox while the command has already returned."""
    make_history(ws)
    uri = f"sqlite:///{tmp_path / 'bg.db'}"
    monkeypatch.setenv("WORKBENCH_MLFLOW_SYNC", "background")
    registry = registry_with(ws, uri=uri)
    started = time.perf_counter()
    assert registry.request_mirror_sync() is True
    assert time.perf_counter() - started < 0.5
    deadline = time.monotonic() + 60
    while registry.mirror_status().state != "in_sync" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert registry.mirror_status().state == "in_sync"
    assert len(mlflow_state(uri)["runs"]) == 2
    assert registry.request_mirror_sync() is False  # nothing due: no process


def test_mlflow_is_never_imported_by_runs_or_promotions(ws):
    code = (
        "import sys; from workbench.services.session import WorkbenchSession\n"
        f"s = WorkbenchSession({str(ws)!r}, runner='local'); s.run('tiny')\n"
        "r = s.registry; r.promote('tiny', 1, 'staging'); r.promote('tiny', 1, 'production')\n"
        "r.models('tiny'); r.history('tiny'); r.mirror_status(); r.rollback('tiny')\n"
        "print('mlflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_one_lingering_background_sync_serves_runs_that_follow(ws, tmp_path, monkeypatch):
    """In watch mode a run lands every few seconds: the background process stays a while and
    drains what follows, instead of one new process (and one import of mlflow) per run."""
    make_history(ws)
    uri = f"sqlite:///{tmp_path / 'linger.db'}"
    monkeypatch.setenv("WORKBENCH_MLFLOW_SYNC", "background")
    monkeypatch.setenv("WORKBENCH_MLFLOW_LINGER_S", "20")
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", uri)
    registry = registry_with(ws, uri=uri)
    assert registry.request_mirror_sync() is True
    deadline = time.monotonic() + 60
    while registry.mirror_status().state != "in_sync" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert registry.mirror_status().state == "in_sync"

    WorkbenchSession(ws, runner="local").run("tiny")  # a later run queues more items
    assert registry.request_mirror_sync() is False, "the lingering process is still there"
    deadline = time.monotonic() + 30
    while registry.mirror_status().state != "in_sync" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert registry.mirror_status().state == "in_sync"

"""The DuckDB lineage store against real database files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from workbench.adapters import duckdb_schema, duckdb_store
from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.core.errors import RunNotFound, StoreError
from workbench.core.gates import GateResult
from workbench.core.model import (Artifact, InputFile, RunRecord, RunStatus, StageResult, StageStatus,
                                  Trigger)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / ".workbench" / "lineage.duckdb"


@pytest.fixture
def store(db: Path) -> DuckDBLineageStore:
    return DuckDBLineageStore(db)


def sql(db: Path, statement: str, params: list | None = None) -> list[tuple]:
    """Look at (or tamper with) the file directly, between two store operations."""
    with duckdb.connect(str(db)) as con:
        return con.execute(statement, params or []).fetchall()


def stage(name: str, run_dir: Path, status: StageStatus = StageStatus.SUCCEEDED, cache_key: str = "",
          reused_from_run: int | None = None, metrics: dict[str, float] | None = None) -> StageResult:
    output_dir = run_dir / name
    output_dir.mkdir(parents=True, exist_ok=True)
    return StageResult(
        stage=name, status=status, command=f"python {name}.py", cache_key=cache_key or f"key-{name}",
        output_dir=str(output_dir), output_digest=f"digest-{name}", duration_s=1.25, exit_code=0,
        log_tail=["start", "done"], reused_from_run=reused_from_run,
        inputs=[InputFile("data/churn.csv", "a" * 64, 2048), InputFile(f"{name}.py", "b" * 64, 512)],
        metrics=metrics if metrics is not None else {f"{name}_seconds": 1.0},
        params={"seed": "42"},
        artifacts=[Artifact(f"{name}.json", str(output_dir / f"{name}.json"), "c" * 64, 99, kind="report")])


def finished(store: DuckDBLineageStore, project: str, tmp_path: Path, stages: list[StageResult] | None = None,
             gates: list[GateResult] | None = None, status: RunStatus = RunStatus.SUCCEEDED,
             primary_metric: str | None = "auc") -> RunRecord:
    """Start and finish one run the way the run service does."""
    run_id, started_at = store.start_run(project, f"/ws/{project}", "watch", "local", ["train"], ["data/churn.csv"])
    record = RunRecord(
        id=run_id, project=project, trigger=Trigger.WATCH, status=status, runner="local", started_at=started_at,
        finished_at=started_at + timedelta(seconds=7), image_id="sha256:" + "e" * 64, image_tag="wb/churn:3",
        manifest_hash="m" * 64, snapshot_id="s" * 64, stage_filter=["train"], changed_paths=["data/churn.csv"],
        stages=stages if stages is not None else [stage("train", tmp_path / f"run{run_id}", metrics={"auc": 0.83})],
        gates=gates if gates is not None else [GateResult("auc", ">=", 0.8, 0.83, True, "0.83 >= 0.8")])
    store.finish_run(record, primary_metric=primary_metric)
    return record


def write_csv(path: Path) -> Path:
    path.write_text("customer,tenure,monthly,senior,signup\n"
                    "a,1,20.5,yes,2020-01-01\n"
                    "b,5,,no,2020-02-01\n"
                    "c,12,70.25,,2020-03-01\n"
                    "d,24,99.0,no,\n")
    return path


# -- round trip ------------------------------------------------------------------------------

def test_a_run_round_trips_through_finish_run_get_run_and_lineage(store, tmp_path):
    profile = store.profile_dataset(str(write_csv(tmp_path / "churn.csv")), "fp-churn")
    run_dir = tmp_path / "run"
    stages = [stage("validate", run_dir, status=StageStatus.REUSED, reused_from_run=7),
              stage("train", run_dir, metrics={"auc": 0.91, "logloss": 0.3}),
              stage("evaluate", run_dir, status=StageStatus.FAILED)]
    stages[2].exit_code, stages[2].reason = 1, "exit code 1"
    gates = [GateResult("auc", ">=", 0.8, 0.91, True, "0.91 >= 0.8"),
             GateResult("recall", ">=", 0.5, None, None, "not evaluated (metric's stage did not run)"),
             GateResult("logloss", "<", 0.2, 0.3, False, "0.3 is not < 0.2")]
    run_id, started_at = store.start_run("churn", "/ws/churn", Trigger.MANUAL, "docker", [], [])
    record = RunRecord(
        id=run_id, project="churn", trigger=Trigger.MANUAL, status=RunStatus.FAILED, runner="docker",
        started_at=started_at, finished_at=started_at + timedelta(seconds=3), image_id="sha256:abc",
        image_tag="wb/churn:1", reason="stage evaluate failed", manifest_hash="mh", snapshot_id="snap",
        stages=stages, gates=gates, datasets=[profile])
    store.finish_run(record, primary_metric="auc")

    assert store.get_run(run_id) == record

    lineage = json.loads(json.dumps(store.lineage(run_id)))
    assert lineage["project"] == {"name": "churn", "path": "/ws/churn"}
    assert lineage["run"]["started_at"] == started_at.isoformat()
    assert lineage["run"]["duration_s"] == 3.0
    assert lineage["run"]["primary_metric"] == "auc" and lineage["run"]["primary_value"] == 0.91
    assert lineage["image"] == {"id": "sha256:abc", "tag": "wb/churn:1"}
    validate, train, evaluate = lineage["stages"]
    assert (validate["status"], validate["reused_from_run"]) == ("reused", 7)
    assert train["inputs"][0] == {"path": "data/churn.csv", "sha256": "a" * 64, "size": 2048}
    assert train["metrics"] == {"auc": 0.91, "logloss": 0.3} and train["params"] == {"seed": "42"}
    assert train["artifacts"][0]["kind"] == "report" and train["artifacts"][0]["sha256"] == "c" * 64
    assert (evaluate["exit_code"], evaluate["reason"]) == (1, "exit code 1")
    assert lineage["datasets"] == [{"path": profile.path, "fingerprint": "fp-churn", "row_count": 4,
                                    "schema": profile.schema}]
    assert [(g["rule"], g["passed"]) for g in lineage["gates"]] == [
        ("auc >= 0.8", True), ("recall >= 0.5", None), ("logloss < 0.2", False)]


def test_unknown_runs_are_reported_by_id(store, tmp_path):
    with pytest.raises(RunNotFound, match=r"^run 42 not found$"):
        store.get_run(42)
    with pytest.raises(RunNotFound, match="run 42 not found"):
        store.lineage(42)
    record = finished(store, "churn", tmp_path)
    with pytest.raises(StoreError, match=f"run {record.id} is already recorded as succeeded"):
        store.finish_run(record)


# -- listing ---------------------------------------------------------------------------------

def test_list_runs_is_newest_first_filtered_paged_and_counted(store, tmp_path):
    passing = GateResult("auc", ">=", 0.8, 0.83, True, "")
    failing = GateResult("f1", ">=", 0.9, 0.5, False, "")
    unevaluated = GateResult("recall", ">=", 0.5, None, None, "")
    first = finished(store, "churn", tmp_path, gates=[passing, failing, unevaluated])
    reused = [stage("validate", tmp_path / "r", status=StageStatus.REUSED, reused_from_run=first.id),
              stage("train", tmp_path / "r", metrics={"auc": 0.9})]
    second = finished(store, "churn", tmp_path, stages=reused, gates=[passing])
    other = finished(store, "houses", tmp_path, primary_metric=None)
    running, _ = store.start_run("churn", "/ws/churn", "manual", "local", [], [])

    runs = store.list_runs()
    assert [r.id for r in runs] == [running, other.id, second.id, first.id]
    assert [r.id for r in store.list_runs("churn")] == [running, second.id, first.id]
    assert [r.id for r in store.list_runs("churn", limit=1, offset=1)] == [second.id]
    assert store.list_runs("nobody") == []

    by_id = {r.id: r for r in runs}
    assert (by_id[first.id].gates_passed, by_id[first.id].gates_failed) == (1, 1)
    assert (by_id[second.id].reused, by_id[second.id].stages, by_id[second.id].primary_metric) == (1, 2, 0.9)
    assert by_id[other.id].primary_metric is None
    assert by_id[first.id].started_at == first.started_at and by_id[first.id].duration_s == 7.0
    assert (by_id[running].status, by_id[running].duration_s, by_id[running].stages) == ("running", None, 0)
    assert (store.count_runs(), store.count_runs("churn"), store.count_runs("nobody")) == (4, 3, 0)


# -- reuse -----------------------------------------------------------------------------------

def test_find_reusable_stage_follows_reuse_back_to_the_run_that_produced_the_outputs(store, tmp_path):
    original = finished(store, "churn", tmp_path, stages=[stage("train", tmp_path / "a", cache_key="k1")])
    produced = original.stages[0]
    found = store.find_reusable_stage("churn", "train", "k1")
    assert found.status is StageStatus.SUCCEEDED and found.reused_from_run == original.id
    assert (found.output_dir, found.output_digest, found.metrics) == (produced.output_dir, "digest-train",
                                                                      produced.metrics)
    assert (found.inputs, found.params, found.artifacts) == (produced.inputs, produced.params, produced.artifacts)

    # A later run reused it: its row points at the original run and the original's folder.
    copy = store.find_reusable_stage("churn", "train", "k1")
    copy.status = StageStatus.REUSED
    finished(store, "churn", tmp_path, stages=[copy])
    again = store.find_reusable_stage("churn", "train", "k1")
    assert (again.reused_from_run, again.output_dir) == (original.id, produced.output_dir)


def test_find_reusable_stage_misses(store, tmp_path):
    failed = stage("train", tmp_path / "f", status=StageStatus.FAILED, cache_key="k-failed")
    finished(store, "churn", tmp_path, stages=[failed, stage("evaluate", tmp_path / "f", cache_key="k1")])
    assert store.find_reusable_stage("churn", "train", "k-failed") is None
    assert store.find_reusable_stage("churn", "train", "k1") is None  # other stage
    assert store.find_reusable_stage("houses", "evaluate", "k1") is None  # other project
    assert store.find_reusable_stage("churn", "evaluate", "k1") is not None
    os.rmdir(tmp_path / "f" / "evaluate")
    assert store.find_reusable_stage("churn", "evaluate", "k1") is None


# -- interrupted runs ------------------------------------------------------------------------

def test_mark_interrupted_finds_runs_whose_process_is_gone(store, db):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead, _ = store.start_run("churn", "/ws/churn", "watch", "local", [], [])
    reused_pid, _ = store.start_run("churn", "/ws/churn", "watch", "local", [], [])
    alive, _ = store.start_run("churn", "/ws/churn", "watch", "local", [], [])
    # Started where there is no /proc: only the pid can be checked.
    dead_without_proc, _ = store.start_run("churn", "/ws/churn", "watch", "local", [], [])
    alive_without_proc, _ = store.start_run("churn", "/ws/churn", "watch", "local", [], [])
    sql(db, "UPDATE runs SET pid = ? WHERE id = ?", [child.pid, dead])
    # Our own pid, but a different start time: the pid now belongs to another process.
    sql(db, "UPDATE runs SET proc_start = proc_start - 1 WHERE id = ?", [reused_pid])
    sql(db, "UPDATE runs SET proc_start = NULL, pid = ? WHERE id = ?", [child.pid, dead_without_proc])
    sql(db, "UPDATE runs SET proc_start = NULL WHERE id = ?", [alive_without_proc])

    assert sorted(store.mark_interrupted()) == [dead, reused_pid, dead_without_proc]
    interrupted = store.get_run(dead)
    assert interrupted.status is RunStatus.INTERRUPTED
    assert interrupted.reason == f"the workbench process (pid {child.pid}) stopped before the run finished"
    assert store.get_run(alive).status is store.get_run(alive_without_proc).status is RunStatus.RUNNING
    assert store.mark_interrupted() == []


# -- atomicity -------------------------------------------------------------------------------

CHILD_TABLES = ("stage_runs", "input_files", "params", "metrics", "artifacts", "gate_results", "run_datasets")


def child_rows(db: Path, run_id: int) -> dict[str, int]:
    return {table: sql(db, f"SELECT count(*) FROM {table} WHERE run_id = ?", [run_id])[0][0]
            for table in CHILD_TABLES}


def test_a_failure_half_way_through_finish_run_leaves_nothing_behind(store, db, tmp_path, monkeypatch):
    real_insert = duckdb_store._insert

    def insert_then_fail_at_gates(con, table, rows):
        if table == "gate_results":
            raise RuntimeError("disk on fire")
        real_insert(con, table, rows)

    monkeypatch.setattr(duckdb_store, "_insert", insert_then_fail_at_gates)
    with pytest.raises(RuntimeError, match="disk on fire"):
        finished(store, "churn", tmp_path)
    run_id = store.list_runs()[0].id
    assert store.get_run(run_id).status is RunStatus.RUNNING
    assert child_rows(db, run_id) == dict.fromkeys(CHILD_TABLES, 0)


def test_a_database_error_in_finish_run_is_a_store_error_and_rolls_back(store, db, tmp_path):
    run_id, started_at = store.start_run("churn", "/ws/churn", "watch", "local", [], [])
    broken_gate = GateResult(None, ">=", 0.8, 0.9, True, "")  # violates NOT NULL, after the stage rows
    record = RunRecord(id=run_id, project="churn", trigger=Trigger.WATCH, status=RunStatus.SUCCEEDED,
                       runner="local", started_at=started_at, finished_at=started_at,
                       stages=[stage("train", tmp_path)], gates=[broken_gate])
    with pytest.raises(StoreError, match=f"lineage store {db}: .*NOT NULL"):
        store.finish_run(record)
    assert store.get_run(run_id).status is RunStatus.RUNNING
    assert child_rows(db, run_id) == dict.fromkeys(CHILD_TABLES, 0)


# -- migrations ------------------------------------------------------------------------------

def test_a_fresh_database_is_at_the_latest_schema_version(store, db):
    latest = len(duckdb_schema.MIGRATIONS)
    assert sql(db, "SELECT version FROM schema_version ORDER BY version") == [(v,) for v in range(1, latest + 1)]
    DuckDBLineageStore(db)  # reopening applies nothing twice
    assert sql(db, "SELECT count(*) FROM schema_version") == [(latest,)]


def test_new_migrations_are_applied_in_order_and_a_failing_one_changes_nothing(store, db, monkeypatch):
    grown = len(duckdb_schema.MIGRATIONS) + 2
    monkeypatch.setattr(duckdb_schema, "MIGRATIONS", duckdb_schema.MIGRATIONS + [
        "CREATE TABLE notes (run_id INTEGER, text VARCHAR)",
        "ALTER TABLE notes ADD COLUMN author VARCHAR"])
    DuckDBLineageStore(db)
    assert sql(db, "SELECT max(version) FROM schema_version") == [(grown,)]
    assert [c[0] for c in sql(db, "DESCRIBE notes")] == ["run_id", "text", "author"]

    monkeypatch.setattr(duckdb_schema, "MIGRATIONS", duckdb_schema.MIGRATIONS + [
        "CREATE TABLE half_done (x INTEGER); SELECT * FROM no_such_table"])
    with pytest.raises(StoreError, match="no_such_table"):
        DuckDBLineageStore(db)
    assert sql(db, "SELECT max(version) FROM schema_version") == [(grown,)]
    assert sql(db, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'half_done'") == [(0,)]


def test_a_database_from_a_newer_workbench_is_refused(store, db):
    known = len(duckdb_schema.MIGRATIONS)
    sql(db, f"INSERT INTO schema_version VALUES ({known + 1}, now()::TIMESTAMP)")
    with pytest.raises(StoreError, match=rf"was written by a newer workbench \(schema v{known + 1}, this one knows "
                                         rf"v{known}\)"):
        DuckDBLineageStore(db)


def test_a_file_that_is_not_a_database_gives_a_store_error(tmp_path):
    bogus = tmp_path / "lineage.duckdb"
    bogus.write_text("not a database")
    with pytest.raises(StoreError, match=f"the lineage store {bogus}: .*not a valid DuckDB database"):
        DuckDBLineageStore(bogus)


# -- dataset profiles ------------------------------------------------------------------------

def test_profile_of_a_csv_file(store, tmp_path):
    path = str(write_csv(tmp_path / "churn.csv"))
    assert store.known_profile("fp1") is None
    profile = store.profile_dataset(path, "fp1")

    assert (profile.path, profile.fingerprint, profile.row_count) == (path, "fp1", 4)
    assert profile.schema == {"customer": "VARCHAR", "tenure": "BIGINT", "monthly": "DOUBLE",
                              "senior": "BOOLEAN", "signup": "DATE"}  # yes/no is read as a boolean
    columns = {c.name: c for c in profile.columns}
    assert {name: c.nulls for name, c in columns.items()} == {
        "customer": 0, "tenure": 0, "monthly": 1, "senior": 1, "signup": 1}
    tenure = columns["tenure"]
    assert (tenure.count, tenure.distinct, tenure.min, tenure.max) == (4, 4, "1", "24")
    assert tenure.mean == pytest.approx(10.5) and tenure.q50 is not None and tenure.std > 0
    assert columns["signup"].mean is None and columns["signup"].min == "2020-01-01"
    assert store.known_profile("fp1") == profile


def test_profile_of_a_parquet_file(store, tmp_path):
    parquet = tmp_path / "churn.parquet"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT range AS id, range % 3 = 0 AS churned FROM range(10)) TO '{parquet}'")
    profile = store.profile_dataset(str(parquet), "fp-parquet")
    assert profile.row_count == 10 and profile.schema == {"id": "BIGINT", "churned": "BOOLEAN"}


@pytest.mark.parametrize(("name", "content", "rows", "problems"), [
    ("latin1.csv", b"name,city\nJos\xe9,M\xe1laga\nAna,Rome\n", 1,
     ("1 row could not be read and is left out of its profile (1 profiled)", "line 2: not UTF-8 text")),
    ("ragged.csv", b"a,b,c\n" + b"1,2,3\n" * 20 + b"1,2\n", 20,
     ("1 row could not be read and is left out of its profile (20 profiled)",
      "line 22: 2 fields where the header has 3")),
    ("cast.csv", b"a,b\n" + b"1,2\n" * 30000 + b"x,2\n", 30000,
     ("1 row could not be read and is left out of its profile (30,000 profiled)",
      "line 30002: column a: 'x' is not a BIGINT like the rest of the column")),
    ("broken.parquet", b"PAR1 but not really", 0, ("not profiled: cannot read it as a Parquet table: No magic bytes",)),
])
def test_a_malformed_data_file_is_profiled_as_far_as_it_reads_naming_lines(store, tmp_path, name, content, rows,
                                                                          problems):
    """A profile never raises for what is in the file (issue 11 item 2): the rows it could not
    read are named by line, and a file it cannot read at all says why."""
    path = tmp_path / name
    path.write_bytes(content)
    profile = store.profile_dataset(str(path), "fp")
    assert profile.row_count == rows
    assert profile.problems[:-1] == problems[:-1] and profile.problems[-1].startswith(problems[-1])
    assert store.known_profile("fp") == profile


def test_many_bad_rows_are_counted_and_the_first_named():
    from workbench.adapters.data_profile import profile_file
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as fh:
        fh.write("a,b\n" + "1,2\n1\n" * 8)
    profile = profile_file(fh.name, "fp")
    assert profile.row_count == 8 and profile.problems[0].startswith("8 rows could not be read")
    assert profile.problems[1:] == tuple(f"line {n}: 1 field where the header has 2" for n in (3, 5, 7, 9, 11)) + (
        "and 3 more",)


def test_profiling_a_missing_file_says_so_in_the_profile(store, tmp_path):
    profile = store.profile_dataset(str(tmp_path / "missing.csv"), "fp")
    assert not profile.readable and profile.problems[0].startswith("not profiled: cannot read it as a CSV table: ")
    assert "No files found" in profile.problems[0]


# -- several processes -----------------------------------------------------------------------

WRITER = """
import sys
from datetime import timedelta
from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.core.gates import GateResult
from workbench.core.model import RunRecord, RunStatus, StageResult, StageStatus, Trigger

store = DuckDBLineageStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    run_id, started = store.start_run(sys.argv[2], "/ws", "watch", "local", [], [])
    stage = StageResult("train", StageStatus.SUCCEEDED, "python train.py", f"{sys.argv[2]}-{i}", "/tmp",
                        metrics={"auc": 0.8})
    store.finish_run(RunRecord(id=run_id, project=sys.argv[2], trigger=Trigger.WATCH, status=RunStatus.SUCCEEDED,
                               runner="local", started_at=started, finished_at=started + timedelta(seconds=1),
                               stages=[stage], gates=[GateResult("auc", ">=", 0.5, 0.8, True, "")]), "auc")
"""

HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def python(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_processes_writing_at_once_both_land(store, db):
    writers = [python(WRITER, str(db), project, "15") for project in ("churn", "houses")]
    while any(w.poll() is None for w in writers):
        store.list_runs(limit=5)  # this process reads while they write
    for writer in writers:
        assert writer.wait() == 0, writer.stderr.read()
    assert (store.count_runs("churn"), store.count_runs("houses")) == (15, 15)
    runs = store.list_runs(limit=100)
    assert len({r.id for r in runs}) == 30 and all(r.gates_passed == 1 for r in runs)


def test_a_store_held_too_long_by_another_process_is_busy(store, db):
    impatient = DuckDBLineageStore(db, busy_timeout_s=0.2)
    holder = python(HOLDER, str(db), "1.0")
    assert holder.stdout.readline() == "holding\n"
    with pytest.raises(StoreError, match=rf"the lineage store {db} is busy: another process \(pid {holder.pid}\) "
                                         r"held it for 0.2 s"):
        impatient.count_runs()
    started = time.monotonic()
    assert store.count_runs() == 0  # the patient one waits for the holder to let go
    assert time.monotonic() - started > 0.3
    assert holder.wait() == 0

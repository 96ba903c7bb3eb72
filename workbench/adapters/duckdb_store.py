"""The lineage store on DuckDB: which code, data, params and image produced which result.

DuckDB lets one process at a time hold a database file for writing, and the TUI and a CLI
command work on the same workspace at once. So no operation keeps the file: each one attaches
it, runs one short transaction and detaches it, retrying while another process holds it.
Attaching the file to a DuckDB instance that stays open costs about 1 ms; a fresh
`duckdb.connect(path)` costs 15-20 ms, nearly all of it spent building the built-in function
catalog. So the process keeps one in-memory instance and attaches the file to it.
"""

from __future__ import annotations

import os
import random
import re
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import duckdb

from workbench.adapters.data_profile import profile_file
from workbench.adapters.duckdb_schema import migrate
from workbench.adapters.duckdb_stage_params import read_stage_params, stage_params_rows
from workbench.adapters.workspace_paths import WorkspacePaths
from workbench.core.errors import DiskFullError, RunNotFound, StoreError
from workbench.core.gates import GateResult
from workbench.core.model import (Artifact, ColumnProfile, DatasetProfile, InputFile, RunRecord,
                                  RunStatus, RunSummary, StageResult, StageStatus, Trigger)

ALIAS = "lineage"
BUSY_MARKERS = ("Could not set lock on file", "Unique file handle conflict")
"""DuckDB's words for "another process (or another DuckDB instance in this one) has the file"."""

RUN_COLUMNS = ("id", "project", "trigger", "status", "runner", "started_at", "finished_at",
               "image_id", "image_tag", "reason", "manifest_hash", "snapshot_id", "stage_filter",
               "changed_paths", "superseded_by", "sweep", "sweep_trial")
STAGE_COLUMNS = ("run_id", "stage", "status", "command", "cache_key", "output_dir", "output_digest",
                 "started_at", "finished_at", "duration_s", "exit_code", "reason", "log_tail",
                 "reused_from_run", "worker", "host", "image_id")
# started_at as microseconds since the epoch: building aware datetimes from numbers is twice as
# fast as attaching a time zone to the naive datetimes DuckDB returns, which shows at 100k rows.
SUMMARY_COLUMNS = ("id, project, trigger, status, runner, epoch_us(started_at), duration_s, n_reused, n_stages, "
                   "primary_value, gates_passed, gates_failed, sweep, sweep_trial")

# One DuckDB instance per process, used by one operation at a time: attaching the same file
# twice in a process is refused, and store objects for one workspace may live in several threads.
_engine_lock = threading.RLock()
_engine: tuple[int, duckdb.DuckDBPyConnection] | None = None


def _instance() -> duckdb.DuckDBPyConnection:
    global _engine
    # A forked child must not use its parent's instance: the instance's threads were not copied.
    if _engine is None or _engine[0] != os.getpid():
        _engine = (os.getpid(), duckdb.connect(":memory:"))
    return _engine[1]


class DuckDBLineageStore:
    def __init__(self, path: str | Path, busy_timeout_s: float = 15.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.paths = WorkspacePaths.for_state_file(self.path)
        """Paths are stored relative to the workspace and resolved against where it is now."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the folder of the lineage store {self.path}: {e.strerror}") from e
        with self._session(write=True) as con:
            migrate(con, str(self.path))

    # -- runs --------------------------------------------------------------------------------

    def start_run(self, project: str, project_path: str, trigger: str, runner: str,
                  stage_filter: list[str], changed_paths: list[str]) -> tuple[int, datetime]:
        started_at = datetime.now(timezone.utc)
        pid = os.getpid()
        project_path = self.paths.stored(project_path)
        with self._session(write=True) as con:
            # Written only when new or moved: every table a transaction touches costs its checkpoint.
            known = con.execute("SELECT path FROM projects WHERE name = ?", [project]).fetchone()
            if known is None or known[0] != project_path:
                con.execute("INSERT INTO projects VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET path = excluded.path",
                            [project, project_path])
            run_id = con.execute(
                "INSERT INTO runs (project, trigger, status, runner, started_at, stage_filter, changed_paths, "
                "pid, host, proc_start, project_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [project, str(trigger), RunStatus.RUNNING.value, runner, _to_db(started_at),
                 list(stage_filter), list(changed_paths), pid, socket.gethostname(), _process_start(pid),
                 project_path],
            ).fetchone()[0]
        return run_id, started_at

    def finish_run(self, record: RunRecord, primary_metric: str | None = None) -> None:
        """Write the whole run in one transaction; `primary_metric` names the value the run list shows."""
        rows = _child_rows(record, self.paths)
        metrics = record.metrics
        with self._session(write=True) as con:
            updated = con.execute(
                "UPDATE runs SET status = ?, finished_at = ?, duration_s = ?, image_id = ?, image_tag = ?, "
                "reason = ?, manifest_hash = ?, snapshot_id = ?, stage_filter = ?, changed_paths = ?, "
                "superseded_by = ?, primary_metric = ?, primary_value = ?, n_stages = ?, n_reused = ?, "
                "gates_passed = ?, gates_failed = ? WHERE id = ? AND status IN (?, ?) RETURNING id",
                [str(record.status), _to_db(record.finished_at), record.duration_s, record.image_id,
                 record.image_tag, record.reason, record.manifest_hash, record.snapshot_id,
                 list(record.stage_filter), list(record.changed_paths), record.superseded_by,
                 primary_metric, metrics.get(primary_metric) if primary_metric else None,
                 len(record.stages), len(record.reused_stages),
                 sum(g.passed is True for g in record.gates), sum(g.passed is False for g in record.gates),
                 record.id, RunStatus.RUNNING.value, RunStatus.INTERRUPTED.value],
            ).fetchall()
            if not updated:
                # A run is finished once, so there are never earlier child rows to replace. An
                # interrupted run may still finish: its process was only presumed dead.
                status = con.execute("SELECT status FROM runs WHERE id = ?", [record.id]).fetchone()
                if status is None:
                    raise RunNotFound(f"run {record.id} not found")
                raise StoreError(f"run {record.id} is already recorded as {status[0]}")
            for table, table_rows in rows.items():
                _insert(con, table, table_rows)
            for profile in record.datasets:
                _save_profile(con, profile, self.paths)

    def set_superseded_by(self, run_id: int, by_run_id: int) -> None:
        """Link a superseded run to the run that replaced it (the replacement gets its id only
        after the superseded run is recorded, hence a second, short transaction)."""
        with self._session(write=True) as con:
            updated = con.execute("UPDATE runs SET superseded_by = ? WHERE id = ? RETURNING id",
                                  [by_run_id, run_id]).fetchall()
        if not updated:
            raise RunNotFound(f"run {run_id} not found")

    def tag_sweep_trial(self, run_id: int, sweep: str, trial: int) -> None:
        """Mark a run as trial `trial` of sweep `sweep` (as it starts: a trial stopped midway is
        still found by its sweep)."""
        with self._session(write=True) as con:
            updated = con.execute("UPDATE runs SET sweep = ?, sweep_trial = ? WHERE id = ? RETURNING id",
                                  [sweep, trial, run_id]).fetchall()
        if not updated:
            raise RunNotFound(f"run {run_id} not found")

    def sweep_runs(self, sweep: str) -> list[tuple[int, int, str]]:
        """(run id, trial number, status) of a sweep's runs, by trial."""
        with self._session() as con:
            return con.execute("SELECT id, sweep_trial, status FROM runs WHERE sweep = ? ORDER BY sweep_trial, id",
                               [sweep]).fetchall()

    def mark_interrupted(self) -> list[int]:
        host = socket.gethostname()
        with self._session(write=True) as con:
            running = con.execute("SELECT id, pid, proc_start FROM runs WHERE status = ? AND host = ?",
                                  [RunStatus.RUNNING.value, host]).fetchall()
            dead = [(run_id, pid) for run_id, pid, proc_start in running if not _is_alive(pid, proc_start)]
            for run_id, pid in dead:
                con.execute("UPDATE runs SET status = ?, reason = ? WHERE id = ?",
                            [RunStatus.INTERRUPTED.value,
                             f"the workbench process (pid {pid}) stopped before the run finished", run_id])
        return [run_id for run_id, _ in dead]

    def list_runs(self, project: str | None = None, limit: int = 50, offset: int = 0,
                  match: str | None = None) -> list[RunSummary]:
        """Newest first. Reads only the runs table, which finish_run keeps denormalised.
        `match`: words that must each appear in the run's id, trigger, status or runner."""
        where, params = _run_filter(project, match)
        params += [limit, offset]
        with self._session() as con:
            rows = con.execute(f"SELECT {SUMMARY_COLUMNS} FROM runs {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                               params).fetchall()
        utc = timezone.utc
        return [RunSummary(run_id, project_, trigger, status, runner, datetime.fromtimestamp(started_us / 1e6, utc),
                           duration_s, reused, stages, primary_value, passed, failed, sweep, trial)
                for (run_id, project_, trigger, status, runner, started_us, duration_s, reused, stages, primary_value,
                     passed, failed, sweep, trial) in rows]

    def list_runs_json(self, project: str | None = None, limit: int = 50, offset: int = 0) -> list[str]:
        """The same rows as list_runs, each already a JSON object: DuckDB writes the JSON, so
        listing 100,000 runs stays well under a second (Python objects cost ~2 s here)."""
        where = "WHERE project = ?" if project is not None else ""
        params = ([project] if project is not None else []) + [limit, offset]
        with self._session() as con:
            rows = con.execute(f"""
                SELECT json_object('id', id, 'project', project, 'trigger', trigger, 'status', status,
                    'runner', runner, 'started_at', strftime(started_at, '%Y-%m-%dT%H:%M:%S.%f+00:00'),
                    'duration_s', duration_s, 'reused', n_reused, 'stages', n_stages,
                    'primary_metric', CASE WHEN isnan(primary_value) THEN NULL ELSE primary_value END,
                    'gates_passed', gates_passed, 'gates_failed', gates_failed,
                    'sweep', sweep, 'sweep_trial', sweep_trial)::VARCHAR
                FROM runs {where} ORDER BY id DESC LIMIT ? OFFSET ?""", params).fetchall()
        return [row[0] for row in rows]

    def count_runs(self, project: str | None = None, match: str | None = None) -> int:
        where, params = _run_filter(project, match)
        with self._session() as con:
            return con.execute(f"SELECT count(*) FROM runs {where}", params).fetchone()[0]

    def generation(self) -> dict[str, tuple]:
        """A fingerprint of what any process has recorded, in three parts: `runs` changes when
        a run starts, finishes, is interrupted or superseded; `registry` when a version is
        registered or an alias moves (or a promotion is refused); `drift` when a batch is
        checked or retrained on. One small read-only query: cheap enough for a screen to ask
        once a second whether to read again, and which panes.

        Every commit of any process writes the file or its write-ahead log, so while neither
        has changed (size, mtime) the last answer stands and the file is not even opened. An
        mtime is as coarse as the kernel's clock tick, so two writes a few ms apart can share
        it: a file written in the last two seconds is read whatever its stamp says."""
        stamp = tuple(_stat_stamp(p) for p in (self.path, self.path.with_name(self.path.name + ".wal")))
        cached = getattr(self, "_generation", None)
        settled = all(s is None or time.time_ns() - s[1] > 2_000_000_000 for s in stamp)
        if cached is not None and cached[0] == stamp and settled:
            return cached[1]
        with self._session() as con:
            row = con.execute(
                "SELECT (SELECT max(id) FROM runs), (SELECT count(*) FROM runs), (SELECT max(finished_at) FROM runs), "
                "(SELECT count(*) FROM runs WHERE status = 'running'), (SELECT count(superseded_by) FROM runs), "
                "(SELECT max(id) FROM audit), (SELECT count(*) FROM model_versions), "
                "(SELECT count(*) FROM drift_batches), (SELECT sum(hash(id, state, landed_at, checked_at, retrain, "
                "retrain_reason, retrain_run_id)) FROM drift_batches)").fetchone()
        answer = {"runs": tuple(row[:5]), "registry": tuple(row[5:7]), "drift": tuple(row[7:])}
        self._generation = (stamp, answer)
        return answer

    def get_run(self, run_id: int) -> RunRecord:
        with self._session() as con:
            return _read_run(con, run_id, self.paths)

    def lineage(self, run_id: int) -> dict[str, Any]:
        """Everything that traces a run to its code, data, params and image, as JSON-ready values."""
        with self._session() as con:
            record = _read_run(con, run_id, self.paths)
            project_path, primary_metric, primary_value = con.execute(
                "SELECT coalesce(r.project_path, p.path), r.primary_metric, r.primary_value FROM runs r "
                "LEFT JOIN projects p ON p.name = r.project WHERE r.id = ?", [run_id]).fetchone()
        project_path = self.paths.resolved(project_path)
        run = {name: getattr(record, name) for name in RUN_COLUMNS}
        run.update(duration_s=record.duration_s, primary_metric=primary_metric, primary_value=primary_value)
        return _jsonable({
            "project": {"name": record.project, "path": project_path},
            "run": run,
            "image": {"id": record.image_id, "tag": record.image_tag},
            "stages": [asdict(stage) for stage in record.stages],
            "datasets": [{"path": d.path, "fingerprint": d.fingerprint, "row_count": d.row_count,
                          "schema": d.schema} for d in record.datasets],
            "gates": [dict(asdict(gate), rule=gate.rule) for gate in record.gates],
        })

    def save_evaluation(self, run_id: int, stage: str, payload: dict[str, Any]) -> None:
        from workbench.adapters.duckdb_evaluation import DuckDBEvaluationStore

        DuckDBEvaluationStore(self).save(run_id, stage, payload)

    def evaluations(self, run_id: int) -> dict[str, dict[str, Any]]:
        """Stage -> the evaluation the workbench computed (workbench.adapters.duckdb_evaluation)."""
        from workbench.adapters.duckdb_evaluation import DuckDBEvaluationStore

        return DuckDBEvaluationStore(self).evaluations(run_id)

    # -- stages ------------------------------------------------------------------------------

    def find_reusable_stage(self, project: str, stage: str, cache_key: str) -> StageResult | None:
        """The latest successful result for this key whose outputs are still on disk.

        `reused_from_run` of the answer names the run that produced the outputs: a stage that
        was itself reused points at the original run and keeps the original's output folder.
        """
        with self._session() as con:
            candidates = con.execute(
                "SELECT run_id, output_dir FROM stage_runs WHERE cache_key = ? AND project = ? AND stage = ? "
                "AND status IN (?, ?) ORDER BY run_id DESC",
                [cache_key, project, stage, StageStatus.SUCCEEDED.value, StageStatus.REUSED.value]).fetchall()
            found = next((run_id for run_id, output_dir in candidates
                          if os.path.isdir(self.paths.resolved(output_dir))), None)
            if found is None:
                return None
            result = _read_stages(con, found, self.paths, stage)[0]
        if result.reused_from_run is None:
            result.reused_from_run = found
        result.status = StageStatus.SUCCEEDED
        return result

    # -- datasets ----------------------------------------------------------------------------

    def known_profile(self, fingerprint: str) -> DatasetProfile | None:
        with self._session() as con:
            row = con.execute("SELECT path, fingerprint, row_count, columns, problems FROM datasets "
                              "WHERE fingerprint = ?", [fingerprint]).fetchone()
        return _profile_from_row(row, self.paths) if row else None

    def profile_dataset(self, path: str, fingerprint: str) -> DatasetProfile:
        """The file's profile, saved; what it could not read is in its `problems` (rows left
        out, or the whole file): a profile never stops a run (workbench.adapters.data_profile)."""
        profile = profile_file(path, fingerprint)
        with self._session(write=True) as con:
            _save_profile(con, profile, self.paths)
        return profile

    # -- the file ----------------------------------------------------------------------------

    def transaction(self, write: bool = False):
        """One short transaction on the file, for sibling adapters that keep their tables in
        the same database (the model registry): same attach, retry and error mapping."""
        return self._session(write)

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Attach the file for one transaction (read-only sessions share it with other readers)."""
        with _engine_lock:
            con = _instance().cursor()
            try:
                self._attach(con, write)
                try:
                    con.execute(f"USE {ALIAS}")
                    con.execute("BEGIN TRANSACTION")
                    try:
                        yield con
                    except BaseException:
                        con.execute("ROLLBACK")
                        raise
                    con.execute("COMMIT")
                finally:
                    con.execute("USE memory")
                    con.execute(f"DETACH {ALIAS}")
            except duckdb.Error as e:
                if "No space left on device" in str(e):
                    # The transaction is lost whole: what the store held before stays as it was.
                    raise DiskFullError(f"disk full: the lineage store {self.path} could not be written; "
                                        "nothing of this was recorded; free some space and run again") from e
                raise StoreError(f"the lineage store {self.path}: {_problem(e)}") from e
            finally:
                con.close()

    def _attach(self, con: duckdb.DuckDBPyConnection, write: bool) -> None:
        quoted = "'" + str(self.path).replace("'", "''") + "'"
        sql = f"ATTACH {quoted} AS {ALIAS}" + ("" if write else " (READ_ONLY)")
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.002
        while True:
            try:
                con.execute(sql)
                return
            except duckdb.Error as e:
                if not any(marker in str(e) for marker in BUSY_MARKERS):
                    raise
                if time.monotonic() + delay > deadline:
                    holder = re.search(r"\(PID (\d+)\)", str(e))
                    who = f"another process (pid {holder.group(1)})" if holder else "another process"
                    raise StoreError(f"the lineage store {self.path} is busy: {who} held it for "
                                     f"{self.busy_timeout_s:g} s") from e
            # Jitter keeps two waiting processes from retrying in lockstep.
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.05)


# -- reading ---------------------------------------------------------------------------------

def _run_filter(project: str | None, match: str | None) -> tuple[str, list]:
    """A WHERE clause for run listings: the project, and each word of `match` found
    (case-insensitively) in the run's id, trigger, status or runner."""
    clauses, params = [], []
    if project is not None:
        clauses.append("project = ?")
        params.append(project)
    for word in (match or "").split():
        clauses.append("concat_ws(' ', id, trigger, status, runner) ILIKE ? ESCAPE '\\'")
        params.append("%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def _read_run(con: duckdb.DuckDBPyConnection, run_id: int, paths: WorkspacePaths) -> RunRecord:
    row = con.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = ?", [run_id]).fetchone()
    if row is None:
        raise RunNotFound(f"run {run_id} not found")
    run = dict(zip(RUN_COLUMNS, row))
    gates = [GateResult(*g) for g in con.execute(
        "SELECT metric, op, threshold, value, passed, detail FROM gate_results WHERE run_id = ? ORDER BY position",
        [run_id]).fetchall()]
    # A run's data files are named by their path in the project (run_datasets.path), not the workspace.
    datasets = [_profile_from_row(d, None) for d in con.execute(
        "SELECT rd.path, d.fingerprint, d.row_count, d.columns, d.problems FROM run_datasets rd "
        "JOIN datasets d USING (fingerprint) WHERE rd.run_id = ? ORDER BY rd.path", [run_id]).fetchall()]
    return RunRecord(**run | {
        "trigger": Trigger(run["trigger"]),
        "status": RunStatus(run["status"]),
        "started_at": _from_db(run["started_at"]),
        "finished_at": _from_db(run["finished_at"]),
        "stages": _read_stages(con, run_id, paths),
        "gates": gates,
        "datasets": datasets,
    })


def _read_stages(con: duckdb.DuckDBPyConnection, run_id: int, paths: WorkspacePaths,
                 stage: str | None = None) -> list[StageResult]:
    """A run's stages (or the one named) with their inputs, params, metrics and artifacts;
    output folders and artifacts resolved against the workspace as it is now."""
    where = "WHERE run_id = $run AND ($stage IS NULL OR stage = $stage)"
    args = {"run": run_id, "stage": stage}

    def by_stage(sql: str) -> dict[str, list[tuple]]:
        grouped: dict[str, list[tuple]] = {}
        for row in con.execute(sql, args).fetchall():
            grouped.setdefault(row[0], []).append(row[1:])
        return grouped

    inputs = by_stage(f"SELECT stage, path, sha256, size FROM input_files {where} ORDER BY path")
    params = by_stage(f"SELECT stage, name, value FROM params {where} ORDER BY name")
    metrics = by_stage(f"SELECT stage, name, value FROM metrics {where} ORDER BY name")
    artifacts = by_stage(f"SELECT stage, name, path, sha256, size, kind FROM artifacts {where} ORDER BY name")
    param_values = read_stage_params(con, where, args)
    stages = []
    for row in con.execute(f"SELECT {', '.join(STAGE_COLUMNS[1:])} FROM stage_runs {where} ORDER BY position",
                           args).fetchall():
        fields = dict(zip(STAGE_COLUMNS[1:], row))
        name = fields["stage"]
        stages.append(StageResult(**fields | {
            "output_dir": paths.resolved(fields["output_dir"]),
            "status": StageStatus(fields["status"]),
            "started_at": _from_db(fields["started_at"]),
            "finished_at": _from_db(fields["finished_at"]),
            "inputs": [InputFile(*i) for i in inputs.get(name, [])],
            "params": dict(params.get(name, [])),
            "metrics": dict(metrics.get(name, [])),
            "artifacts": [Artifact(a[0], paths.resolved(a[1]), *a[2:]) for a in artifacts.get(name, [])],
            "param_values": param_values.get(name, {}),
        }))
    return stages


def _profile_from_row(row: tuple, paths: WorkspacePaths | None) -> DatasetProfile:
    """`paths`: resolve a workspace-relative path; None: keep the path as it is."""
    path, fingerprint, row_count, columns, problems = row
    return DatasetProfile(paths.resolved(path) if paths else path, fingerprint, row_count, tuple(ColumnProfile(**c) for c in columns),
                          tuple(problems))


# -- writing ---------------------------------------------------------------------------------

def _child_rows(record: RunRecord, paths: WorkspacePaths) -> dict[str, list[tuple]]:
    """The run's rows for each child table, in the tables' column order; paths relative to the
    workspace."""
    rows: dict[str, list[tuple]] = {"stage_runs": [], "input_files": [], "params": [], "metrics": [],
                                    "artifacts": [], "gate_results": [], "run_datasets": []}
    for position, stage in enumerate(record.stages):
        key = (record.id, stage.stage)
        rows["stage_runs"].append((
            record.id, position, record.project, stage.stage, str(stage.status), stage.command, stage.cache_key,
            paths.stored(stage.output_dir), stage.output_digest, _to_db(stage.started_at), _to_db(stage.finished_at),
            stage.duration_s, stage.exit_code, stage.reason, list(stage.log_tail), stage.reused_from_run,
            stage.worker, stage.host, stage.image_id))
        rows["input_files"] += [(*key, i.path, i.sha256, i.size) for i in stage.inputs]
        rows["params"] += [(*key, name, str(value)) for name, value in stage.params.items()]
        rows["metrics"] += [(*key, name, value) for name, value in stage.metrics.items()]
        rows["artifacts"] += [(*key, a.name, a.kind, paths.stored(a.path), a.sha256, a.size) for a in stage.artifacts]
    rows["gate_results"] = [(record.id, position, g.metric, g.op, g.threshold, g.value, g.passed, g.detail)
                            for position, g in enumerate(record.gates)]
    rows["run_datasets"] = [(record.id, d.fingerprint, d.path) for d in record.datasets]
    rows["stage_params"] = stage_params_rows(record)
    return rows


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple]) -> None:
    """Insert rows with one statement (executemany would run one statement per row)."""
    if not rows:
        return
    placeholders = "(" + ", ".join("?" * len(rows[0])) + ")"
    con.execute(f"INSERT INTO {table} VALUES " + ", ".join([placeholders] * len(rows)),
                [value for row in rows for value in row])


def _save_profile(con: duckdb.DuckDBPyConnection, profile: DatasetProfile, paths: WorkspacePaths) -> None:
    # A fingerprint names the file's content, so a stored profile never changes, except that a
    # file nothing could be read of (perhaps for a passing reason) is profiled again until it
    # reads. Looking first is cheaper than binding every column's statistics for ON CONFLICT.
    stored = con.execute("SELECT len(columns) = 0 AND len(problems) > 0 FROM datasets WHERE fingerprint = ?",
                         [profile.fingerprint]).fetchone()
    if stored is not None and not (stored[0] and profile.readable):
        return
    values = [paths.stored(profile.path), profile.row_count, [asdict(c) for c in profile.columns],
              list(profile.problems)]
    if stored is not None:
        con.execute("UPDATE datasets SET path = ?, row_count = ?, columns = ?, problems = ? WHERE fingerprint = ?",
                    values + [profile.fingerprint])
        return
    con.execute("INSERT INTO datasets (fingerprint, path, row_count, columns, problems) VALUES (?, ?, ?, ?, ?)",
                [profile.fingerprint, *values])


# -- small helpers ---------------------------------------------------------------------------

def _problem(error: duckdb.Error) -> str:
    """DuckDB's message without its "Xxx Error:" prefix, the data line it echoes and its hints."""
    first_paragraph = str(error).split("\n\n", 1)[0]
    lines = [line for line in first_paragraph.splitlines() if not line.startswith("Original Line:")]
    return re.sub(r"^[A-Za-z ]+ Error: ", "", "; ".join(lines[:2]))


def _to_db(value: datetime | None) -> datetime | None:
    """Stored as naive UTC; a naive datetime is taken to be UTC already."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def _from_db(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def _stat_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _process_start(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (field 22 of /proc/<pid>/stat).

    None when there is no such process (or it is a zombie), or no /proc to ask.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2, the command name, is in parentheses and may hold spaces: count from after it.
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] == "Z" else int(fields[19])


def _is_alive(pid: int, proc_start: int | None) -> bool:
    if proc_start is None:
        # The run started where /proc could not be read: the pid is all there is to go on.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, and someone else's
            pass
        return True
    # A different start time means the pid was reused by a process that is not ours.
    return _process_start(pid) == proc_start

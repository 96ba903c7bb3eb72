"""How fast the DuckDB lineage store records and lists runs once a workspace has a long history.

    python benchmarks/bench_lineage.py [--runs 100000] [--repeats 7] [--db PATH]

Other benchmarks can reuse the history generator:

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_lineage import generate_history
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from workbench.adapters.duckdb_store import DuckDBLineageStore  # noqa: E402
from workbench.core.gates import GateResult  # noqa: E402
from workbench.core.model import (Artifact, ColumnProfile, DatasetProfile, InputFile, RunRecord,  # noqa: E402
                                  RunStatus, StageResult, StageStatus, Trigger)

STAGES = [(0, "validate", "python validate.py"), (1, "train", "python train.py"), (2, "evaluate", "python evaluate.py")]
INPUTS = [("validate", "data/churn.csv"), ("validate", "validate.py"), ("train", "data/churn.csv"),
          ("train", "train.py"), ("train", "params.yaml"), ("evaluate", "evaluate.py")]
PARAMS = [("train", name) for name in ("learning_rate", "num_leaves", "n_estimators", "seed", "feature_fraction")]
METRICS = [("validate", name) for name in ("rows", "null_rate", "n_features")] + \
          [("train", name) for name in ("train_auc", "train_logloss", "best_iteration", "fit_seconds")] + \
          [("evaluate", name) for name in ("auc", "accuracy", "precision", "recall", "f1", "logloss", "brier",
                                           "fairness_gap")]
ARTIFACTS = [("validate", "report.json", "report"), ("train", "model.txt", "model"),
             ("evaluate", "metrics.json", "file")]
GATES = [(0, "auc", ">=", 0.8), (1, "recall", ">=", 0.5), (2, "fairness_gap", "<=", 0.1)]
# The value a run's metric gets: the same expression in runs.primary_value and metrics keeps them consistent.
VALUE = "(hash(r.id, {salt!r}) % 10000) / 10000.0"


def _values(rows: list[tuple]) -> str:
    """A constant table for SQL; Python's repr of these str/int/float tuples is valid SQL."""
    return "(VALUES " + ", ".join(repr(row) for row in rows) + ")"


HISTORY_MANIFEST = """
[project]
name = "telco-churn"
primary_metric = "auc"
[stages.validate]
command = "python validate.py"
[stages.train]
command = "python train.py"
depends_on = ["validate"]
[stages.evaluate]
command = "python evaluate.py"
depends_on = ["train"]
[watch]
enabled = false
"""
"""The project the generated runs belong to: its three stages, no watching (the benchmarks that
open a workspace of generated history measure reading it, not running it)."""


def history_workspace(ws: Path, runs: int) -> Path:
    """A workspace with the telco-churn manifest and `runs` generated runs; returns the store."""
    (ws / "telco-churn").mkdir(parents=True)
    (ws / "telco-churn" / "workbench.toml").write_text(HISTORY_MANIFEST)
    (ws / ".workbench").mkdir()
    db = ws / ".workbench" / "lineage.duckdb"
    generate_history(db, runs)
    return db


def generate_history(db_path: str | Path, n_runs: int, projects: tuple[str, ...] = ("telco-churn",)) -> None:
    """Append `n_runs` finished runs (3 stages, 15 metrics, 3 gates each) with bulk SQL."""
    DuckDBLineageStore(db_path)  # creates the schema
    auc = "0.7 + " + VALUE.format(salt="auc") + " * 0.2"
    with duckdb.connect(str(db_path)) as con:
        con.execute("BEGIN TRANSACTION")
        for project in projects:
            con.execute("INSERT INTO projects VALUES (?, ?) ON CONFLICT DO NOTHING", [project, f"/ws/{project}"])
        before = con.execute("SELECT coalesce(max(id), 0) FROM runs").fetchone()[0]
        con.execute("""
            INSERT INTO runs (id, project, trigger, status, runner, started_at, finished_at, duration_s, image_id,
                              image_tag, reason, manifest_hash, snapshot_id, stage_filter, changed_paths,
                              primary_metric, n_stages, n_reused, gates_passed, gates_failed)
            SELECT nextval('run_ids'), $projects[i % len($projects) + 1],
                   CASE WHEN i % 10 = 0 THEN 'manual' ELSE 'watch' END,
                   CASE WHEN i % 20 = 0 THEN 'failed' WHEN i % 33 = 0 THEN 'superseded' ELSE 'succeeded' END,
                   'docker', TIMESTAMP '2024-01-01' + INTERVAL 1 MINUTE * i,
                   TIMESTAMP '2024-01-01' + INTERVAL 1 MINUTE * i + INTERVAL 30 SECOND, 30.0,
                   'sha256:' || md5('image' || (i // 500)), 'workbench/churn:' || (i // 500), '',
                   md5('manifest' || (i // 50)), md5('snapshot' || i), [], ['data/churn.csv'],
                   'auc', 3, i % 3, 3, 0
            FROM range($n) t(i) ORDER BY i""", {"projects": list(projects), "n": n_runs})
        con.execute("CREATE TEMP TABLE new_runs AS SELECT id, project, started_at FROM runs WHERE id > ?", [before])
        con.execute(f"UPDATE runs r SET primary_value = {auc}, n_reused = r.id % 3 WHERE r.id > ?", [before])
        con.execute(f"""
            INSERT INTO stage_runs
            SELECT r.id, s.position, r.project, s.stage,
                   CASE WHEN s.position < r.id % 3 THEN 'reused' ELSE 'succeeded' END, s.command,
                   md5(r.project || s.stage || (r.id // 7)), '/ws/.workbench/runs/' || r.id || '/' || s.stage,
                   md5('out' || r.id || s.stage), r.started_at + INTERVAL 10 SECOND * s.position,
                   r.started_at + INTERVAL 10 SECOND * (s.position + 1), 10.0, 0, '',
                   ['loading data', 'fitting', 'done'], CASE WHEN s.position < r.id % 3 THEN r.id - 1 END, '', '', ''
            FROM new_runs r CROSS JOIN {_values(STAGES)} s(position, stage, command)""")
        con.execute(f"""
            INSERT INTO input_files
            SELECT r.id, f.stage, f.path, md5(f.path || (r.id // 20)), 1000 + r.id % 5000
            FROM new_runs r CROSS JOIN {_values(INPUTS)} f(stage, path)""")
        con.execute(f"""
            INSERT INTO params SELECT r.id, p.stage, p.name, ({VALUE.format(salt='p')})::VARCHAR
            FROM new_runs r CROSS JOIN {_values(PARAMS)} p(stage, name)""")
        con.execute(f"""
            INSERT INTO metrics
            SELECT r.id, m.stage, m.name, CASE WHEN m.name = 'auc' THEN {auc} ELSE {VALUE.format(salt='m')} END
            FROM new_runs r CROSS JOIN {_values(METRICS)} m(stage, name)""")
        con.execute(f"""
            INSERT INTO artifacts
            SELECT r.id, a.stage, a.name, a.kind, '/ws/.workbench/runs/' || r.id || '/' || a.stage || '/' || a.name,
                   md5(a.name || r.id), 20000
            FROM new_runs r CROSS JOIN {_values(ARTIFACTS)} a(stage, name, kind)""")
        con.execute(f"""
            INSERT INTO gate_results
            SELECT r.id, g.position, g.metric, g.op, g.threshold, 0.85, true, '0.85 ' || g.op || ' ' || g.threshold
            FROM new_runs r CROSS JOIN {_values(GATES)} g(position, metric, op, threshold)""")
        con.execute("""
            INSERT INTO datasets (fingerprint, path, row_count, columns)
            SELECT DISTINCT 'fp-' || project, '/ws/' || project || '/data/churn.csv', 7043, []
            FROM new_runs ON CONFLICT DO NOTHING""")
        con.execute("INSERT INTO run_datasets SELECT id, 'fp-' || project, '/ws/' || project || '/data/churn.csv' "
                    "FROM new_runs")
        con.execute("COMMIT")


def realistic_run(run_id: int, started_at: datetime, project: str = "telco-churn") -> RunRecord:
    """A finished run shaped like the ones the generator writes, for timing finish_run."""
    stages = []
    for position, stage, command in STAGES:
        stages.append(StageResult(
            stage=stage, status=StageStatus.SUCCEEDED, command=command, cache_key=f"key-{run_id}-{stage}",
            output_dir=f"/ws/.workbench/runs/{run_id}/{stage}", output_digest=f"out-{run_id}-{stage}",
            started_at=started_at + timedelta(seconds=10 * position),
            finished_at=started_at + timedelta(seconds=10 * position + 10), duration_s=10.0, exit_code=0,
            log_tail=["loading data", "fitting", "done"],
            inputs=[InputFile(path, "ab" * 32, 1234) for s, path in INPUTS if s == stage],
            params={name: "0.1" for s, name in PARAMS if s == stage},
            metrics={name: 0.85 for s, name in METRICS if s == stage},
            artifacts=[Artifact(name, f"/ws/.workbench/runs/{run_id}/{stage}/{name}", "cd" * 32, 20000, kind)
                       for s, name, kind in ARTIFACTS if s == stage]))
    columns = tuple(ColumnProfile(f"col{i}", "DOUBLE", 7043, 0, 7000, "0", "1", 0.5, 0.1, 0.25, 0.5, 0.75)
                    for i in range(20))
    return RunRecord(
        id=run_id, project=project, trigger=Trigger.WATCH, status=RunStatus.SUCCEEDED, runner="docker",
        started_at=started_at, finished_at=started_at + timedelta(seconds=30), image_id="sha256:" + "e" * 64,
        image_tag="workbench/churn:1", manifest_hash="m" * 64, snapshot_id="s" * 64, changed_paths=["data/churn.csv"],
        stages=stages,
        gates=[GateResult(metric, op, threshold, 0.85, True, "ok") for _, metric, op, threshold in GATES],
        datasets=[DatasetProfile(f"/ws/{project}/data/churn.csv", "fp-bench", 7043, columns)])


def median_ms(action: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs of history to generate")
    parser.add_argument("--repeats", type=int, default=7, help="timings per figure; the median is shown")
    parser.add_argument("--db", help="database file (default: a fresh temporary one)")
    args = parser.parse_args()
    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="bench-lineage-")) / "lineage.duckdb"
    project = "telco-churn"

    start = time.perf_counter()
    generate_history(db, args.runs, projects=(project,))
    print(f"generated {args.runs:,} runs in {time.perf_counter() - start:.1f} s "
          f"({db.stat().st_size / 2**20:.0f} MiB at {db})")

    store = DuckDBLineageStore(db)
    n_project = store.count_runs(project)

    def record_one() -> float:
        run_id, started_at = store.start_run(project, f"/ws/{project}", "watch", "docker", [], ["data/churn.csv"])
        record = realistic_run(run_id, started_at)
        start = time.perf_counter()
        store.finish_run(record, primary_metric="auc")
        return (time.perf_counter() - start) * 1000

    def session() -> None:
        # Private on purpose: this is the fixed cost under every public operation.
        with store._session():
            pass

    def list_project_json() -> list[dict]:
        return [dict(vars(s), started_at=s.started_at.isoformat()) for s in store.list_runs(project, limit=n_project)]

    some_run = store.list_runs(limit=1, offset=min(1000, n_project - 1))[0].id
    # Targets: recording a run takes "a few ms"; listing stays well under a second at 100k runs.
    rows = [
        ("start_run", median_ms(lambda: store.start_run(project, "/ws", "watch", "docker", [], []), args.repeats), 10),
        ("finish_run (3 stages, 15 metrics)", statistics.median(record_one() for _ in range(args.repeats)), 10),
        ("list_runs(limit=50)", median_ms(lambda: store.list_runs(limit=50), args.repeats), 50),
        (f"list_runs({project!r}, limit={n_project:,}) as JSON dicts", median_ms(list_project_json, args.repeats),
         1000),
        ("count_runs()", median_ms(store.count_runs, args.repeats), 50),
        ("get_run", median_ms(lambda: store.get_run(some_run), args.repeats), 50),
        ("lineage", median_ms(lambda: store.lineage(some_run), args.repeats), 50),
        ("find_reusable_stage (miss)", median_ms(
            lambda: store.find_reusable_stage(project, "train", "no-such-key"), args.repeats), 50),
        ("store open (attach + schema check)", median_ms(lambda: DuckDBLineageStore(db), args.repeats), None),
        ("attach + detach, every operation pays it", median_ms(session, args.repeats), None),
        ("duckdb.connect(file) + close, for comparison", median_ms(lambda: duckdb.connect(str(db)).close(),
                                                                   args.repeats), None),
    ]
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'operation':<{width}}  median ms  target")
    for name, ms, target in rows:
        verdict = "" if target is None else f"< {target} ms  {'ok' if ms < target else 'MISSED'}"
        print(f"{name:<{width}}  {ms:9.2f}  {verdict}")
    missed = [name for name, ms, target in rows if target is not None and ms >= target]
    print("\nall targets hold" if not missed else f"\ntargets missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()

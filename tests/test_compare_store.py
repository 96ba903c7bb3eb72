"""The compare adapter on a real DuckDB file: a NULL metric, a value two stages recorded (the
later stage wins, as in a run's metrics), a run without a name, and --where as bound SQL."""

from __future__ import annotations

from datetime import datetime, timezone

from workbench.adapters.duckdb_compare import DuckDBCompareStore
from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.core.compare import labelled_columns, parse_where, resolve_where
from workbench.core.model import RunRecord, RunStatus, StageResult, StageStatus, Trigger


def record(store: DuckDBLineageStore, stages: list[tuple[str, dict, dict]]) -> int:
    run_id, started = store.start_run("p", "/ws/p", "manual", "local", [], [])
    results = [StageResult(name, StageStatus.SUCCEEDED, "true", f"key-{run_id}-{name}", f"/ws/out/{run_id}/{name}",
                           params=params, metrics=metrics) for name, params, metrics in stages]
    store.finish_run(RunRecord(run_id, "p", Trigger.MANUAL, RunStatus.SUCCEEDED, "local", started,
                               finished_at=datetime.now(timezone.utc), stages=results))
    return run_id


def test_rows_merge_stages_keep_nulls_and_filter_in_sql(tmp_path):
    store = DuckDBLineageStore(tmp_path / "lineage.duckdb")
    first = record(store, [("train", {"lr": "0.1", "seed": "1"}, {"auc": 0.7, "loss": None}),
                           ("evaluate", {"seed": "2"}, {"auc": 0.8})])
    second = record(store, [("train", {"lr": "0.2"}, {"auc": 0.9})])
    compare = DuckDBCompareStore(store)
    rows = compare.rows("p", None)
    assert [r.run_id for r in rows] == [second, first]
    assert rows[1].params == {"lr": "0.1", "seed": "2"}  # evaluate's seed: the later stage
    assert rows[1].metrics == {"auc": 0.8, "loss": None}
    assert rows[0].params == {"lr": "0.2"} and rows[0].metrics == {"auc": 0.9}
    columns = labelled_columns(*compare.names("p", None))

    def ids(text: str) -> list[int]:
        return [r.run_id for r in compare.rows("p", None, resolve_where(parse_where(text), columns))]

    assert ids("auc > 0.85") == [second]
    assert ids("seed = 2 or lr >= 0.2") == [second, first]
    assert ids("loss < 1") == []  # NULL compares as nothing
    assert ids("lr = '0.1'") == [first]  # quoted: compared as text
    assert compare.rows("p", None, limit=1)[0].run_id == second
    assert compare.rows("p", [first])[0].run_id == first

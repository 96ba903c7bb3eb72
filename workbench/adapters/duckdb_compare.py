"""Reading runs for comparison (workbench compare, the TUI's compare view) from the lineage store.

Set-based: whatever the number of runs, a comparison is a few queries in one read-only
transaction (the distinct params-file key values, the runs, then their params and their
metrics as long rows), never a query per run. Params are the logged ones and the params-file
keys each stage ran with, flattened to dotted names (`evaluate.threshold`). A run's param or metric that several stages recorded takes the last stage's value (by
position), as RunRecord.metrics merges them.

The `--where` tree (workbench.core.compare) becomes SQL here: its operators come from a fixed
table and every name and value is a bound parameter, so no user text is ever part of the SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import numpy

from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.core.compare_keys import key_value_columns
from workbench.core.compare import AllOf, AnyOf, CompareRow, ResolvedComparison, ResolvedExpr
from workbench.core.errors import RunNotFound

SQL_OPERATORS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

# The params-file key values the candidate runs' stages ran with (stage_params), flattened to
# dotted names (workbench.core.compare_keys): a temporary table of the connection, filled from
# the distinct stored values once per read, so the queries below join it set-based.
KEY_VALUES = "wb_compare_key_values"

# Each stage's value per (run, name), the last stage's winning. `cand` is the candidate runs.
# A param a stage logged (wb.log_params) wins over a params-file key of the same dotted name:
# it is what the script says it used, and it keeps the columns compare showed before keys.
LOGGED_PARAMS = """
    SELECT p.run_id, p.name, p.value, (1::BIGINT << 40) + coalesce(s.position, 0) AS rank
    FROM params p LEFT JOIN stage_runs s ON s.run_id = p.run_id AND s.stage = p.stage
    WHERE p.run_id IN (SELECT id FROM cand)"""
KEY_PARAMS = f"""
    SELECT sp.run_id, k.name, k.text, coalesce(s.position, 0)::BIGINT * 100000 + sp.position AS rank
    FROM stage_params sp JOIN temp.{KEY_VALUES} k ON k.file = sp.file AND k.key = sp.key AND k.value = sp.value
    LEFT JOIN stage_runs s ON s.run_id = sp.run_id AND s.stage = sp.stage
    WHERE sp.run_id IN (SELECT id FROM cand)"""
METRICS_VIEW = """
mv AS (SELECT m.run_id, m.name, arg_max(m.value, coalesce(s.position, 0)) AS value
       FROM metrics m LEFT JOIN stage_runs s ON s.run_id = m.run_id AND s.stage = m.stage
       WHERE m.run_id IN (SELECT id FROM cand) GROUP BY m.run_id, m.name)"""


def latest(keys: bool) -> str:
    """The views `pv` and `mv`; `keys`: the candidates ran with params-file keys (KEY_VALUES
    is filled), else the keys' join is left out (a history without keys pays nothing)."""
    params = LOGGED_PARAMS + (f" UNION ALL {KEY_PARAMS}" if keys else "")
    return f"pv AS (SELECT run_id, name, arg_max(value, rank) AS value FROM ({params}) GROUP BY run_id, name),{METRICS_VIEW}"


def names_sql(table: str, keys: bool) -> str:
    """The names a view holds for the candidates, read without building the view."""
    sql = f"SELECT name FROM {table} WHERE run_id IN (SELECT id FROM cand)"
    if table == "params" and keys:
        sql += (f" UNION SELECT k.name FROM stage_params sp JOIN temp.{KEY_VALUES} k"
                " ON k.file = sp.file AND k.key = sp.key AND k.value = sp.value WHERE sp.run_id IN (SELECT id FROM cand)")
    return sql


class DuckDBCompareStore:
    def __init__(self, lineage: DuckDBLineageStore):
        self.lineage = lineage

    def names(self, project: str | None, run_ids: list[int] | None) -> tuple[list[str], list[str]]:
        """(param names, metric names) recorded by the candidate runs: what --where may name."""
        cand, args = _candidates(project, run_ids)
        with self.lineage.transaction() as con, _key_values(con, cand, args) as keys:
            params = con.execute(f"WITH cand AS ({cand}) SELECT DISTINCT name FROM ({names_sql('params', keys)}) "
                                 "ORDER BY name", args).fetchall()
            metrics = con.execute(f"WITH cand AS ({cand}) SELECT DISTINCT name FROM ({names_sql('metrics', keys)}) "
                                  "ORDER BY name", args).fetchall()
        return [r[0] for r in params], [r[0] for r in metrics]

    def rows(self, project: str | None, run_ids: list[int] | None, where: ResolvedExpr | None = None,
             limit: int | None = None) -> list[CompareRow]:
        """The candidate runs (a project's, or the ids given) that satisfy `where`, newest
        first, at most `limit`, with their params and metrics. RunNotFound names ids not recorded."""
        cand, args = _candidates(project, run_ids)
        condition, condition_args = _condition(where) if where is not None else ("TRUE", [])
        limit_sql = "LIMIT ?" if limit is not None else ""
        with self.lineage.transaction() as con, _key_values(con, cand, args) as keys:
            if run_ids:
                found = {r[0] for r in con.execute(f"SELECT id FROM ({cand})", args).fetchall()}
                missing = [i for i in dict.fromkeys(run_ids) if i not in found]
                if missing:
                    raise RunNotFound(f"no run {', '.join(map(str, missing))} recorded"
                                      + (f" for project {project}" if project else ""))
            views = f", {latest(keys)}" if where is not None else ""
            picked = con.execute(
                f"WITH cand AS ({cand}){views} SELECT r.id, r.status, epoch_us(r.started_at) FROM cand r "
                f"WHERE {condition} ORDER BY r.id DESC {limit_sql}",
                args + condition_args + ([limit] if limit is not None else [])).fetchall()
            ids = [row[0] for row in picked]
            if not ids:
                return []
            by_run_params = _values_by_run(con, "pv", "params", ids, keys)
            by_run_metrics = _values_by_run(con, "mv", "metrics", ids, keys)
        utc = timezone.utc
        return [CompareRow(run_id, status, datetime.fromtimestamp(started_us / 1e6, utc),
                           by_run_params.get(run_id, {}), by_run_metrics.get(run_id, {}))
                for run_id, status, started_us in picked]


def _values_by_run(con, view: str, table: str, ids: list[int], keys: bool) -> dict[int, dict]:
    """run id -> {name: value} of the picked runs, from latest()'s view `pv` or `mv`.

    Fetched as numpy columns with each name as a number (its index in the sorted names), then
    cut into runs: DuckDB builds no Python string per (run, name), which made fetching 10,000
    runs x 30 names as Python rows or lists take twice as long."""
    chosen = {"ids": ids}
    cand = "SELECT unnest($ids::INTEGER[]) AS id"  # the picked runs are the candidates now
    names = [r[0] for r in con.execute(f"WITH cand AS ({cand}) SELECT DISTINCT name FROM ({names_sql(table, keys)}) "
                                       "ORDER BY name", chosen).fetchall()]
    if not names:
        return {}
    columns = con.execute(
        f"WITH cand AS ({cand}), {latest(keys)}, "
        "names AS (SELECT name, (row_number() OVER (ORDER BY name) - 1)::INTEGER AS k "
        f"          FROM (SELECT DISTINCT name FROM ({names_sql(table, keys)}))) "
        f"SELECT v.run_id, n.k, v.value FROM {view} v JOIN names n ON n.name = v.name ORDER BY v.run_id",
        chosen).fetchnumpy()
    runs, keys, values = columns["run_id"], columns["k"], columns["value"]
    if isinstance(values, numpy.ma.MaskedArray):  # NULL values: None, as a row read gives them
        values = numpy.where(numpy.ma.getmaskarray(values), None, values.data.astype(object))
    cuts = (numpy.flatnonzero(numpy.diff(runs)) + 1).tolist()
    starts, ends = [0] + cuts, cuts + [len(runs)]
    labels = numpy.array(names, dtype=object)[keys].tolist()
    values = values.tolist()
    return {run_id: dict(zip(labels[start:end], values[start:end]))
            for run_id, start, end in zip(runs[starts].tolist(), starts, ends)}


@contextmanager
def _key_values(con, cand: str, args: list) -> Iterator[bool]:
    """Fill KEY_VALUES with the flattened distinct key values the candidates' stages ran with
    (a reused stage records the values it was reused for, so every run has its own rows),
    for the queries inside; dropped after, as the connection is the engine's, shared.
    Yields whether there are any."""
    stored = con.execute(f"WITH cand AS ({cand}) SELECT DISTINCT file, key, value FROM stage_params "
                         "WHERE run_id IN (SELECT id FROM cand)", args).fetchall()
    if not stored:
        yield False
        return
    columns = list(zip(*key_value_columns(stored)))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {KEY_VALUES} AS SELECT unnest(?::VARCHAR[]) AS file, "
                "unnest(?::VARCHAR[]) AS key, unnest(?::VARCHAR[]) AS value, unnest(?::VARCHAR[]) AS name, "
                "unnest(?::VARCHAR[]) AS text", [list(c) for c in columns])
    try:
        yield True
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.{KEY_VALUES}")


def _candidates(project: str | None, run_ids: list[int] | None) -> tuple[str, list]:
    """The SQL of the candidate runs (id, status, started_at) and its arguments."""
    clauses, args = [], []
    if project is not None:
        clauses.append("project = ?")
        args.append(project)
    if run_ids:
        clauses.append("id IN (SELECT unnest(?::INTEGER[]))")
        args.append(list(run_ids))
    where = "WHERE " + " AND ".join(clauses) if clauses else ""
    return f"SELECT id, status, started_at FROM runs {where}", args


def _condition(expr: ResolvedExpr) -> tuple[str, list]:
    """SQL (over `cand r`, with `pv` and `mv` in scope) and its bound values."""
    if isinstance(expr, (AllOf, AnyOf)):
        parts = [_condition(term) for term in expr.terms]
        joiner = " AND " if isinstance(expr, AllOf) else " OR "
        return "(" + joiner.join(sql for sql, _ in parts) + ")", [a for _, args in parts for a in args]
    assert isinstance(expr, ResolvedComparison)
    op = SQL_OPERATORS[expr.op]
    if expr.column.kind == "metric":
        value = "(SELECT v.value FROM mv v WHERE v.run_id = r.id AND v.name = ? AND NOT isnan(v.value))"
        return f"{value} {op} ?", [expr.column.name, float(expr.value)]
    if isinstance(expr.value, float):  # a number: compared as one (`0.10` equals `0.1`)
        value = "(SELECT TRY_CAST(v.value AS DOUBLE) FROM pv v WHERE v.run_id = r.id AND v.name = ?)"
        return f"{value} {op} ?", [expr.column.name, expr.value]
    value = "(SELECT v.value FROM pv v WHERE v.run_id = r.id AND v.name = ?)"
    return f"{value} {op} ?", [expr.column.name, expr.value]

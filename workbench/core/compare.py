"""Comparing runs side by side: a params x metrics table, as `dvc exp show` or MLflow's compare
view shows it. Pure: the store reads the rows (workbench.adapters.duckdb_compare), this module
parses what the user asked (`--where`, `--sort`), decides which params differ and lays out the
table that the CLI and the TUI both show.

A `--where` expression is parsed here into a small tree of comparisons; the adapter turns that
tree into parameterized SQL, so no user text ever becomes SQL. Grammar (and binds tighter):

    expr       := and_expr ("or" and_expr)*
    and_expr   := comparison ("and" comparison)*
    comparison := COLUMN OP VALUE        OP: = == != < <= > >=
    COLUMN     := a param or metric name, or `param:NAME` / `metric:NAME`
    VALUE      := a number, a bare word, or a 'quoted' / "quoted" string
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from datetime import datetime
from typing import Union

from workbench.core.errors import UsageError

OPERATORS = ("<=", ">=", "!=", "==", "=", "<", ">")
RUN_COLUMNS = ("id", "status", "started")
"""Columns every row has; a param or metric of one of these names is shown with its prefix."""


# -- the rows ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompareRow:
    """One run: its params as recorded (text, as params.json gave them), its metrics."""

    run_id: int
    status: str
    started_at: datetime
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Column:
    label: str
    """What the user sees and names in --sort / --where (`lr`, or `param:auc` on a clash)."""
    kind: str
    """"run", "param" or "metric"."""
    name: str
    """The name as recorded."""


JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
LITERALS = {"true": True, "false": False}


@lru_cache(maxsize=65536)
def param_value(text: str | None) -> float | str | bool | None:
    """A recorded param as a value: numbers and booleans typed (params.json wrote them as JSON),
    anything else the text itself. Cached: a sweep's params repeat their few values."""
    if text is None:
        return None
    if text in LITERALS:
        return LITERALS[text]
    number = JSON_NUMBER.fullmatch(text)
    if number is None:
        return text
    if number.group(1) is None and number.group(2) is None:
        return int(text)
    value = float(text)
    return value if math.isfinite(value) else text


def labelled_columns(param_names: list[str], metric_names: list[str]) -> list[Column]:
    """Param then metric columns, each sorted by name; a name used by both (or by a run
    column) is prefixed `param:` / `metric:` so that every label names one column."""
    params, metrics = set(param_names), set(metric_names)
    clash = (params & metrics) | ((params | metrics) & set(RUN_COLUMNS))
    columns = [Column(f"param:{n}" if n in clash else n, "param", n) for n in sorted(params)]
    columns += [Column(f"metric:{n}" if n in clash else n, "metric", n) for n in sorted(metrics)]
    return columns


def resolve_column(label: str, columns: list[Column], what: str, run_columns: bool = True) -> Column:
    """The column `label` names: its label, `param:NAME`/`metric:NAME`, or a bare name that
    only one of them has. UsageError naming `what` (the option) and the closest label."""
    label = label.strip()
    by_label = {c.label: c for c in columns}
    if run_columns and label in RUN_COLUMNS:
        return Column(label, "run", label)
    if label in by_label:
        return by_label[label]
    kind, _, name = label.partition(":")
    if kind in ("param", "metric") and name:
        found = [c for c in columns if c.kind == kind and c.name == name]
        if found:
            return found[0]
    matching = [c for c in columns if c.name == label]
    if len(matching) > 1:
        raise UsageError(f"{what}: {label!r} is both a param and a metric: say param:{label} or metric:{label}")
    known = ([*RUN_COLUMNS] if run_columns else []) + [c.label for c in columns]
    close = difflib.get_close_matches(label, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known[:12]) + (" …" if len(known) > 12 else "") if known else "none recorded"
    raise UsageError(f"{what}: no param or metric named {label!r}{hint} (columns: {listing})")


# -- --where -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    column: str
    """The label as typed; resolved against the recorded names by `resolve_where`."""
    op: str
    """One of = != < <= > >= (`==` is read as `=`)."""
    value: float | str


@dataclass(frozen=True)
class AllOf:
    terms: tuple["Expr", ...]


@dataclass(frozen=True)
class AnyOf:
    terms: tuple["Expr", ...]


Expr = Union[Comparison, AllOf, AnyOf]


@dataclass(frozen=True)
class ResolvedComparison:
    """A comparison whose column is known: what the adapter translates to SQL."""

    column: Column
    op: str
    value: float | str


ResolvedExpr = Union[ResolvedComparison, AllOf, AnyOf]

_TOKEN = re.compile(r"""\s*(?:(?P<op><=|>=|!=|==|=|<|>)|(?P<quoted>'[^']*'|"[^"]*")|(?P<word>[^\s<>=!'"]+))""")


def _tokens(text: str, option: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) of each token; kind: op, quoted, word."""
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise UsageError(f"{option} {text!r}: cannot read {text[position:].strip()!r} at column {position + 1}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


def parse_where(text: str, option: str = "--where") -> Expr:
    """Parse one --where expression; UsageError naming the expression and what is wrong."""
    tokens = _tokens(text, option)
    if not tokens:
        raise UsageError(f"{option}: empty expression (write it as 'auc > 0.84')")
    position = 0

    def fail(problem: str) -> UsageError:
        return UsageError(f"{option} {text!r}: {problem} (write comparisons as 'auc > 0.84', "
                          "joined with and / or)")

    def comparison() -> Comparison:
        nonlocal position
        if position >= len(tokens):
            raise fail("a comparison is missing at the end")
        kind, column, _at = tokens[position]
        if kind != "word" or column.lower() in ("and", "or"):
            raise fail(f"expected a param or metric name, found {column!r}")
        if position + 1 >= len(tokens) or tokens[position + 1][0] != "op":
            found = tokens[position + 1][1] if position + 1 < len(tokens) else "the end"
            raise fail(f"expected an operator (= != < <= > >=) after {column!r}, found {found!r}")
        op = tokens[position + 1][1]
        if position + 2 >= len(tokens):
            raise fail(f"a value is missing after {column!r} {op}")
        value_kind, raw, _ = tokens[position + 2]
        if value_kind == "op" or (value_kind == "word" and raw.lower() in ("and", "or")):
            raise fail(f"a value is missing after {column!r} {op}")
        position += 3
        return Comparison(column, "=" if op == "==" else op, _literal(value_kind, raw))

    def conjunction() -> Expr:
        nonlocal position
        terms = [comparison()]
        while position < len(tokens) and tokens[position][0] == "word" and tokens[position][1].lower() == "and":
            position += 1
            terms.append(comparison())
        return terms[0] if len(terms) == 1 else AllOf(tuple(terms))

    terms = [conjunction()]
    while position < len(tokens) and tokens[position][0] == "word" and tokens[position][1].lower() == "or":
        position += 1
        terms.append(conjunction())
    if position < len(tokens):
        raise fail(f"unexpected {tokens[position][1]!r} (join comparisons with and / or)")
    return terms[0] if len(terms) == 1 else AnyOf(tuple(terms))


def _literal(kind: str, raw: str) -> float | str:
    if kind == "quoted":
        return raw[1:-1]
    try:
        number = float(raw)
    except ValueError:
        return raw
    return number if math.isfinite(number) else raw


def parse_wheres(texts: list[str]) -> Expr | None:
    """Several --where options: all must hold."""
    parsed = [parse_where(text) for text in texts if text is not None]
    if not parsed:
        return None
    return parsed[0] if len(parsed) == 1 else AllOf(tuple(parsed))


def where_names(expr: Expr | None) -> list[str]:
    """The column labels an expression names, in order."""
    if expr is None:
        return []
    if isinstance(expr, Comparison):
        return [expr.column]
    return [name for term in expr.terms for name in where_names(term)]


def resolve_where(expr: Expr | None, columns: list[Column]) -> ResolvedExpr | None:
    """Each comparison's column resolved against the recorded names; a metric compared with a
    word is refused (metrics are numbers)."""
    if expr is None:
        return None
    if isinstance(expr, Comparison):
        column = resolve_column(expr.column, columns, "--where", run_columns=False)
        if column.kind == "metric" and isinstance(expr.value, str):
            raise UsageError(f"--where: metric {column.label!r} is a number; {expr.value!r} is not "
                             f"(write e.g. '{column.label} {expr.op} 0.8')")
        return ResolvedComparison(column, expr.op, expr.value)
    return type(expr)(tuple(resolve_where(term, columns) for term in expr.terms))


# -- --sort --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SortKey:
    column: str
    descending: bool = False


def parse_sort(text: str | None) -> SortKey | None:
    """`auc` (ascending) or `-auc` (descending); `+auc` is ascending too."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    descending = text.startswith("-")
    name = text[1:].strip() if text[:1] in "+-" else text
    if not name:
        raise UsageError(f"--sort {text!r}: name a column, e.g. --sort -auc")
    return SortKey(name, descending)


def _finite(value: float | None) -> float | None:
    return None if value is None or value != value else value


def cell_value(row: CompareRow, column: Column) -> float | str | bool | None:
    """A row's value in a column, typed (None: the run has no such value)."""
    if column.kind == "run":
        return {"id": row.run_id, "status": row.status, "started": row.started_at}[column.name]
    if column.kind == "param":
        return param_value(row.params.get(column.name))
    value = row.metrics.get(column.name)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def sort_rows(rows: list[CompareRow], column: Column, descending: bool = False) -> list[CompareRow]:
    """Rows ordered by one column: numbers by value, then text; a run without a value last
    whichever the direction. Stable, so equal values keep their order (newest first)."""

    def key(row: CompareRow):
        value = cell_value(row, column)
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)):
            return (0, value, "")
        if isinstance(value, datetime):
            return (0, value.timestamp(), "")
        return (1, 0, value)

    present = [r for r in rows if cell_value(r, column) is not None]
    missing = [r for r in rows if cell_value(r, column) is None]
    # reverse=True keeps equal values in their order (Python's sort stays stable)
    return sorted(present, key=key, reverse=descending) + missing


# -- which params differ, and the table ----------------------------------------------------------

def differing_params(rows: list[CompareRow], names: list[str]) -> list[str]:
    """The params whose value is not the same in every row (a run without the param counts as
    a value of its own). With one row nothing differs."""
    differing = []
    for name in names:
        first = rows[0].params.get(name) if rows else None
        if any(row.params.get(name) != first for row in rows[1:]):
            differing.append(name)
    return differing


@dataclass(frozen=True)
class CompareTable:
    rows: list[CompareRow]
    columns: list[Column]
    """The param and metric columns shown, params first."""
    hidden: dict[str, str | None]
    """Params equal in every shown run and left out (name -> their one value)."""
    reference: int | None
    """The run the others are compared with (the TUI highlights cells that differ from it)."""
    sort: SortKey | None = None
    hidden_metrics: tuple[str, ...] = ()
    """Per-group metrics (`group.<col>.<value>.<stat>`) left out: `--all` shows them."""

    @property
    def params(self) -> list[Column]:
        return [c for c in self.columns if c.kind == "param"]

    @property
    def metrics(self) -> list[Column]:
        return [c for c in self.columns if c.kind == "metric"]

    def column(self, label: str) -> Column:
        return resolve_column(label, self.columns, "column")

    def values(self, column: Column) -> list[float | str | bool | None]:
        return [cell_value(row, column) for row in self.rows]

    @cached_property
    def reference_row(self) -> CompareRow | None:
        return next((r for r in self.rows if r.run_id == self.reference), None)

    def differs(self, row: CompareRow, column: Column) -> bool:
        """Whether the row's value differs from the reference run's (the reference itself: no)."""
        reference = self.reference_row
        if reference is None or row.run_id == reference.run_id:
            return False
        return cell_value(row, column) != cell_value(reference, column)

    def sorted_by(self, sort: SortKey | None) -> "CompareTable":
        """The same table ordered by a column (None: newest first)."""
        if sort is None:
            rows = sorted(self.rows, key=lambda r: r.run_id, reverse=True)
        else:
            rows = sort_rows(self.rows, resolve_column(sort.column, self.columns, "--sort"), sort.descending)
        return CompareTable(rows, self.columns, self.hidden, self.reference, sort, self.hidden_metrics)

    def to_json(self) -> dict:
        return {**self.to_json_head(), "runs": list(self.runs_json())}

    def to_json_head(self) -> dict:
        """Everything but the runs: the columns, what was hidden, the order."""
        return {
            "reference": self.reference,
            "sort": None if self.sort is None else ("-" if self.sort.descending else "") + self.sort.column,
            "params": [c.label for c in self.params],
            "metrics": [c.label for c in self.metrics],
            "equal_params": {name: param_value(value) for name, value in self.hidden.items()},
            "hidden_metrics": list(self.hidden_metrics),
        }

    def runs_json(self):
        """Each run as a JSON-ready dict, in table order (a generator: 10,000 runs stream)."""
        params = [(c.label, c.name) for c in self.params]
        metrics = [(c.label, c.name) for c in self.metrics]
        typed = param_value
        for row in self.rows:
            given, values = row.params.get, row.metrics.get
            yield {"id": row.run_id, "status": row.status, "started_at": row.started_at.isoformat(),
                   "params": {label: typed(given(name)) for label, name in params},
                   "metrics": {label: _finite(values(name)) for label, name in metrics}}


GROUP_METRIC_PREFIX = "group."
"""The built-in per-group (fairness) metrics: `group.<column>.<value>.<stat>`, a few per group."""


def is_group_metric(name: str) -> bool:
    return name.startswith(GROUP_METRIC_PREFIX)


def build_table(rows: list[CompareRow], all_params: bool = False, sort: SortKey | None = None,
                reference: int | None = None, named: Collection[str] = ()) -> CompareTable:
    """The table for `rows` (newest first as read): the metrics, the params that differ
    (every param and metric with `all_params`), ordered by `sort`. Per-group metrics are left
    out unless `all_params`, or named by `sort` or in `named` (the --where labels): on the
    example they were two dozen columns burying the rest. `reference`: the run to compare
    with (default: the first row)."""
    param_names = sorted({name for row in rows for name in row.params})
    metric_names = sorted({name for row in rows for name in row.metrics})
    shown = set(param_names if all_params else differing_params(rows, param_names))
    hidden = {name: rows[0].params.get(name) for name in param_names if name not in shown}
    every = labelled_columns(param_names, metric_names)
    wanted = {_named_metric(label, every) for label in [*named, *([sort.column] if sort else [])]}
    hidden_metrics = () if all_params else tuple(
        name for name in metric_names if is_group_metric(name) and name not in wanted)
    columns = [c for c in every if (c.kind == "metric" and c.name not in hidden_metrics) or c.name in shown]
    if reference is None or all(r.run_id != reference for r in rows):
        reference = rows[0].run_id if rows else None
    table = CompareTable(list(rows), columns, hidden, reference, None, hidden_metrics)
    if sort is not None:
        # A hidden param is a column too: sorting by it is allowed (all rows equal, order kept).
        column = resolve_column(sort.column, every, "--sort")
        table = CompareTable(sort_rows(table.rows, column, sort.descending), columns, hidden, reference, sort,
                             hidden_metrics)
    return table


def _named_metric(label: str, columns: list[Column]) -> str | None:
    """The metric a --sort / --where label names, or None (a param, a run column, no column:
    resolve_column says so where it matters)."""
    try:
        column = resolve_column(label, columns, "")
    except UsageError:
        return None
    return column.name if column.kind == "metric" else None


# -- charts --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChartSeries:
    """What a chart of one metric draws: x positions, y values, and tick labels for x when the
    x values are categories (run ids in table order, or a text param's values)."""

    metric: str
    against: str | None
    """The param on the x axis; None: the runs, in the table's order."""
    xs: list[float]
    ys: list[float]
    ticks: list[tuple[float, str]]
    missing: int
    """Runs left out: no value for the metric (or the param)."""


def chart_series(table: CompareTable, metric: Column, against: Column | None = None) -> ChartSeries:
    """A metric across the table's runs (x: each run, in table order, labelled by id) or
    against a param (x: its value; a text param's values become categories, sorted)."""
    pairs = []
    for row in table.rows:
        y = cell_value(row, metric)
        x = row.run_id if against is None else cell_value(row, against)
        if isinstance(y, bool):
            y = int(y)
        if y is None or x is None or not isinstance(y, (int, float)):
            continue
        pairs.append((x, float(y)))
    missing = len(table.rows) - len(pairs)
    if against is None:
        xs = [float(i) for i in range(len(pairs))]
        step = max(len(pairs) // 12, 1)  # a dozen labels at most stay readable
        ticks = [(float(i), str(run_id)) for i, (run_id, _) in enumerate(pairs) if i % step == 0]
        return ChartSeries(metric.label, None, xs, [y for _, y in pairs], ticks, missing)
    if all(isinstance(x, (int, float)) for x, _ in pairs):
        return ChartSeries(metric.label, against.label, [float(x) for x, _ in pairs], [y for _, y in pairs], [],
                           missing)
    categories = sorted({str(x) for x, _ in pairs})
    position = {c: float(i) for i, c in enumerate(categories)}
    return ChartSeries(metric.label, against.label, [position[str(x)] for x, _ in pairs], [y for _, y in pairs],
                       [(position[c], c) for c in categories], missing)

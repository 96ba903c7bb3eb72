"""Data contracts: what a data file must hold, written beside it as `<file>.contract.toml`.

A contract names the file's columns (type, nullability, range, allowed categories, uniqueness),
bounds on its row count, and custom rules as SQL expressions that every row must satisfy:

    [table]
    min_rows = 3500

    [columns.tenure]
    type = "integer"
    nullable = false
    min = 0
    max = 80

    [[rules]]
    name = "charges_add_up"
    sql = "total_charges >= monthly_charges"
    severity = "warning"

The file sits beside its data (`data/churn.csv.contract.toml` for `data/churn.csv`) rather than
in the manifest: it is as long as the table is wide, it is written by a tool (`workbench
contract infer`) and tightened by hand, and a project's data files are already found by
`data.paths`, so no manifest key is needed to tie the two together.

This module is pure: it parses and validates a contract (one clear error naming the file, the
key and the problem), infers a first contract from a table's column statistics (the adapter
gathers them), renders a contract as TOML, and holds the report of a check. The check itself
runs in DuckDB (workbench.adapters.duckdb_contract).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime

from workbench.core.errors import ManifestError
from workbench.core.manifest_reader import TableReader

CONTRACT_SUFFIX = ".contract.toml"
CONTRACT_STAGE = "contract"
"""The built-in stage that checks a run's data against its contracts (services/contract_stage.py)."""
TYPES = ("integer", "float", "string", "boolean", "date", "timestamp")
"""Column types a contract names; each matches a family of DuckDB/Parquet types."""
SEVERITIES = ("error", "warning")
EXTRA_COLUMNS = ("error", "warning", "allow")
EXAMPLES = 5
"""Rows named (line and value) per broken rule; beyond them, a count."""
MAX_CATEGORIES = 20
"""Inference lists a text column's values as its categories only up to this many."""
DEFAULT_MARGIN = 0.1
"""Inference widens each numeric range by this share of its observed span on each side."""
ROW_MARGIN = 0.5
"""Inference asks for at least this share of the rows it saw (min_rows)."""
MIN_ROWS_FOR_BOUNDS = 20
"""A table of fewer rows says too little about its values: inference writes only the types and
nullability of its columns (no range, categories or uniqueness a second sample would break)."""
_RULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class ContractError(ManifestError):
    """A contract file that cannot be read or is invalid (file, key, problem)."""


@dataclass(frozen=True)
class ColumnContract:
    name: str
    type: str | None = None
    """One of TYPES; unset: any type."""
    nullable: bool = True
    """Whether the column may hold missing values (an empty CSV field, a Parquet null)."""
    min: float | str | None = None
    """Smallest allowed value (inclusive): a number, or an ISO date/timestamp for those types."""
    max: float | str | None = None
    """Largest allowed value (inclusive)."""
    categories: tuple[str | int, ...] | None = None
    """The only values allowed (missing values are judged by `nullable`)."""
    unique: bool = False
    """No value may appear twice (missing values aside)."""
    severity: str = "error"
    """How a broken check of this column counts: `error` fails the check, `warning` is recorded."""


@dataclass(frozen=True)
class SqlRule:
    name: str
    sql: str
    """A DuckDB SQL boolean expression over the file's columns; a row breaks the rule when it is
    false (NULL passes, as in a SQL CHECK constraint)."""
    severity: str = "error"


@dataclass(frozen=True)
class Contract:
    source: str
    """The contract file, as a user names it (errors and reports quote it)."""
    columns: tuple[ColumnContract, ...] = ()
    rules: tuple[SqlRule, ...] = ()
    min_rows: int | None = None
    max_rows: int | None = None
    extra_columns: str = "warning"
    """A column the contract does not name: `error`, `warning` (recorded) or `allow`."""

    def column(self, name: str) -> ColumnContract | None:
        return next((c for c in self.columns if c.name == name), None)


def contract_path_for(data_path: str) -> str:
    """The contract of a data file: the file beside it, `<data file>.contract.toml`."""
    return data_path + CONTRACT_SUFFIX


# ---------------------------------------------------------------------------------------------
# Parsing

def parse_contract(text: str, source: str) -> Contract:
    """Parse and validate a contract's text; the only exception is a ContractError."""
    try:
        return _parse(_read_toml(text, source), source)
    except ContractError:
        raise
    except ManifestError as exc:  # the table reader's errors, said as the contract's
        raise ContractError(exc.path, exc.key, exc.problem) from None


def _read_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ContractError(source, None, f"not valid TOML: {exc}") from None
    except (RecursionError, ValueError) as exc:
        raise ContractError(source, None, f"cannot be read: {exc or 'nested too deeply'}") from None


def _parse(raw: dict, source: str) -> Contract:
    root = TableReader(source, raw, "")
    table = root.table_of("table")
    min_rows = _optional_int(table, "min_rows")
    max_rows = _optional_int(table, "max_rows")
    if min_rows is not None and max_rows is not None and min_rows > max_rows:
        raise table.fail("max_rows", f"must be at least min_rows ({min_rows}), got {max_rows}")
    extra = table.get("extra_columns", str, default="warning")
    if extra not in EXTRA_COLUMNS:
        raise table.fail("extra_columns", f"must be one of {', '.join(EXTRA_COLUMNS)}, got {extra!r}")
    table.reject_unknown()

    columns_table = root.table_of("columns")
    columns = tuple(_parse_column(columns_table, name) for name in columns_table.table)
    rules = _parse_rules(root)
    root.reject_unknown()
    return Contract(source=source, columns=columns, rules=rules, min_rows=min_rows, max_rows=max_rows,
                    extra_columns=extra)


def _optional_int(table: TableReader, key: str) -> int | None:
    if table.get(key, int, default=None) is None:
        return None
    return table.integer(key, 0, 0, 10**15)


def _parse_column(columns: TableReader, name: str) -> ColumnContract:
    if not name.strip():
        raise columns.fail(name, "a column needs a name")
    col = columns.table_of(name)
    kind = col.get("type", str, default=None)
    if kind is not None and kind not in TYPES:
        raise col.fail("type", f"must be one of {', '.join(TYPES)}, got {kind!r}")
    low = _bound(col, "min", kind)
    high = _bound(col, "max", kind)
    if low is not None and high is not None and _comparable(low, high) and low > high:
        raise col.fail("max", f"must be at least min ({low}), got {high}")
    categories = _categories(col, kind)
    severity = _severity(col)
    spec = ColumnContract(name=name, type=kind, nullable=col.get("nullable", bool, default=True),
                          min=low, max=high, categories=categories,
                          unique=col.get("unique", bool, default=False), severity=severity)
    col.reject_unknown()
    return spec


def _comparable(a, b) -> bool:
    return type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float)))


def _bound(col: TableReader, key: str, kind: str | None) -> float | str | None:
    value = col.get(key, (float, str, date, datetime), default=None)
    if value is None:
        return None
    if kind in ("string", "boolean"):
        raise col.fail(key, f"a {kind} column has no range; use categories for its allowed values")
    if isinstance(value, (date, datetime)):
        value = value.isoformat()
    if isinstance(value, str):
        if kind not in ("date", "timestamp"):
            raise col.fail(key, f"must be a number, got {value!r}")
        try:
            (date.fromisoformat if kind == "date" else datetime.fromisoformat)(value)
        except ValueError:
            raise col.fail(key, f"must be an ISO {kind} (e.g. 2024-01-31), got {value!r}") from None
        return value
    if not math.isfinite(value):
        raise col.fail(key, f"must be a finite number, got {value}")
    if kind in ("date", "timestamp"):
        raise col.fail(key, f"a {kind} column's {key} is an ISO {kind} (e.g. 2024-01-31), got {value:g}")
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def _categories(col: TableReader, kind: str | None) -> tuple | None:
    values = col.get("categories", list, default=None)
    if values is None:
        return None
    if not values:
        raise col.fail("categories", "must list at least one value")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise col.fail("categories", f"must be a list of strings or integers, got {value!r}")
        if kind in ("integer",) and not isinstance(value, int):
            raise col.fail("categories", f"an integer column's categories are integers, got {value!r}")
        if kind == "float":
            raise col.fail("categories", "a float column has no categories; use min and max")
    if len(set(values)) < len(values):
        twice = next(v for v in values if values.count(v) > 1)
        raise col.fail("categories", f"{twice!r} is listed twice")
    return tuple(values)


def _severity(table: TableReader) -> str:
    severity = table.get("severity", str, default="error")
    if severity not in SEVERITIES:
        raise table.fail("severity", f"must be 'error' or 'warning', got {severity!r}")
    return severity


def _parse_rules(root: TableReader) -> tuple[SqlRule, ...]:
    raw = root.get("rules", list, default=[])
    rules: list[SqlRule] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise root.fail("rules", f"each rule is a table ([[rules]] with name and sql), got {item!r}")
        table = TableReader(root.source, item, f"rules[{i}]")
        name = table.text("name", required=True)
        if not _RULE_NAME.match(name):
            raise table.fail("name", f"{name!r} must be letters, digits, '_', '.' or '-'")
        if any(r.name == name for r in rules):
            raise table.fail("name", f"another rule is named {name!r}")
        sql = table.text("sql", required=True)
        problem = sql_expression_problem(sql)
        if problem:
            raise table.fail("sql", problem)
        rules.append(SqlRule(name=name, sql=sql.strip(), severity=_severity(table)))
        table.reject_unknown()
    return tuple(rules)


def sql_expression_problem(sql: str) -> str | None:
    """Why `sql` is not one boolean expression the check can put in a WHERE clause, or None.
    DuckDB judges the SQL itself when it runs (an unknown column names the rule); this catches
    what would break out of the clause: a `;`, unbalanced parentheses or quotes, a comment."""
    depth, quote = 0, None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return f"{sql!r}: a ')' closes nothing"
        elif ch == ";":
            return f"{sql!r}: one expression, without ';' (e.g. \"dep_delay >= -60\")"
    if quote:
        return f"{sql!r}: a quote is not closed"
    if depth:
        return f"{sql!r}: a '(' is not closed"
    if "--" in sql or "/*" in sql:
        return f"{sql!r}: comments are not allowed in a rule"
    return None


# ---------------------------------------------------------------------------------------------
# Inference from column statistics

@dataclass(frozen=True)
class ColumnStats:
    """What inference needs to know of one column (gathered by the adapter)."""

    name: str
    type: str | None
    """One of TYPES, or None for a type the contract cannot name (lists, structs)."""
    rows: int
    nulls: int
    distinct: int
    min: float | str | None = None
    max: float | str | None = None
    values: tuple | None = None
    """The distinct non-null values of a text or integer column with at most MAX_CATEGORIES."""


def infer_contract(source: str, rows: int, stats: list[ColumnStats], margin: float = DEFAULT_MARGIN) -> Contract:
    """A first contract that the table it was inferred from passes, with room to tighten:
    ranges widened by `margin` of the observed span (a column never below zero stays at zero),
    categories only for text columns with few values (and integer flags of two values), `nullable = false` only when no value is
    missing, `unique` only for integer or text columns whose values are all distinct, and at
    least ROW_MARGIN of the rows seen. From fewer than MIN_ROWS_FOR_BOUNDS rows: types and
    nullability alone."""
    if not 0 <= margin <= 10:
        raise ValueError(f"the margin must be between 0 and 10 (a share of each range), got {margin}")
    columns = [_infer_column(s, margin) for s in stats]
    if rows < MIN_ROWS_FOR_BOUNDS:
        columns = [ColumnContract(name=c.name, type=c.type, nullable=c.nullable) for c in columns]
    min_rows = math.floor(rows * ROW_MARGIN) if rows else None
    return Contract(source=source, columns=tuple(columns), min_rows=min_rows)


def _infer_column(s: ColumnStats, margin: float) -> ColumnContract:
    present = s.rows - s.nulls
    low = high = None
    if s.type in ("integer", "float") and isinstance(s.min, (int, float)) and isinstance(s.max, (int, float)):
        low, high = _widen(float(s.min), float(s.max), margin, s.type == "integer")
    elif s.type in ("date", "timestamp"):
        low, high = s.min, s.max  # dates are not widened: a person knows which days make sense
    categories = None
    if s.type == "integer" and s.values is not None and len(s.values) <= 2 and present >= 4:
        # a 0/1 flag: its two values, not a range widened to 0..2
        categories, low, high = tuple(sorted(s.values)), None, None
    if s.type == "string" and s.values is not None and 0 < len(s.values) <= MAX_CATEGORIES \
            and present >= 2 * len(s.values):
        categories = tuple(sorted(s.values, key=str))
    unique = s.type in ("integer", "string") and present > 1 and s.distinct == present
    return ColumnContract(name=s.name, type=s.type, nullable=s.nulls > 0, min=low, max=high,
                          categories=categories, unique=unique)


def _widen(low: float, high: float, margin: float, integer: bool) -> tuple[float, float]:
    pad = (high - low) * margin
    new_low, new_high = low - pad, high + pad
    if low >= 0 > new_low:
        new_low = 0.0
    if pad > 0:  # round outward to a readable step, so the file reads 0 and 80, not 79.3
        step = 10.0 ** math.floor(math.log10(pad))
        new_low = math.floor(new_low / step) * step
        new_high = math.ceil(new_high / step) * step
        digits = max(0, -math.floor(math.log10(step)))
        new_low, new_high = round(new_low, digits), round(new_high, digits)
        new_low, new_high = min(new_low, low), max(new_high, high)  # rounding never narrows
    if integer:
        return int(math.floor(new_low)), int(math.ceil(new_high))
    return new_low, new_high


# ---------------------------------------------------------------------------------------------
# Rendering

def render_contract(contract: Contract, header: str = "") -> str:
    """The contract as TOML that parse_contract reads back to the same Contract."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    if lines:
        lines.append("")
    lines.append("[table]")
    if contract.min_rows is not None:
        lines.append(f"min_rows = {contract.min_rows}")
    if contract.max_rows is not None:
        lines.append(f"max_rows = {contract.max_rows}")
    else:
        lines.append("# max_rows = ...  (unset: no upper bound)")
    lines.append(f'extra_columns = "{contract.extra_columns}"  # error | warning | allow')
    for col in contract.columns:
        lines += ["", f"[columns.{_key(col.name)}]"]
        if col.type:
            lines.append(f'type = "{col.type}"')
        lines.append(f"nullable = {str(col.nullable).lower()}")
        if col.min is not None:
            lines.append(f"min = {_value(col.min)}")
        if col.max is not None:
            lines.append(f"max = {_value(col.max)}")
        if col.categories is not None:
            lines.append(f"categories = [{', '.join(_value(v) for v in col.categories)}]")
        if col.unique:
            lines.append("unique = true")
        if col.severity != "error":
            lines.append(f'severity = "{col.severity}"')
    for rule in contract.rules:
        lines += ["", "[[rules]]", f"name = {_value(rule.name)}", f"sql = {_value(rule.sql)}"]
        if rule.severity != "error":
            lines.append(f'severity = "{rule.severity}"')
    if not contract.rules:
        lines += ["", "# Custom rules: a SQL expression every row must satisfy (NULL passes).",
                  "# [[rules]]", '# name = "positive_charges"', '# sql = "monthly_charges > 0"',
                  '# severity = "error"  # or "warning"']
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# The report of a check

@dataclass(frozen=True)
class Example:
    line: int
    """The CSV line (the header is line 1) or the Parquet row (the first is 1)."""
    value: str


@dataclass(frozen=True)
class Breach:
    """One check that rows (or the table) break."""

    rule: str
    """`type`, `malformed`, `nullable`, `min`, `max`, `categories`, `unique`, `column`,
    `extra_column`, `min_rows`, `max_rows`, or a custom rule's name."""
    column: str | None
    severity: str
    count: int
    """Rows that break it (for table-level checks: 1)."""
    detail: str
    """What the rule asks, in a user's words (`above max 80`)."""
    examples: tuple[Example, ...] = ()


@dataclass(frozen=True)
class ContractReport:
    data: str
    """The data file, by its path in the project."""
    contract: str
    rows: int
    line_kind: str = "line"
    """`line` (CSV, header counted) or `row` (Parquet)."""
    breaches: tuple[Breach, ...] = field(default_factory=tuple)
    skipped: tuple[str, ...] = ()
    """Checks left out and why (row counts of a drift batch)."""

    @property
    def errors(self) -> int:
        return sum(1 for b in self.breaches if b.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for b in self.breaches if b.severity == "warning")

    @property
    def passed(self) -> bool:
        return self.errors == 0

    def message(self, breach: Breach) -> str:
        """`12 rows above max 80 (line 5: 95, line 9: 120, ...)`."""
        what = breach.detail
        if breach.rule not in TABLE_RULES and breach.count:
            what = f"{breach.count:,} row{'s' if breach.count != 1 else ''} {breach.detail}"
        if breach.examples:
            shown = ", ".join(f"{self.line_kind} {e.line}: {e.value}" for e in breach.examples)
            more = ", ..." if breach.count > len(breach.examples) else ""
            what += f" ({shown}{more})"
        return what

    def to_json(self) -> dict:
        return {
            "data": self.data, "contract": self.contract, "rows": self.rows, "line_kind": self.line_kind,
            "ok": self.passed, "errors": self.errors, "warnings": self.warnings, "skipped": list(self.skipped),
            "breaches": [{"rule": b.rule, "column": b.column, "severity": b.severity, "count": b.count,
                          "detail": b.detail, "message": self.message(b),
                          "examples": [{self.line_kind: e.line, "value": e.value} for e in b.examples]}
                         for b in self.breaches],
        }


TABLE_RULES = ("column", "extra_column", "min_rows", "max_rows")
"""Checks of the table itself, not of rows: their detail is the whole message."""


def findings(reports: list[ContractReport]) -> list[dict]:
    """The reports as a validation report's findings (level, check, column, message), the shape
    the TUI's Validation tab shows for a project's own validate stage too."""
    out = []
    for report in reports:
        for b in report.breaches:
            column = f"{b.column}: " if b.column and b.rule not in TABLE_RULES else ""
            out.append({"level": b.severity, "check": b.rule, "column": b.column,
                        "message": f"{report.data}: {column}{report.message(b)}", "count": b.count})
        if not report.breaches:
            out.append({"level": "info", "check": "contract", "column": None,
                        "message": f"{report.data}: {report.rows:,} rows pass {report.contract}"})
    return out

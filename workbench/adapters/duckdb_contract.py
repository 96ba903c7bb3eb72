"""Check a data file against its contract, and gather the statistics inference needs, in DuckDB.

A CSV file is read once, into a private in-memory table (`data`) whose `rowid` is the row's
position in the file, so every later query scans memory, not the text again (a view would read
the text once per query, and DuckDB records rejected rows of such partial reads unreliably); a
Parquet file is read where it lies (a view with its `file_row_number`), since each query decodes
only the columns it names. Then one aggregate query counts the rows that break each column check and
custom rule (`count_if(...)`, ten times faster in DuckDB than `count(*) FILTER (WHERE ...)` over
a hundred checks), and only the checks something broke get a second query for their first few
rows. Uniqueness is a distinct count per unique column (examples by a window, when broken).

CSV: the contract's types are DuckDB's column types for the read (`types=`), and
`store_rejects` keeps a row that does not fit (a value of the wrong type, too many or too few
fields, bytes that are not UTF-8) out of the table and in `reject_errors` with its line; those
rows are the check's `type` and `malformed` breaches, named by line, never a crash. Columns the
contract does not type keep the sniffer's guess (so a rule compares their numbers as numbers);
should a row break only that guess, the file is read again with that column as text, so a
guess never rejects a row the contract did not ask about. A row's CSV line is its position plus the header plus the
rejected lines before it (a quoted field spanning lines would shift that count; such files
are rare in tabular ML data).

Parquet: the file's own types are compared with the contract's (a mismatch is one `type`
breach for the column), and the row number is the Parquet row (the first is 1).

Custom rules run after the data is loaded with DuckDB's external access switched off for the
connection, so a rule's SQL can read the table and nothing else: no file, no network.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace

import duckdb

from workbench.adapters.data_profile import reject_reasons, rejected_rows
from workbench.core.contract import (
    EXAMPLES, MAX_CATEGORIES, Breach, ColumnContract, ColumnStats, Contract, ContractReport, Example,
)
from workbench.core.errors import WorkbenchError

PARQUET_SUFFIXES = (".parquet", ".pq")
PARQUET_ROW = "file_row_number"
"""A Parquet row's position (0-based), from read_parquet(file_row_number = true)."""
CSV_TYPES = {"integer": "BIGINT", "float": "DOUBLE", "string": "VARCHAR", "boolean": "BOOLEAN",
             "date": "DATE", "timestamp": "TIMESTAMP"}
_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
             "UBIGINT", "UHUGEINT"}
_FLOATS = {"FLOAT", "DOUBLE"}
VALUE_WIDTH = 40
"""An example's value is cut to this many characters."""


class ContractCheckError(WorkbenchError):
    """The data file cannot be read at all (missing, not a table)."""


def contract_type(duckdb_type: str) -> str | None:
    """The contract type a DuckDB column type belongs to; None for one a contract cannot name."""
    t = duckdb_type.upper()
    if t in _INTEGERS:
        return "integer"
    if t in _FLOATS or t.startswith("DECIMAL"):
        return "float"
    if t == "VARCHAR":
        return "string"
    if t == "BOOLEAN":
        return "boolean"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    return None


def _is_parquet(path: str) -> bool:
    return path.lower().endswith(PARQUET_SUFFIXES)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _connect() -> duckdb.DuckDBPyConnection:
    # Private and in memory: a large file never holds the lineage store's lock.
    return duckdb.connect(":memory:")


def _fail(path: str, shown: str, exc: Exception) -> ContractCheckError:
    message = str(exc).replace(path, shown).splitlines()[0]
    kind = "Parquet" if _is_parquet(path) else "CSV"
    return ContractCheckError(f"{shown}: cannot read it as a {kind} table: {message}")


# ---------------------------------------------------------------------------------------------
# Inference

def table_stats(path: str, shown: str | None = None) -> tuple[int, list[ColumnStats]]:
    """The file's row count and what inference needs of each column. CSV types are sniffed from
    the whole file (not a sample), so the types inferred fit every row."""
    shown = shown or path
    con = _connect()
    try:
        try:
            if _is_parquet(path):  # read in place: each query decodes only the columns it names
                con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet({_literal(path)})")
            else:
                # Every row sniffed; no BOOLEAN guess: `Yes`/`No` text stays text, with its categories.
                con.execute("CREATE TABLE data AS SELECT * FROM read_csv(?, sample_size = -1, store_rejects = true, "
                            "auto_type_candidates = ['BIGINT', 'DOUBLE', 'DATE', 'TIMESTAMP', 'VARCHAR'])", [path])
        except duckdb.Error as exc:
            raise _fail(path, shown, exc) from None
        if not _is_parquet(path):
            rejected = rejected_rows(con)
            if rejected:
                line, why = rejected[0]
                raise ContractCheckError(f"{shown}: {len(rejected)} rows cannot be read (line {line}: {why}); "
                                         "fix them before inferring a contract, which every row must pass")
        schema = con.execute("DESCRIBE data").fetchall()
        parts = []
        for name, dtype, *_ in schema:
            c = _q(name)
            kind = contract_type(dtype)
            simple = kind is not None
            # Exact distinct counts only where they decide something (unique, categories): an
            # exact count of a million distinct floats is most of the inference's time.
            distinct = f"count(DISTINCT {c})" if kind in ("integer", "string") else \
                f"approx_count_distinct({c})" if simple else "0"
            parts += [f"count({c})", distinct,
                      f"min({c})" if simple else "NULL", f"max({c})" if simple else "NULL"]
        row = con.execute(f"SELECT count(*), {', '.join(parts)} FROM data").fetchone()
        rows = row[0]
        stats = []
        for i, (name, dtype, *_) in enumerate(schema):
            present, distinct, low, high = row[1 + 4 * i: 5 + 4 * i]
            kind = contract_type(dtype)
            values = None
            if kind in ("string", "integer") and distinct <= MAX_CATEGORIES:
                values = tuple(v for (v,) in con.execute(
                    f"SELECT DISTINCT {_q(name)} FROM data WHERE {_q(name)} IS NOT NULL").fetchall())
            if kind in ("date", "timestamp"):
                low, high = (v.isoformat() if v is not None else None for v in (low, high))
            elif kind not in ("integer", "float"):
                low = high = None
            elif low is not None:
                low, high = (int(v) if kind == "integer" else float(v) for v in (low, high))
            stats.append(ColumnStats(name=name, type=kind, rows=rows, nulls=rows - present, distinct=distinct,
                                     min=low, max=high, values=values))
        return rows, stats
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Checking

def check_file(path: str, contract: Contract, shown: str | None = None, row_bounds: bool = True) -> ContractReport:
    """The file checked against the contract. `shown`: the file's name for the user (DuckDB may
    read a snapshot's copy); `row_bounds=False` leaves out min_rows/max_rows (a drift batch is a
    slice of the data, not the data)."""
    shown = shown or path
    con = _connect()
    try:
        # This file and nothing else, from the start: a rule's SQL cannot read or write another.
        con.execute("SET allowed_paths = ?", [[os.path.abspath(path)]])
        con.execute("SET enable_external_access = false")
        try:
            return _Checker(con, path, contract, shown, row_bounds).run()
        except duckdb.Error as exc:
            raise _fail(path, shown, exc) from None
    finally:
        con.close()


def _literal(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _shown_value(value) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= VALUE_WIDTH else text[:VALUE_WIDTH - 3] + "..."


class _Checker:
    def __init__(self, con, path: str, contract: Contract, shown: str, row_bounds: bool):
        self.con, self.path, self.contract, self.shown, self.row_bounds = con, path, contract, shown, row_bounds
        self.parquet = _is_parquet(path)
        self.row = PARQUET_ROW if self.parquet else "rowid"
        """The column holding a row's position: the Parquet file's row number, the CSV table's rowid."""
        self.file_columns: dict[str, str] = {}
        self.rejects: list[tuple] = []
        self.rejected_lines: list[int] = []
        self.breaches: list[Breach] = []

    def run(self) -> ContractReport:
        types = self._csv_types() if not self.parquet else {}
        if not self.parquet:
            first = self._one_read(types)
            if first is not None:
                checks, uniques, counts = first
                if not any(counts[1:]):  # the usual run: the file passes, read once
                    self._table(counts[0])
                    return self._report(counts[0])
                if self._narrow_table(types, checks, uniques, counts):
                    return self._finish(checks, uniques, counts)
        for attempt in (1, 2):
            self._define(types)
            checks, uniques, counts = self._count()
            self.rejects = self._read_rejects()
            # A column the contract does not type keeps DuckDB's guess, so a rule compares its
            # numbers as numbers; a row that breaks only that guess is read again with it as text.
            guessed = {c for _, c, kind, _ in self.rejects if kind == "CAST" and c and c not in types}
            if not guessed or attempt == 2:
                break
            types = {**types, **{c: "VARCHAR" for c in guessed}}
            self.con.execute(f"DROP {'VIEW' if self.parquet else 'TABLE'} data")
        self.rejected_lines = sorted({int(r[0]) for r in self.rejects})
        self._rejects_as_breaches()
        return self._finish(checks, uniques, counts)

    def _finish(self, checks: list, uniques: list[ColumnContract], counts: tuple) -> ContractReport:
        """The report from the counts: table checks, then each broken check with its first rows."""
        rows = counts[0] + len(self.rejected_lines)
        self._table(rows)
        for (rule, column, severity, cond, detail), count in zip(checks, counts[1:]):
            if count:
                self.breaches.append(Breach(rule, column, severity, int(count), detail,
                                            self._examples(cond, self._shown_columns(column, cond),
                                                           named=column is None)))
        for spec, count in zip(uniques, counts[1 + len(checks):]):
            if count:
                self.breaches.append(Breach("unique", spec.name, spec.severity, int(count),
                                            "holding a value an earlier row holds (unique = true)",
                                            self._repeats(spec.name)))
        return self._report(rows)

    def _count(self) -> tuple[list, list[ColumnContract], tuple]:
        """One pass over `data`: the row count, every check's count, every unique column's repeats."""
        self.breaches = []
        checks = self._column_checks() + self._rule_checks()
        uniques = [s for s in self.contract.columns if s.unique and s.name in self.file_columns]
        parts = ["count(*)", *(f"count_if({cond})" for _, _, _, cond, _ in checks),
                 *(f"count({_q(s.name)}) - count(DISTINCT {_q(s.name)})" for s in uniques)]
        return checks, uniques, self.con.execute(f"SELECT {', '.join(parts)} FROM data").fetchone()

    def _one_read(self, types: dict[str, str]) -> tuple | None:
        """A CSV's counts, read once straight from the text (no table, no reject tables: DuckDB
        stops at the first row that does not fit); None when it stopped."""
        try:
            self._define(types, materialize=False)
            return self._count()
        except duckdb.Error:
            self.con.execute("DROP VIEW IF EXISTS data")
            return None

    def _narrow_table(self, types: dict[str, str], checks: list, uniques: list[ColumnContract],
                      counts: tuple) -> bool:
        """Every row of the CSV fit (the first read did not stop) but checks broke: their first
        rows need their lines, so the columns those checks read are read again into a table
        (its rowid + 2 is the line). False when that cannot be (a rule's columns not found)."""
        needed = {column for (_, column, _, _, _), n in zip(checks, counts[1:]) if n and column}
        needed |= {s.name for s, n in zip(uniques, counts[1 + len(checks):]) if n}
        for (_, column, _, cond, _), n in zip(checks, counts[1:]):
            if n and column is None:
                needed |= set(self._shown_columns(None, cond, limit=None))
        broken = [cond for (_, _, _, cond, _), n in zip(checks, counts[1:]) if n]
        try:
            self.con.execute("DROP VIEW data")
            picked = ", ".join(_q(c) for c in self.file_columns if c in needed) or "1 AS no_column"
            struct = "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in types.items()) + "}"
            option = f", types = {struct}" if types else ""
            self.con.execute(f"CREATE TABLE data AS SELECT {picked} FROM read_csv({_literal(self.path)}{option})")
            for cond in broken:  # a rule naming a column the table lacks: read it all instead
                self.con.execute(f"SELECT count(*) FROM data WHERE {cond} LIMIT 0").fetchall()
        except duckdb.Error:
            self.con.execute("DROP TABLE IF EXISTS data")
            return False
        return True

    def _report(self, rows: int) -> ContractReport:
        return ContractReport(data=self.shown, contract=self.contract.source, rows=rows,
                              line_kind="row" if self.parquet else "line",
                              breaches=tuple(self.breaches),
                              skipped=() if self.row_bounds else ("row counts (a batch is a slice of the data)",))

    def _csv_types(self) -> dict[str, str]:
        """The contract's types of the CSV's columns, as DuckDB types for the read."""
        # store_rejects here too: a malformed line early in the file otherwise makes the sniffer
        # fall back to one column named after the whole header.
        header = self.con.execute(f"DESCRIBE SELECT * FROM read_csv({_literal(self.path)}, store_rejects = true)"
                                  ).fetchall()
        return {name: CSV_TYPES[spec.type] for name, *_ in header
                if (spec := self.contract.column(name)) is not None and spec.type is not None}

    def _define(self, types: dict[str, str], materialize: bool = True) -> None:
        """`data`: the Parquet file's view; the CSV's table, or a view of its text when not
        `materialize` (a view cannot take prepared parameters: literals)."""
        if self.parquet:
            self.con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet({_literal(self.path)}, "
                             "file_row_number = true)")
        else:
            # A struct literal: a parameter dict is not always taken as one.
            struct = "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in types.items()) + "}"
            option = f", types = {struct}" if types else ""
            if not materialize:
                self.con.execute(f"CREATE VIEW data AS SELECT * FROM read_csv({_literal(self.path)}{option})")
            else:
                # A table (DuckDB 2.0.1 fills its reject tables for CREATE TABLE AS, not for a
                # query that only counts), whose rowid gives each row its line.
                self.con.execute(f"CREATE TABLE data AS SELECT * FROM read_csv({_literal(self.path)}, "
                                 f"store_rejects = true{option})")
        schema = self.con.execute("DESCRIBE data").fetchall()
        self.file_columns = {name: dtype for name, dtype, *_ in schema if not (self.parquet and name == PARQUET_ROW)}

    def _read_rejects(self) -> list[tuple]:
        """The rows the last read of the CSV left out: [(line, column, error type, message)]."""
        if self.parquet:
            return []
        try:
            return self.con.execute(
                "SELECT line, column_name, error_type::VARCHAR, error_message FROM reject_errors "
                "WHERE scan_id = (SELECT max(scan_id) FROM reject_scans) ORDER BY line").fetchall()
        except duckdb.CatalogException:  # made by the first read that rejects a row
            return []

    def _line(self, rowid: int) -> int:
        """The row's CSV line (header = line 1) or Parquet row number (first = 1)."""
        if self.parquet:
            return rowid + 1
        line = rowid + 2
        for rejected in self.rejected_lines:  # sorted: each rejected line before it shifts it down
            if rejected <= line:
                line += 1
            else:
                break
        return line

    def _rejects_as_breaches(self) -> None:
        """Rows the CSV read left out: a value of the wrong type (per column), else a malformed row."""
        by_column: dict[str, list[tuple[int, str]]] = {}
        malformed: dict[int, str] = {}
        reasons = dict(reject_reasons([(line, kind, column, message) for line, column, kind, message in self.rejects]))
        for line, column, kind, message in self.rejects:
            if kind == "CAST" and column:
                value = re.search(r'Could not convert string "(.*?)"', message or "")
                by_column.setdefault(column, []).append((int(line), value[1] if value else "?"))
            else:
                malformed.setdefault(int(line), reasons.get(int(line), kind.lower()))
        for column, bad in by_column.items():
            spec = self.contract.column(column)
            severity = spec.severity if spec else "error"
            kind = spec.type if spec and spec.type else "value of its type"
            lines = sorted(set(bad))
            self.breaches.append(Breach("type", column, severity, len(lines), f"not a valid {kind}",
                                        tuple(Example(line, _shown_value(v)) for line, v in sorted(bad)[:EXAMPLES])))
        malformed = {line: why for line, why in malformed.items() if line not in
                     {ln for bad in by_column.values() for ln, _ in bad}}
        if malformed:
            shown = sorted(malformed.items())[:EXAMPLES]
            self.breaches.append(Breach("malformed", None, "error", len(malformed), "cannot be read as a row",
                                        tuple(Example(line, why) for line, why in shown)))

    def _table(self, rows: int) -> None:
        c = self.contract
        for spec in c.columns:
            if spec.name not in self.file_columns:
                self.breaches.append(Breach("column", spec.name, spec.severity, 1, f"column {spec.name!r} is missing"))
        if c.extra_columns != "allow":
            for name in self.file_columns:
                if c.column(name) is None:
                    self.breaches.append(Breach("extra_column", name, c.extra_columns, 1,
                                                f"column {name!r} is not in the contract"))
        if self.row_bounds and c.min_rows is not None and rows < c.min_rows:
            self.breaches.append(Breach("min_rows", None, "error", 1, f"{rows:,} rows, fewer than min_rows {c.min_rows:,}"))
        if self.row_bounds and c.max_rows is not None and rows > c.max_rows:
            self.breaches.append(Breach("max_rows", None, "error", 1, f"{rows:,} rows, more than max_rows {c.max_rows:,}"))

    def _usable(self, spec: ColumnContract) -> str | None:
        """The column's quoted name when its value checks can run: present, and of its type."""
        dtype = self.file_columns.get(spec.name)
        if dtype is None:
            return None
        found = contract_type(dtype)
        if spec.type and found != spec.type and not (spec.type == "float" and found == "integer"):
            self.breaches.append(Breach("type", spec.name, spec.severity, 1,
                                        f"column {spec.name!r} is {dtype}, the contract says {spec.type}"))
            return None
        return _q(spec.name)

    def _column_checks(self) -> list[tuple[str, str | None, str, str, str]]:
        """(rule, column, severity, SQL condition a breaking row meets, detail) per column check."""
        checks = []
        for spec in self.contract.columns:
            col = self._usable(spec)
            if col is None:
                continue
            sev = spec.severity
            cast = f"::{CSV_TYPES[spec.type]}" if spec.type in ("date", "timestamp") else ""
            if not spec.nullable:
                checks.append(("nullable", spec.name, sev, f"{col} IS NULL", "missing (nullable = false)"))
            found = contract_type(self.file_columns[spec.name])
            ranged = found in ("integer", "float") if not cast else found == spec.type
            if (spec.min is not None or spec.max is not None) and not ranged:
                # an untyped column that holds text: comparing it with a number would stop the check
                self.breaches.append(Breach("type", spec.name, sev, 1, f"column {spec.name!r} is "
                                            f"{self.file_columns[spec.name]}: min and max need numbers"))
                spec = replace(spec, min=None, max=None)
            if spec.min is not None:
                checks.append(("min", spec.name, sev, f"{col} < {_literal(spec.min)}{cast}", f"below min {spec.min}"))
            if spec.max is not None:
                checks.append(("max", spec.name, sev, f"{col} > {_literal(spec.max)}{cast}", f"above max {spec.max}"))
            if spec.categories is not None:
                numeric = contract_type(self.file_columns[spec.name]) == "integer"
                if numeric and all(isinstance(v, int) for v in spec.categories):
                    cond = f"{col} NOT IN ({', '.join(str(v) for v in spec.categories)})"
                else:
                    cond = f"{col}::VARCHAR NOT IN ({', '.join(_literal(str(v)) for v in spec.categories)})"
                shown = ", ".join(str(v) for v in spec.categories[:8]) + (", ..." if len(spec.categories) > 8 else "")
                checks.append(("categories", spec.name, sev, cond, f"not in categories [{shown}]"))
        return checks

    def _rule_checks(self) -> list[tuple[str, str | None, str, str, str]]:
        checks = []
        for rule in self.contract.rules:
            cond = f"NOT coalesce(({rule.sql})::BOOLEAN, true)"
            try:  # bound alone first: one broken rule names itself and leaves the others running
                self.con.execute(f"SELECT count_if({cond}) FROM data LIMIT 0").fetchall()
            except duckdb.Error as exc:
                problem = str(exc).splitlines()[0]
                self.breaches.append(Breach(rule.name, None, "error", 0,
                                            f"rule {rule.name!r} ({rule.sql}) cannot be checked: {problem}"))
                continue
            checks.append((rule.name, None, rule.severity, cond, f"breaking rule {rule.name!r} ({rule.sql})"))
        return checks

    def _shown_columns(self, column: str | None, cond: str, limit: int | None = 4) -> list[str]:
        if column is not None:
            return [column]
        # a custom rule: the columns its SQL names, so an example shows the values that broke it
        named = [c for c in self.file_columns if re.search(rf'(?<![\w"]){re.escape(c)}(?![\w"])', cond)
                 or _q(c) in cond]
        return named[:limit]

    def _examples(self, cond: str, columns: list[str], named: bool = False) -> tuple[Example, ...]:
        """The first rows meeting `cond`, by line, with the values of `columns` (`name=value`
        when `named`: a custom rule's columns)."""
        shown = ", ".join(_q(c) for c in columns) or "NULL"
        rows = self.con.execute(f"SELECT {self.row}, {shown} FROM data WHERE {cond} "
                                f"ORDER BY {self.row} LIMIT {EXAMPLES}").fetchall()
        out = []
        for rowid, *values in rows:
            if len(columns) == 1 and not named:
                text = _shown_value(values[0])
            else:
                text = ", ".join(f"{c}={_shown_value(v)}" for c, v in zip(columns, values))
            out.append(Example(self._line(rowid), text))
        return tuple(out)

    def _repeats(self, column: str) -> tuple[Example, ...]:
        """The first rows whose value of `column` an earlier row holds."""
        col = _q(column)
        rows = self.con.execute(
            f"SELECT {self.row}, {col} FROM data WHERE {col} IS NOT NULL "
            f"QUALIFY row_number() OVER (PARTITION BY {col} ORDER BY {self.row}) > 1 "
            f"ORDER BY {self.row} LIMIT {EXAMPLES}").fetchall()
        return tuple(Example(self._line(r), _shown_value(v)) for r, v in rows)

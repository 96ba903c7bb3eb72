"""The lineage profile of a data file: its schema and per-column statistics, read with DuckDB.

A profile never stops a run. The project's own validate stage judges the data; the profile
only describes it. So rows DuckDB cannot read (an extra or a missing field, a value that does
not fit its column's type, bytes that are not UTF-8) are left out and named by their line, and
a file that cannot be read at all gets an empty profile that says why. Either way the problems
travel with the profile (DatasetProfile.problems) and the run shows them as warnings.

Messages never name the file: the caller knows it by its path in the project, while DuckDB only
ever sees the run's snapshot copy (`.workbench/snapshots/<id>/...`), which means nothing to a user.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from workbench.core.model import ColumnProfile, DatasetProfile

NUMERIC_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                 "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
LINES_NAMED = 5
"""Rows named one by one in a profile's problems; beyond them, a count."""

_COUNTS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")


def profile_file(path: str, fingerprint: str) -> DatasetProfile:
    """The file's profile, with what could not be read in `problems`. Never raises for what is
    in the file (only for what is wrong with this process: out of memory, interrupted)."""
    parquet = Path(path).suffix.lower() in PARQUET_SUFFIXES
    # A private in-memory database: reading a large file must not keep the store locked.
    con = duckdb.connect(":memory:")
    try:
        try:
            rejected = _load(con, path, parquet)
        except duckdb.Error as e:
            kind = "Parquet" if parquet else "CSV"
            return DatasetProfile(path, fingerprint, 0, (), (f"not profiled: cannot read it as a {kind} table: "
                                                              f"{_problem(e, path)}",))
        summary = con.execute("SUMMARIZE data").fetchall()
        non_null = ", ".join('count("{}")'.format(row[0].replace('"', '""')) for row in summary)
        counts = con.execute(f"SELECT count(*){', ' if non_null else ''}{non_null} FROM data").fetchone()
    finally:
        con.close()
    row_count = counts[0]
    columns = []
    for row, present in zip(summary, counts[1:]):
        name, dtype, low, high, distinct, *stats = row[:10]
        # SUMMARIZE gives every statistic as text; the mean of a date column is a date, not a number.
        numeric = dtype in NUMERIC_TYPES or dtype.startswith("DECIMAL")
        mean, std, q25, q50, q75 = (float(v) if numeric and v is not None else None for v in stats)
        columns.append(ColumnProfile(name=name, dtype=dtype, count=row_count, nulls=row_count - present,
                                     distinct=distinct, min=low, max=high, mean=mean, std=std,
                                     q25=q25, q50=q50, q75=q75))
    return DatasetProfile(path, fingerprint, row_count, tuple(columns), _rejected_problems(rejected, row_count))


def _load(con: duckdb.DuckDBPyConnection, path: str, parquet: bool) -> list[tuple[int, str]]:
    """Read the file into table `data`; the rows left out: [(line, what was wrong)]."""
    if parquet:
        con.execute("CREATE TABLE data AS SELECT * FROM read_parquet(?)", [path])
        return []
    # store_rejects: a row with the wrong number of fields (or a value its column's sniffed type
    # cannot hold, or bad UTF-8) is skipped and recorded with its line, instead of failing the
    # read, or, early in the file, making the sniffer fall back to one column named after the
    # whole header line.
    con.execute("CREATE TABLE data AS SELECT * FROM read_csv(?, store_rejects = true)", [path])
    return rejected_rows(con)


def rejected_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str]]:
    """The rows the connection's last `read_csv(..., store_rejects = true)` left out: [(line,
    what was wrong, in a user's words)], in file order."""
    rows = con.execute(
        "SELECT line, error_type::VARCHAR, coalesce(column_name, ''), coalesce(error_message, '') "
        "FROM reject_errors ORDER BY line, error_type, column_name").fetchall()
    return reject_reasons(rows)


def reject_reasons(rows: list[tuple]) -> list[tuple[int, str]]:
    """[(line, error type, column, message)] rows of `reject_errors` as [(line, what was wrong,
    in a user's words)], in file order."""
    rows = sorted(((int(line), kind, column or "", message or "") for line, kind, column, message in rows),
                  key=lambda r: (r[0], r[1], r[2]))
    reasons: dict[int, list[str]] = {}
    for line, kind, column, message in _one_short_row_entry_per_line(rows):
        said = reasons.setdefault(int(line), [])
        reason = _reject(kind, column, message)
        if reason not in said:
            said.append(reason)
    return [(line, "; ".join(said)) for line, said in reasons.items()]


def _one_short_row_entry_per_line(rows: list[tuple]) -> list[tuple]:
    """DuckDB reports a row with missing fields once per missing column, each entry counting the
    fields read up to that column ("Found: 2", "Found: 3", ...): the row's own count is the
    smallest. Keep that entry alone, so the row reads "2 fields", not a list of counts."""
    fewest: dict[int, tuple] = {}
    for row in rows:
        counts = _COUNTS.search(row[3])
        if row[1] == "MISSING COLUMNS" and counts:
            kept = fewest.get(row[0])
            if kept is None or int(counts[2]) < int(_COUNTS.search(kept[3])[2]):
                fewest[row[0]] = row
    return [row for row in rows if row[1] != "MISSING COLUMNS" or fewest.get(row[0], row) is row]


def rejected_summary(rejected: list[tuple[int, str]]) -> str:
    """"2 rows could not be read (line 3: ...; line 9: ...)", naming at most LINES_NAMED."""
    n = len(rejected)
    named = "; ".join(f"line {line}: {why}" for line, why in rejected[:LINES_NAMED])
    more = f"; and {n - LINES_NAMED} more" if n > LINES_NAMED else ""
    return f"{n} row{'s' if n != 1 else ''} could not be read ({named}{more})"


def _reject(kind: str, column: str, message: str) -> str:
    """One reason DuckDB gave for leaving a row out, in a user's words."""
    counts = _COUNTS.search(message)
    if kind in ("TOO MANY COLUMNS", "MISSING COLUMNS") and counts:
        return f"{counts[2]} field{'' if counts[2] == '1' else 's'} where the header has {counts[1]}"
    if kind == "INVALID ENCODING":
        return "not UTF-8 text"
    if kind == "CAST" and column:
        value = re.search(r'Could not convert string "(.*?)" to \'?([A-Z]+)', message)
        if value:
            return f"column {column}: {value[1]!r} is not a {value[2]} like the rest of the column"
    return message.split("\n", 1)[0]


def _rejected_problems(rejected: list[tuple[int, str]], kept: int) -> tuple[str, ...]:
    if not rejected:
        return ()
    n = len(rejected)
    head = (f"{n} row{'s' if n != 1 else ''} could not be read and {'are' if n != 1 else 'is'} left out of "
            f"its profile ({kept:,} profiled)")
    named = [f"line {line}: {why}" for line, why in rejected[:LINES_NAMED]]
    more = [f"and {n - LINES_NAMED} more"] if n > LINES_NAMED else []
    return (head, *named, *more)


def _problem(error: duckdb.Error, path: str) -> str:
    """DuckDB's message without its "Xxx Error:" prefix, the data line it echoes, its hints, and
    the snapshot path it names."""
    first_paragraph = str(error).split("\n\n", 1)[0]
    lines = [line for line in first_paragraph.splitlines() if not line.startswith("Original Line:")]
    said = re.sub(r"^[A-Za-z ]+ Error: ", "", "; ".join(lines[:2]))
    return said.replace(f'"{path}"', "the file").replace(path, "the file")

"""Data files for drift checks: read a CSV or Parquet table into columns for workbench.core.drift,
and write the file a drift retrain trains on (the training data plus a batch, or the batch).

DuckDB reads the files (in a private in-memory database, so a large file never holds the lineage
store). A CSV is read as text, so that what a column holds is decided by its values, not by a
type sniffed from a sample: a column is numbers when every value in it parses as one.

read_table holds every column as text and numbers at once: for tests and small tables. Drift
checks read large files through workbench.adapters.table_stats (the same reading, a group of
columns at a time, statistics in DuckDB), which shares this module's DuckDB and readers.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from workbench.adapters.data_profile import rejected_rows
from workbench.core.drift import ColumnData
from workbench.core.errors import WorkbenchError

PARQUET_SUFFIXES = {".parquet", ".pq"}
TABLE_SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".pq"}
"""Files in the incoming folder with these suffixes are batches (others, such as a README, are not)."""


_lock = threading.Lock()
_engine: tuple[int, duckdb.DuckDBPyConnection] | None = None


def duckdb_cursor() -> duckdb.DuckDBPyConnection:
    """A connection of this process's private in-memory DuckDB: a fresh `duckdb.connect` costs
    about 20 ms of catalog building per call, a cursor of a live instance nothing. Each cursor
    has its own temporary tables, so threads reading at once do not meet."""
    global _engine
    with _lock:
        if _engine is None or _engine[0] != os.getpid():  # a forked child needs its own
            _engine = (os.getpid(), duckdb.connect(":memory:"))
        return _engine[1].cursor()


@dataclass(frozen=True)
class Table:
    rows: int
    columns: dict[str, ColumnData]
    rejected: tuple[tuple[int, str], ...] = ()
    """CSV rows that could not be read and are left out: (line, what was wrong)."""


def is_parquet(name: str | Path) -> bool:
    return Path(name).suffix.lower() in PARQUET_SUFFIXES


def is_batch_file(name: str | Path) -> bool:
    path = Path(name)
    return path.suffix.lower() in TABLE_SUFFIXES and not path.name.startswith(".")


def quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_reader(path: Path, parquet: bool) -> str:
    literal = "'" + str(path).replace("'", "''") + "'"
    if parquet:
        return f"read_parquet({literal})"
    # store_rejects: a row with the wrong number of fields is left out and recorded by line; without
    # it, one extra field on the last line made DuckDB's sniffer take that line for the header and
    # read every row before it as nothing (a batch of 51 rows came back empty).
    return f"read_csv({literal}, all_varchar = true, header = true, store_rejects = true)"


def read_table(path: Path, name: str | None = None) -> Table:
    """The table's columns (text and numbers) and row count. `name` is the file's logical name
    when `path` has none (an object in the content-addressed store): its suffix picks the format.
    Raises WorkbenchError when the file cannot be read as a table."""
    parquet = is_parquet(name or path)
    label = name or str(path)
    if not parquet and path.stat().st_size == 0:
        return Table(0, {})
    con = duckdb_cursor()
    try:
        con.execute(f"CREATE TEMP TABLE t AS SELECT * FROM {table_reader(path, parquet)}")
        rejected = () if parquet else tuple(rejected_rows(con))
        described = con.execute("DESCRIBE t").fetchall()
        rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
        if not parquet and len(described) == 1 and "," in described[0][0]:
            raise WorkbenchError(f"cannot read {label}: its rows do not all have the same number of fields")
        selects = []
        for i, (column, *_rest) in enumerate(described):
            q = quote_name(column)
            selects.append(f"CAST({q} AS VARCHAR) AS t{i}, TRY_CAST({q} AS DOUBLE) AS n{i}")
        data = con.execute(f"SELECT {', '.join(selects)} FROM t").fetchnumpy() if selects else {}
    except duckdb.Error as exc:
        problem = re.sub(r"^[A-Za-z ]+ Error: ", "", str(exc).splitlines()[0])
        raise WorkbenchError(f"cannot read {label} as a {'Parquet' if parquet else 'CSV'} table: {problem}") from None
    finally:
        con.close()
    columns = {}
    for i, (column, source_type, *_rest) in enumerate(described):
        columns[column] = ColumnData(column, _text(data[f"t{i}"]), _numbers(data[f"n{i}"]),
                                     "text" if source_type == "VARCHAR" and not parquet else source_type)
    return Table(rows, columns, rejected)


def _text(values) -> np.ndarray:
    out = np.array(np.ma.getdata(values), dtype=object)
    mask = np.ma.getmaskarray(values)
    if mask.any():
        out[mask] = None
    return out


def _numbers(values) -> np.ndarray:
    out = np.array(np.ma.getdata(values), dtype=float)
    mask = np.ma.getmaskarray(values)
    if mask.any():
        out[mask] = np.nan
    out[np.isinf(out)] = np.nan
    return out


def write_training_file(training: Path, training_name: str, batch: Path, out: Path, policy: str) -> None:
    """Write the data a drift retrain trains on to `out` (named like `training_name`):

    append   the training data, byte for byte, then the batch's rows in the training data's
             column order (columns the training data lacks are dropped);
    replace  the batch alone, in the training data's format.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    try:
        if is_parquet(training_name) or is_parquet(batch):
            _write_with_duckdb(training, training_name, batch, tmp, policy)
        elif policy == "replace":
            shutil.copyfile(batch, tmp)
        else:
            _append_csv(training, batch, tmp)
        os.replace(tmp, out)
    except duckdb.Error as exc:
        raise WorkbenchError(f"cannot combine {training_name} and {batch.name}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise WorkbenchError(f"cannot write the retraining data {out}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _dialect(path: Path) -> type[csv.Dialect] | csv.Dialect:
    """The file's CSV dialect (delimiter, quoting), sniffed from its start; plain CSV if unsure."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        sample = fh.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _append_csv(training: Path, batch: Path, out: Path) -> None:
    with open(training, "rb") as fh:
        head = fh.readline()
    dialect = _dialect(training)
    header = next(csv.reader(io.StringIO(head.decode("utf-8-sig")), dialect))
    newline = "\r\n" if head.endswith(b"\r\n") else "\n"
    shutil.copyfile(training, out)
    with open(out, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) not in (b"\n", b"\r"):
                fh.write(newline.encode())
    with open(batch, newline="", encoding="utf-8-sig") as src, open(out, "a", newline="", encoding="utf-8") as dst:
        writer = csv.writer(dst, delimiter=dialect.delimiter, quotechar=dialect.quotechar or '"',
                            lineterminator=newline)
        for row in csv.DictReader(src, dialect=_dialect(batch)):
            writer.writerow(["" if row.get(column) is None else row[column] for column in header])


def _write_with_duckdb(training: Path, training_name: str, batch: Path, out: Path, policy: str) -> None:
    con = duckdb_cursor()
    try:
        con.execute(f"CREATE TEMP VIEW ref AS SELECT * FROM {table_reader(training, is_parquet(training_name))}")
        columns = ", ".join(quote_name(row[0]) for row in con.execute("DESCRIBE ref").fetchall())
        batch_rows = f"SELECT {columns} FROM {table_reader(batch, is_parquet(batch))}"
        query = batch_rows if policy == "replace" else f"SELECT * FROM ref UNION ALL BY NAME {batch_rows}"
        fmt = "(FORMAT parquet)" if is_parquet(training_name) else "(HEADER, DELIMITER ',')"
        literal = "'" + str(out).replace("'", "''") + "'"
        con.execute(f"COPY ({query}) TO {literal} {fmt}")
    finally:
        con.close()

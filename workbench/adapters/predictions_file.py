"""A stage's predictions file (Parquet or CSV), read on the host through DuckDB into arrays.

The file is a stage output, so it is read the way every output is: only a regular file, opened
without following a symlink (workbench.adapters.regular_files.open_regular), and DuckDB reads
that open file (through /proc/self/fd where there is one, else a private copy made from it),
never the path again, so a file swapped after the check is not what gets read.

Sensitive columns the file does not hold are joined from the data file by `id`: on the data
file's own `id` column when it has one, else `id` is the row's position in the data file
(0 for the first row after the header, as pandas' default index numbers them).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np

from workbench.adapters.regular_files import NotRegularFile, open_regular
from workbench.core.evaluation import Predictions, PredictionsError

NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "BOOLEAN")
ID_COLUMN = "id"
CSV_TYPES = "['BIGINT', 'DOUBLE', 'VARCHAR']"


def read_predictions(path: Path, shown: str, target: str | None, sensitive: tuple[str, ...],
                     data_file: Path | None = None, data_shown: str = "") -> Predictions:
    """The columns of a predictions file; PredictionsError naming `shown` (the file as the
    user knows it) and the column for anything missing or unusable."""
    try:
        with _opened(path) as readable, _reader(readable, path) as (con, source):
            columns = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {source})")
                           .fetchall())
            label = _label_column(columns, target, shown)
            if "score" in columns and not columns["score"].startswith(NUMERIC_TYPES):
                raise PredictionsError(f"{shown}: column 'score' must hold numbers (probabilities), "
                                       f"it is {columns['score']}")
            wanted = [label] + [c for c in ("score", "prediction") if c in columns]
            own = [c for c in sensitive if c in columns]
            joined = [c for c in sensitive if c not in columns]
            select = ", ".join(f"p.{_quoted(c)}" for c in wanted + own)
            if joined:
                join = _join_clause(con, columns, joined, shown, data_file, data_shown)
                select += ", " + ", ".join(f"d.{_quoted(c)}" for c in joined)
                missing = con.execute(f"SELECT count(*) FROM {source} p {join} WHERE d.__matched IS NULL").fetchone()[0]
                if missing:
                    raise PredictionsError(f"{shown}: {missing} rows have an id that is not in {data_shown} "
                                           f"(joining {', '.join(joined)} by id)")
            else:
                join = ""
            arrays = con.execute(f"SELECT {select} FROM {source} p {join}").fetchnumpy()
    except NotRegularFile as exc:
        raise PredictionsError(f"{shown}: {exc}") from None
    except FileNotFoundError:
        raise PredictionsError(f"{shown}: the stage did not write its declared predictions file") from None
    except duckdb.Error as exc:
        raise PredictionsError(f"{shown}: cannot be read as {_kind(path)}: {_first_line(exc)}") from None
    values = list(arrays.values())
    n_wanted = len(wanted)
    named = dict(zip(wanted, values[:n_wanted]))
    groups = dict(zip(own + joined, values[n_wanted:]))
    return Predictions(
        source=shown, label_name=label, label=_plain(named[label]),
        score=_numbers(named["score"]) if "score" in named else None,
        prediction=_plain(named["prediction"]) if "prediction" in named else None,
        groups={c: _plain(groups[c]) for c in sensitive},
    )


def _label_column(columns: dict[str, str], target: str | None, shown: str) -> str:
    for name in (target, "label"):
        if name and name in columns:
            return name
    expected = f"{target!r} (data.target) or 'label'" if target else "'label' (or set data.target)"
    raise PredictionsError(f"{shown}: no label column: expected {expected}; its columns are "
                           f"{', '.join(columns)}")


def _join_clause(con: duckdb.DuckDBPyConnection, columns: dict[str, str], joined: list[str], shown: str,
                 data_file: Path | None, data_shown: str) -> str:
    if ID_COLUMN not in columns or data_file is None:
        why = "" if data_file is not None else " (and data.paths names no single data file to join them from)"
        raise PredictionsError(f"{shown}: no column {joined[0]!r} (data.sensitive), and no 'id' column to join it "
                               f"from the data file{why}; its columns are {', '.join(columns)}")
    data = _table_function(data_file)
    data_columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {data}").fetchall()]
    for column in joined:
        if column not in data_columns:
            raise PredictionsError(f"{shown}: no column {column!r} (data.sensitive), and {data_shown} has none "
                                   "to join by id either")
    if ID_COLUMN in data_columns:
        keyed = f"SELECT *, true AS __matched FROM {data}"
        key = f"d.{ID_COLUMN}"
    else:
        keyed = f"SELECT *, row_number() OVER () - 1 AS __row, true AS __matched FROM {data}"
        key = "d.__row"
    return f"LEFT JOIN ({keyed}) d ON p.{ID_COLUMN} = {key}"


@contextmanager
def _opened(path: Path) -> Iterator[str]:
    """A path DuckDB can open that is the regular file checked here (not the path again)."""
    fd, _ = open_regular(path)
    try:
        proc = f"/proc/self/fd/{fd}"
        if os.path.exists(proc):
            yield proc
            return
        with tempfile.TemporaryDirectory(prefix="wb-predictions-") as folder:
            copy = Path(folder) / path.name
            with os.fdopen(os.dup(fd), "rb") as source, open(copy, "wb") as target:
                shutil.copyfileobj(source, target)
            yield str(copy)
    finally:
        os.close(fd)


_engine: tuple[int, duckdb.DuckDBPyConnection] | None = None
_engine_lock = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    """A cursor on one in-memory instance per process: a fresh `duckdb.connect` costs 10-40 ms,
    most of an evaluation's time; a cursor about nothing."""
    global _engine
    with _engine_lock:
        if _engine is None or _engine[0] != os.getpid():  # a forked child builds its own
            _engine = (os.getpid(), duckdb.connect(":memory:"))
        return _engine[1].cursor()


@contextmanager
def _reader(readable: str, path: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    con = _cursor()
    try:
        yield con, _table_function(Path(readable), path.name)
    finally:
        con.close()


def _table_function(path: Path, name: str | None = None) -> str:
    """DuckDB's reader for the file, chosen by the name it has in the project (a /proc/self/fd
    path has no extension)."""
    name = (name or path.name).lower()
    quoted = "'" + str(path).replace("'", "''") + "'"
    if name.endswith((".parquet", ".pq")):
        return f"read_parquet({quoted})"
    compression = ", compression = 'gzip'" if name.endswith(".gz") else ""
    # No BOOLEAN among the sniffed types: a yes/no column would come back True/False, and a
    # group or a label must keep the name the user wrote.
    return f"read_csv({quoted}, header = true, auto_type_candidates = {CSV_TYPES}{compression})"


def _kind(path: Path) -> str:
    return "Parquet" if path.name.lower().endswith((".parquet", ".pq")) else "CSV"


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _plain(values: np.ndarray) -> np.ndarray:
    """Masked (NULL) entries become None in an object array; complete columns stay as they are."""
    if isinstance(values, np.ma.MaskedArray):
        if not np.ma.is_masked(values):
            return values.data
        out = np.asarray(values.data, dtype=object)  # filled(None) would mean "the default fill"
        out[np.ma.getmaskarray(values)] = None
        return out
    return values


def _numbers(values: np.ndarray) -> np.ndarray:
    if isinstance(values, np.ma.MaskedArray):
        return np.ma.filled(values.astype(np.float64), np.nan)
    return np.asarray(values, dtype=np.float64)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__

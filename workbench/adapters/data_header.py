"""The column names of a data file, reading only its header (CSV) or its schema (Parquet).

Used when a manifest loads, to check `data.target` and `data.sensitive` against the data, so it
must be cheap: a CSV's first line (at most HEADER_CAP bytes), a Parquet file's footer through
DuckDB (imported only then). A FIFO or device under data/ is never opened (open_regular).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from workbench.adapters.regular_files import NotRegularFile, open_regular

HEADER_CAP = 1024 * 1024
"""A header line longer than this is not one: the file is then left to the profile to judge."""
PARQUET_SUFFIXES = (".parquet", ".pq")


def read_columns(path: Path) -> list[str] | None:
    """The file's column names, or None when they cannot be read (the lineage profile and the
    project's validate stage then say what is wrong with the file)."""
    try:
        if path.name.lower().endswith(PARQUET_SUFFIXES):
            return _parquet_columns(path)
        return _csv_columns(path)
    except (NotRegularFile, OSError, UnicodeDecodeError, csv.Error):
        return None


def _csv_columns(path: Path) -> list[str] | None:
    fd, _ = open_regular(path, follow=True)  # a listed external link may lead to the data
    with os.fdopen(fd, "rb") as file:
        head = file.read(HEADER_CAP)
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    if not line or (len(head) == HEADER_CAP and b"\n" not in head):
        return None
    text = line.decode("utf-8-sig")
    try:
        dialect = csv.Sniffer().sniff(text, delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    return [name.strip() for name in next(csv.reader(io.StringIO(text), delimiter=delimiter))]


def _parquet_columns(path: Path) -> list[str] | None:
    import duckdb

    fd, _ = open_regular(path, follow=True)
    try:
        readable = f"/proc/self/fd/{fd}" if os.path.exists(f"/proc/self/fd/{fd}") else str(path)
        con = duckdb.connect(":memory:")
        try:
            rows = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [readable]).fetchall()
        except duckdb.Error:
            return None
        finally:
            con.close()
    finally:
        os.close(fd)
    return [row[0] for row in rows]

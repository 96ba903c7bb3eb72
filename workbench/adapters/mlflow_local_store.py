"""The workspace's own MLflow store (`.workbench/mlflow.db`), following the workspace when it moves.

MLflow writes absolute locations into its database: each experiment's artifact location
(`file:///<workspace>/.workbench/mlflow-artifacts/<project>`), each run's artifact URI, model
versions' storage locations. After `cp -r` or `mv` of a workspace those still name the old
folder, and a copy's runs would put their artifacts into the original. Before a drain opens
the store, the locations under the folder the store was written in are rewritten to the
folder the workspace is in now. Standard library only: this runs before mlflow is imported.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

from workbench.core.errors import MirrorError

MARKER = "/.workbench/mlflow-artifacts"
"""Where the workspace's artifact locations point, below the workspace root."""


def relocate_local_store(db_path: Path, workspace_root: Path) -> str | None:
    """Rewrite the store's locations from the workspace root it was written under to
    `workspace_root`; returns the old root when something was rewritten, else None."""
    if not db_path.is_file():
        return None
    new_root = str(workspace_root.resolve())
    try:
        con = sqlite3.connect(db_path, timeout=30)
    except sqlite3.Error as exc:
        raise MirrorError(f"cannot open the MLflow store {db_path}: {exc}") from None
    try:
        old_root = _written_under(con)
        if old_root is None or old_root == new_root:
            return None
        pairs = [(Path(old_root).as_uri() + "/", Path(new_root).as_uri() + "/"), (old_root + "/", new_root + "/")]
        with con:
            for table, column in _text_columns(con):
                for old, new in pairs:
                    con.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                                f'WHERE instr("{column}", ?) > 0', (old, new, old))
        con.execute("VACUUM")  # the old locations must not linger in free pages of the copy
        return old_root
    except sqlite3.Error as exc:
        raise MirrorError(f"cannot move the MLflow store {db_path} to the workspace {new_root}: {exc}") from None
    finally:
        con.close()


def _written_under(con: sqlite3.Connection) -> str | None:
    """The workspace root the experiments' artifact locations point into."""
    try:
        rows = con.execute("SELECT artifact_location FROM experiments").fetchall()
    except sqlite3.OperationalError:
        return None  # no experiments table yet: MLflow has not set the store up
    for (location,) in rows:
        if not location:
            continue
        path = unquote(urlparse(location).path) if location.startswith("file:") else location
        if MARKER + "/" in path + "/":
            return path.split(MARKER, 1)[0] or "/"
    return None


def _text_columns(con: sqlite3.Connection) -> list[tuple[str, str]]:
    columns = []
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"):
        for _cid, name, kind, *_rest in con.execute(f'PRAGMA table_info("{table}")'):
            if any(word in (kind or "").upper() for word in ("CHAR", "TEXT", "CLOB")):
                columns.append((table, name))
    return columns

"""Paths kept in the workspace's state, relative to the workspace.

A workspace is renamed, moved, or copied with `cp -r` to another folder or machine. Whatever
the state folder records (runs' output folders, artifacts, project folders, the hash cache)
is therefore written relative to the workspace root and resolved against wherever the
workspace is now; in memory, paths stay absolute. A path outside the workspace (a batch file
given by its absolute path) is kept as it is: there is nothing to be relative to.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_NAME = ".workbench"


class WorkspacePaths:
    def __init__(self, root: Path | str | None):
        self.root = Path(root).resolve() if root is not None else None
        """None: not a workspace's store (a test's loose database file); paths kept as given."""

    @classmethod
    def for_state_file(cls, path: Path | str) -> WorkspacePaths:
        """For a file in a workspace's state folder (`<root>/.workbench/lineage.duckdb`)."""
        folder = Path(path).resolve().parent
        return cls(folder.parent if folder.name == STATE_DIR_NAME else None)

    def stored(self, path: str | None) -> str | None:
        """How `path` is written into the state: relative to the workspace when inside it."""
        if not path or self.root is None or not os.path.isabs(path):
            return path
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return path
        return relative.as_posix() or "."

    def resolved(self, path: str | None) -> str | None:
        """The absolute path of a stored one, in the workspace as it is now."""
        if not path or self.root is None or os.path.isabs(path):
            return path
        return str(self.root / path)

    def inside(self, path: str | Path) -> bool:
        if self.root is None:
            return False
        try:
            Path(path).relative_to(self.root)
        except ValueError:
            return False
        return True

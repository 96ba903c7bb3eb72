"""The text of a project folder's Python files, for `workbench init` to read (never run)."""

from __future__ import annotations

from pathlib import Path

from workbench.adapters.regular_files import NotRegularFile, read_regular_bytes

MAX_SOURCE_BYTES = 1024**2
"""A larger .py file is generated or vendored, not a stage someone wrote."""
MAX_SOURCES = 5000


def read_python_sources(folder: Path, files: list[str]) -> dict[str, str]:
    """Project-relative path -> text, for the regular `.py` files among `files` (relative POSIX
    paths). A FIFO or device named like a script would block or never end, so only regular
    files are opened, and without following a symlink."""
    sources: dict[str, str] = {}
    for rel in files:
        if not rel.endswith(".py") or len(sources) >= MAX_SOURCES:
            continue
        try:
            data = read_regular_bytes(folder / rel, MAX_SOURCE_BYTES)
        except (OSError, NotRegularFile):
            continue  # a symlink, FIFO, too large, gone, or unreadable: init only misses a guess
        sources[rel] = data.decode("utf-8", "replace")
    return sources

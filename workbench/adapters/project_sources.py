"""The text of a project folder's Python files, for `workbench init` to read (never run)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
            fd = os.open(folder / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # a symlink, gone, or unreadable: init only misses a guess
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SOURCE_BYTES:
                continue
            with os.fdopen(fd, "rb", closefd=False) as file:
                sources[rel] = file.read(MAX_SOURCE_BYTES).decode("utf-8", "replace")
        except OSError:
            continue
        finally:
            os.close(fd)
    return sources

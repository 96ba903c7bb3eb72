"""`data.target` and `data.sensitive` checked against the data file's header when a manifest
loads: a typo there would otherwise surface only as an evaluation that finds no label, or as
fairness silently measured over nothing. The error names the key, the column, the file and the
closest column the file has."""

from __future__ import annotations

import difflib
from pathlib import Path

from workbench.core.errors import ManifestError
from workbench.core.manifest import Manifest

MAX_FILES_CHECKED = 5
"""A glob matching many files (daily partitions) is checked on its first few: one header read
each, at every manifest load."""


def check_data_columns(manifest: Manifest, project_dir: Path, source: str) -> None:
    """ManifestError when a data file lacks data.target or a data.sensitive column. Files whose
    header cannot be read, and projects with no data file yet, are not judged here."""
    named = ([("data.target", manifest.data.target)] if manifest.data.target else []) + [
        ("data.sensitive", column) for column in manifest.data.sensitive]
    if not named:
        return
    from workbench.adapters.data_header import read_columns

    for path in _data_files(manifest, project_dir):
        columns = read_columns(path)
        if columns is None:
            continue
        for key, column in named:
            if column not in columns:
                raise ManifestError(source, key, _missing(column, columns, path.relative_to(project_dir).as_posix()))


def _missing(column: str, columns: list[str], shown: str) -> str:
    close = difflib.get_close_matches(column, columns, n=1, cutoff=0.6)
    if not close:  # case differences score low in difflib but are the commonest typo
        close = [c for c in columns if c.lower() == column.lower()]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
    return f"column {column!r} is not in {shown}{hint} (its columns: {listed})"


def _data_files(manifest: Manifest, project_dir: Path) -> list[Path]:
    files: list[Path] = []
    for pattern in manifest.data.paths:
        if not any(ch in pattern for ch in "*?["):
            candidates = [project_dir / pattern]
        else:
            candidates = sorted(project_dir.glob(pattern))
        files.extend(p for p in candidates if p.is_file() and p not in files)
        if len(files) >= MAX_FILES_CHECKED:
            break
    return files[:MAX_FILES_CHECKED]

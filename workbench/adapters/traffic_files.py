"""Reading a serving container's traffic folder on the host, safely.

The folder (`.workbench/serving/<project>/traffic/<alias>/`) is the one place a serving
container may write, and the project's predict function runs in that container: whatever is in
the folder may be hostile (runtime/wb_traffic.py's docstring has the format and the threat). So
the host never follows a name it finds there:

- `closed_segments(folder, kind)` lists only closed segments: names matching
  `<kind>-<13 digit unix_ms>-<pid>.jsonl` exactly (no `.part`, no `..`, no odd characters), that
  lstat says are regular files (not symlinks, FIFOs, devices or folders), of at most
  MAX_SEGMENT_BYTES; oldest first (by unix_ms, then pid).
- `open_segment(path)` opens one with O_NOFOLLOW | O_NONBLOCK (a symlink swapped in after the
  listing fails, a FIFO does not block) and checks with fstat that what it opened is a regular
  file under the cap; else a WorkbenchError naming the file.

Lines inside are still untrusted: the reader must skip lines that are not JSON objects of the
documented fields.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from workbench.core.errors import WorkbenchError

KINDS = ("requests", "feedback")
MAX_SEGMENT_BYTES = 512 * 1024 * 1024
"""A closed segment larger than this was not written by wb_traffic (5,000 requests of 8 MiB
bodies could be larger, but such segments are not read: a bound on what one read costs)."""


def traffic_folder(state_dir: Path, project: str, alias: str) -> Path:
    """Where the `alias` server of `project` logs its traffic (state_dir: the workspace's .workbench)."""
    return Path(state_dir) / "serving" / project / "traffic" / alias


def segment_name_parts(name: str) -> tuple[str, int, int] | None:
    """(kind, unix_ms, pid) of a closed segment's file name, None for any other name."""
    from workbench.runtime.wb_traffic import SEGMENT_NAME

    match = SEGMENT_NAME.fullmatch(name)
    return (match.group(1), int(match.group(2)), int(match.group(3))) if match else None


def closed_segments(folder: Path, kind: str, max_bytes: int = MAX_SEGMENT_BYTES) -> list[Path]:
    """The closed `kind` ("requests" or "feedback") segments in `folder` that are safe to open,
    oldest first; anything else in the folder is ignored. A missing folder has none."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            raise WorkbenchError(f"the traffic folder {folder} is not a folder (a symlink or a file): not read")
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise WorkbenchError(f"cannot list the traffic folder {folder}: {exc.strerror or exc}") from None
    found = []
    for entry in entries:
        parts = segment_name_parts(entry.name)
        if parts is None or parts[0] != kind:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # gone since the listing
        if stat.S_ISREG(info.st_mode) and info.st_size <= max_bytes:
            found.append((parts[1], parts[2], Path(folder) / entry.name))
    return [path for _, _, path in sorted(found)]


def open_segment(path: Path, max_bytes: int = MAX_SEGMENT_BYTES) -> BinaryIO:
    """`path` opened for reading (binary), never through a symlink, only if it is a regular file
    of at most `max_bytes`; the caller closes it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise WorkbenchError(f"cannot open the traffic segment {path}: {exc.strerror or exc} "
                             "(a symlink is never followed)") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise WorkbenchError(f"the traffic segment {path} is not a regular file: not read")
        if info.st_size > max_bytes:
            raise WorkbenchError(f"the traffic segment {path} is {info.st_size} bytes, more than the "
                                 f"{max_bytes} a segment may have: not read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise

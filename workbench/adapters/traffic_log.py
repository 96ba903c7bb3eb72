"""The host's reader of a project's traffic log: the requests its model servers answered and
the feedback (true labels) sent for them, as the servers write them under
`.workbench/serving/<project>/traffic/<alias>/`:

    requests-<unix_ms>-<pid>.jsonl    one JSON object per request: request_id, key, alias, role,
                                      version, status, seconds, at, inputs [records], outputs, error
    feedback-<unix_ms>-<pid>.jsonl    one per feedback: request_id, labels [one per input row], at
    .requests-....jsonl.part          a segment still being written: never read

The folder is written by the server container, that is by the project's own code, so nothing
in it is trusted: only names matching those patterns are read, each opened with O_NOFOLLOW and
O_NONBLOCK and checked to be a regular file on the open descriptor (a symlink to a host file, a
FIFO that would block the reader, a device are skipped), and never more than SEGMENT_MAX_BYTES
of one. A line that is not a JSON object of the expected shape is skipped and counted.

Listing and opening are adapters/traffic_files.py's (closed_segments, open_segment), the one
place those rules live; this module reads what they let through.

Closed segments never change, so a reader's position is (segment name, lines read): see
services/serving_monitor.py, which batches the rows and keeps the log under `[serving]
log_max_mb` with `enforce_bound`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from workbench.adapters import traffic_files
from workbench.core.errors import WorkbenchError

REQUESTS, FEEDBACK = "requests", "feedback"
ALIASES = ("production", "staging")
SEGMENT_MAX_BYTES = traffic_files.MAX_SEGMENT_BYTES
"""A closed segment larger than this is not read: a bound on what one read costs. Segments are
streamed line by line, never held whole."""


@dataclass(frozen=True)
class Segment:
    path: Path
    kind: str
    """requests or feedback."""
    opened_ms: int
    pid: int
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Request:
    """One logged request (a line of a requests segment)."""

    request_id: str
    alias: str
    role: str
    version: object
    status: int
    seconds: float
    at: float
    inputs: list
    outputs: list | None
    error: str = ""
    contract_rows: tuple[int, ...] = ()
    """The rows of `inputs` that broke the answering version's data contract (the line's
    `contract_rows`; runtime/wb_traffic.py)."""


def traffic_dir(state_dir: Path, project: str, alias: str | None = None) -> Path:
    """The project's traffic folder, or one alias's (traffic_files.traffic_folder)."""
    return traffic_files.traffic_folder(state_dir, project, alias) if alias else \
        traffic_files.traffic_folder(state_dir, project, "x").parent


def closed_segments(folder: Path, kind: str) -> list[Segment]:
    """The closed segments of one kind in an alias's folder, oldest first (by the time they were
    opened, then pid): traffic_files.closed_segments' rules, with no size cap here, so that the
    bound (past_bound) counts and deletes an oversized file too; reading one is refused by
    open_segment. A folder that cannot be listed, or is not a real folder, has none."""
    try:
        paths = traffic_files.closed_segments(folder, kind, max_bytes=sys.maxsize)
    except WorkbenchError:
        return []
    found = []
    for path in paths:
        _kind, opened_ms, pid = traffic_files.segment_name_parts(path.name)
        try:
            info = os.lstat(path)
        except OSError:
            continue  # gone since the listing
        found.append(Segment(path, kind, opened_ms, pid, info.st_size, info.st_mtime))
    return found


def open_segment(path: Path, max_bytes: int = SEGMENT_MAX_BYTES) -> BinaryIO | None:
    """traffic_files.open_segment (never through a symlink, a regular file under the cap, checked
    on the open descriptor), or None where it refuses."""
    try:
        return traffic_files.open_segment(path, max_bytes)
    except WorkbenchError:
        return None


def segment_lines(segment: Segment, start: int = 0,
                  max_bytes: int = SEGMENT_MAX_BYTES) -> Iterator[tuple[int, dict | None]]:
    """(line number, the line as a dict or None when it is not a JSON object) from line `start`
    on, streamed. Numbers count every line, so a reader's cursor stays right whatever a line
    holds; lines before `start` are not parsed. Reading stops at `max_bytes`, even if something
    still holding the file open made it grow after it was opened."""
    handle = open_segment(segment.path, max_bytes)
    if handle is None:
        return
    read = 0
    with handle:
        for number, line in enumerate(handle):
            read += len(line)
            if read > max_bytes:
                return
            if number < start:
                continue
            try:
                value = json.loads(line)
            except (ValueError, UnicodeDecodeError, RecursionError):
                value = None
            yield number, value if isinstance(value, dict) else None


def as_request(line: dict | None) -> Request | None:
    """A requests line as a Request, or None when it lacks a field or has one of the wrong type."""
    if line is None:
        return None
    try:
        request_id, status = line["request_id"], line["status"]
        seconds, at, inputs, outputs = line["seconds"], line["at"], line["inputs"], line.get("outputs")
    except KeyError:
        return None
    if not isinstance(request_id, str) or not _integer(status) or not _number(seconds) or not _number(at):
        return None
    if not isinstance(inputs, list) or not all(isinstance(r, dict) for r in inputs):
        return None
    if outputs is not None and (not isinstance(outputs, list) or len(outputs) != len(inputs)):
        outputs = None
    broken = line.get("contract_rows")
    # untrusted like the rest: only row numbers of this request's inputs count
    contract_rows = tuple(sorted({r for r in broken if _integer(r) and 0 <= r < len(inputs)})) \
        if isinstance(broken, list) else ()
    return Request(request_id, str(line.get("alias", "")), str(line.get("role", "champion")), line.get("version"),
                   int(status), float(seconds), float(at), inputs, outputs, str(line.get("error") or ""),
                   contract_rows)


def read_requests(segment: Segment, start: int = 0) -> Iterator[tuple[int, Request | None]]:
    """(line number, request or None) from line `start` on."""
    for number, line in segment_lines(segment, start):
        yield number, as_request(line)


def read_feedback(folder: Path, cache: dict[str, dict[str, list]] | None = None) -> dict[str, list]:
    """request id -> its labels, from every closed feedback segment of an alias's folder (a later
    feedback for the same request wins). `cache` (segment name -> its labels) spares re-reading
    segments read before: a closed segment never changes; names no longer present are dropped."""
    labels: dict[str, list] = {}
    segments = closed_segments(folder, FEEDBACK)
    if cache is not None:
        for name in set(cache) - {s.name for s in segments}:
            del cache[name]
    for segment in segments:
        found = cache.get(segment.name) if cache is not None else None
        if found is None:
            found = feedback_labels(segment)
            if cache is not None:
                cache[segment.name] = found
        labels.update(found)
    return labels


def feedback_labels(segment: Segment) -> dict[str, list]:
    labels: dict[str, list] = {}
    for _number, line in segment_lines(segment):
        if line is None:
            continue
        request_id, values = line.get("request_id"), line.get("labels")
        if isinstance(request_id, str) and isinstance(values, list):
            labels[request_id] = values
    return labels


def log_bytes(project_dir: Path) -> int:
    return sum(s.size for s in _all_segments(project_dir))


def past_bound(project_dir: Path, max_bytes: int) -> list[Segment]:
    """The oldest closed segments (requests and feedback, every alias) whose deletion brings the
    project's traffic log to at most `max_bytes`."""
    segments = _all_segments(project_dir)
    total = sum(s.size for s in segments)
    out = []
    for segment in sorted(segments, key=lambda s: (s.opened_ms, s.pid, s.name)):
        if total <= max_bytes:
            break
        out.append(segment)
        total -= segment.size
    return out


def enforce_bound(project_dir: Path, max_bytes: int) -> list[Path]:
    """Delete the segments past_bound names; the deleted paths. Unlinking a name removes only that
    name, so a planted link costs nothing here."""
    deleted = []
    for segment in past_bound(project_dir, max_bytes):
        try:
            segment.path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            continue
        deleted.append(segment.path)
    return deleted


def _all_segments(project_dir: Path) -> list[Segment]:
    return [s for alias in ALIASES for kind in (REQUESTS, FEEDBACK) for s in closed_segments(project_dir / alias, kind)]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

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

The same rules as adapters/traffic_files.py of the traffic-log branch (closed_segments,
open_segment); the two are meant to become one module.

Closed segments never change, so a reader's position is (segment name, lines read): see
services/serving_monitor.py, which batches the rows and keeps the log under `[serving]
log_max_mb` with `enforce_bound`.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

REQUESTS, FEEDBACK = "requests", "feedback"
ALIASES = ("production", "staging")
SEGMENT_NAME = re.compile(r"(requests|feedback)-([0-9]{13})-([0-9]{1,10})\.jsonl")
SEGMENT_MAX_BYTES = 512 * 1024 * 1024
"""A closed segment larger than this is skipped, not read (the traffic branch's
adapters/traffic_files.py MAX_SEGMENT_BYTES): a bound on what one read costs. Segments are
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


def traffic_dir(state_dir: Path, project: str, alias: str | None = None) -> Path:
    folder = state_dir / "serving" / project / "traffic"
    return folder / alias if alias else folder


def closed_segments(folder: Path, kind: str) -> list[Segment]:
    """The closed segments of one kind in an alias's folder, oldest first (by the time they were
    opened, then pid). Anything that is not a regular file with a segment's name is left out."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return []  # an alias folder swapped for a symlink (to a host folder) is not listed
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    found = []
    for name in names:
        match = SEGMENT_NAME.fullmatch(name)
        if match is None or match.group(1) != kind:
            continue
        try:
            info = os.lstat(folder / name)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            found.append(Segment(folder / name, kind, int(match.group(2)), int(match.group(3)), info.st_size,
                                 info.st_mtime))
    return sorted(found, key=lambda s: (s.opened_ms, s.pid, s.name))


def open_segment(path: Path, max_bytes: int = SEGMENT_MAX_BYTES) -> BinaryIO | None:
    """The segment opened for reading (binary; the caller closes it), or None when it is not a
    regular file (anymore), is over `max_bytes`, or cannot be opened. The checks are made on the
    open descriptor: a name swapped for a symlink or a FIFO between listing and opening is
    refused, not followed or waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            os.close(fd)
            return None
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except OSError:
        os.close(fd)
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
    return Request(request_id, str(line.get("alias", "")), str(line.get("role", "champion")), line.get("version"),
                   int(status), float(seconds), float(at), inputs, outputs, str(line.get("error") or ""))


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

"""The traffic log of a serving container: every prediction request and every feedback label,
appended as JSON lines to segment files in one folder (`wb_serve.py --traffic DIR`).

Shipped beside wb_serve.py (mounted read-only at /wb/lib, imported as a sibling); standard
library only, and nothing of the workbench.

On-disk format (a contract: the host-side reader and the drift/decay monitor read exactly this)

    DIR/.requests-<unix_ms>-<pid>.jsonl.part   the segment being written (never read by the host)
    DIR/requests-<unix_ms>-<pid>.jsonl         a closed segment: fsynced, then renamed atomically
    DIR/feedback-<unix_ms>-<pid>.jsonl         the same for feedback

`unix_ms` is when the segment was opened (strictly increasing within one process), `pid` the
server's process id. A segment is closed after `segment_rows` lines or `segment_s` seconds after
its first line, whichever comes first, and when the server shuts down (SIGTERM). A `.part` left
by a server that was killed is closed by the next server on the same folder (cut after its last
complete line). One line of a requests segment is one request, whatever its status or role:

    {"request_id": str, "key": str, "alias": str, "role": "champion"|"challenger"|"shadow",
     "version": int|str|null, "status": int, "seconds": float, "at": float (unix seconds, arrival),
     "inputs": [record, ...], "outputs": [prediction, ...] | null, "error": str | null,
     "contract_rows": [row, ...], "contract": [{"row", "column", "rule", "value", "severity"}, ...]}

(the last two only when the inputs broke the answering version's data contract: the rows that
broke it, all of them, and the first 100 breaches)

(`inputs` is empty when the body could not be read as records; non-finite numbers are written
as null, so every line is strict JSON.) One line of a feedback segment is one accepted label set:

    {"request_id": str, "labels": [label, ...], "at": float (unix seconds, received)}

Writing never slows or fails a request: the request hands its record to a bounded in-memory
queue that one writer thread drains (serialising, writing, rotating). A full queue drops the
record and counts it (`dropped`: /metrics `wb_traffic_dropped_total`, /health). A disk error
(full disk, read-only folder) stops the log for good with a message (/health `traffic_problem`);
predictions go on.

What the host reader must assume (threat model). The project's predict function runs in the same
container and can write anything into this folder: symlinks (to /etc/passwd, to the workspace),
FIFOs (an open would block forever), huge files, names with `../` or newlines, forged segments.
So the host (adapters/traffic_files.py) reads only names matching SEGMENT_NAME exactly, checks
with lstat that each is a regular file (not a symlink, FIFO, device or folder) under a size cap,
opens it with O_NOFOLLOW | O_NONBLOCK and checks again with fstat that the opened file is that
regular file, and treats every line as untrusted input (bad JSON, wrong types: skipped). Forged
lines cannot be told apart from real ones: the log is exactly as trustworthy as the predict
function, which is the project's own code.
"""

import json
import math
import os
import queue
import re
import stat
import threading
import time
from typing import Any

REQUESTS, FEEDBACK = "requests", "feedback"
SEGMENT_NAME = re.compile(r"(requests|feedback)-([0-9]{13})-([0-9]{1,10})\.jsonl")
PART_NAME = re.compile(r"\.(requests|feedback)-([0-9]{13})-([0-9]{1,10})\.jsonl\.part")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DEFAULT_SEGMENT_ROWS = 5_000
DEFAULT_SEGMENT_S = 60.0
DEFAULT_QUEUE_ITEMS = 10_000
DEFAULT_QUEUE_ROWS = 200_000
"""Input rows waiting in the queue at most (a request may carry 100,000): bounds its memory."""


class FeedbackProblem(Exception):
    """Feedback the server refuses, with the HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- lines -------------------------------------------------------------------------------------

def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _dumps(data: dict) -> str:
    try:
        return json.dumps(data, allow_nan=False, separators=(",", ":"), default=str)
    except ValueError:  # NaN or Infinity somewhere (JSON bodies may carry them): null, as predictions do
        return json.dumps(_finite(data), allow_nan=False, separators=(",", ":"), default=str)


def request_line(served: Any) -> str:
    """One requests-segment line of a wb_serve.Served record."""
    line = {"request_id": served.request_id, "key": served.key, "alias": served.alias,
            "role": served.role, "version": served.version, "status": served.status,
            "seconds": round(served.seconds, 6), "at": served.at, "inputs": list(served.records),
            "outputs": served.predictions, "error": served.error or None}
    breaches = getattr(served, "breaches", None)
    if breaches:
        # the rows that broke the data contract, all of them (the serving monitor leaves them out
        # of traffic batches), and the first breaches themselves
        line["contract_rows"] = sorted({b["row"] for b in breaches})
        line["contract"] = breaches[:100]
    return _dumps(line)


def feedback_line(request_id: str, labels: list, at: float) -> str:
    return _dumps({"request_id": request_id, "labels": labels, "at": at})


def parse_feedback(body: bytes) -> list[tuple[str, list]]:
    """A POST /feedback body as (request id, labels) pairs; raises FeedbackProblem naming the
    first problem. Shapes: {"request_id", "label"}, {"request_id", "labels": [...]}, a list of
    these, or {"feedback": [...]}."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeedbackProblem(400, f"the feedback body is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "feedback" in data:
        if set(data) != {"feedback"} or not isinstance(data["feedback"], list):
            raise FeedbackProblem(400, '{"feedback": ...} must hold only a list of '
                                       '{"request_id": ..., "label" or "labels": ...} objects')
        data = data["feedback"]
    items = data if isinstance(data, list) else [data]
    if not items:
        raise FeedbackProblem(422, "no feedback in the body")
    parsed = []
    for index, item in enumerate(items):
        where = f"feedback item {index}" if isinstance(data, list) else "the feedback"
        if not isinstance(item, dict):
            raise FeedbackProblem(400, f'{where} is not an object {{"request_id": ..., "label": ...}}')
        if "request_id" not in item:
            raise FeedbackProblem(422, f"{where} has no request_id (the X-Request-Id the prediction answered with)")
        request_id = item["request_id"]
        if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
            raise FeedbackProblem(422, f"{where}: request_id must be 1-128 letters, digits or . _ : -, "
                                       f"got {str(request_id)[:60]!r}")
        unknown = set(item) - {"request_id", "label", "labels"}
        if unknown:
            raise FeedbackProblem(422, f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                                       '(expected "request_id" and "label" or "labels")')
        if ("label" in item) == ("labels" in item):
            both = "both" if "label" in item else "neither"
            raise FeedbackProblem(422, f'{where}: give either "label" (one row) or "labels" '
                                       f"(one per row of the request), not {both}")
        labels = [item["label"]] if "label" in item else item["labels"]
        if not isinstance(labels, list):
            raise FeedbackProblem(422, f'{where}: "labels" must be a list (one label per row of the request), '
                                       f"got {type(labels).__name__}")
        if not labels:
            raise FeedbackProblem(422, f'{where}: "labels" is empty')
        for label in labels:
            if isinstance(label, (dict, list)):
                raise FeedbackProblem(422, f"{where}: a label must be a number, string, true/false or null, "
                                           f"got {json.dumps(label)[:60]}")
        parsed.append((request_id, labels))
    return parsed


# -- segments ----------------------------------------------------------------------------------

class Segments:
    """The open segment of one kind in `folder`: lines appended, closed (fsync, rename) by rows or age."""

    def __init__(self, folder: str, kind: str, rows: int, seconds: float):
        self.folder, self.kind, self.max_rows, self.max_s = folder, kind, rows, seconds
        self._fd: int | None = None
        self._part = ""
        self._name = ""
        self._rows = 0
        self._opened = 0.0
        self._last_ms = 0
        self.closed = 0

    def write(self, line: str, now: float) -> None:
        if self._fd is None:
            self._open(now)
        data = (line + "\n").encode("utf-8")
        while data:
            data = data[os.write(self._fd, data):]
        self._rows += 1
        if self._rows >= self.max_rows:
            self.close()

    def due(self, now: float) -> float | None:
        """When the open segment must close by age (None: none is open)."""
        return None if self._fd is None else self._opened + self.max_s

    def close(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(self._part, os.path.join(self.folder, self._name))
        _sync_folder(self.folder)
        self.closed += 1

    def _open(self, now: float) -> None:
        # names never repeat within a process, even for segments opened in the same millisecond
        unix_ms = max(int(now * 1000), self._last_ms + 1)
        self._last_ms = unix_ms
        self._name = f"{self.kind}-{unix_ms}-{os.getpid()}.jsonl"
        self._part = os.path.join(self.folder, f".{self._name}.part")
        # O_EXCL | O_NOFOLLOW: a name planted in the folder is never written through
        self._fd = os.open(self._part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._rows = 0
        self._opened = now


def _sync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a folder; the rename is still atomic
    finally:
        os.close(fd)


def recover_parts(folder: str) -> int:
    """Close the `.part` segments a killed server left: cut after the last complete line and
    rename; an empty one is removed. Only regular files with our names are touched."""
    recovered = 0
    for name in os.listdir(folder):
        match = PART_NAME.fullmatch(name)
        path = os.path.join(folder, name)
        if not match:
            continue
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not _is_regular(info.st_mode):
                continue
            keep = _after_last_newline(fd, info.st_size)
            os.ftruncate(fd, keep)
            os.fsync(fd)
        finally:
            os.close(fd)
        if keep == 0:
            os.unlink(path)
        else:
            os.rename(path, os.path.join(folder, name[1:-len(".part")]))
            recovered += 1
    return recovered


def _after_last_newline(fd: int, size: int, chunk: int = 1_048_576) -> int:
    """The offset just after the file's last newline (0: none), read backwards a chunk at a time
    (one request's line can be many MiB)."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, end - start)
        if b"\n" in data:
            return start + data.rfind(b"\n") + 1
        end = start
    return 0


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


# -- the journal -------------------------------------------------------------------------------

class Journal:
    """A listener of wb_serve's Served records (and the sink of /feedback) writing the traffic
    log of one folder. Calls from requests only enqueue; one thread writes."""

    Problem = FeedbackProblem
    parse_feedback = staticmethod(parse_feedback)

    def __init__(self, folder: str, segment_rows: int = DEFAULT_SEGMENT_ROWS,
                 segment_s: float = DEFAULT_SEGMENT_S, queue_items: int = DEFAULT_QUEUE_ITEMS,
                 queue_rows: int = DEFAULT_QUEUE_ROWS, clock=time.time):
        self.folder = folder
        self.clock = clock
        self.queue_rows = queue_rows
        self._queue: queue.Queue = queue.Queue(maxsize=queue_items)
        self._lock = threading.Lock()
        self._pending_rows = 0
        self.dropped = 0
        self.written = {REQUESTS: 0, FEEDBACK: 0}
        self.problem = ""
        self._segments = {kind: Segments(folder, kind, segment_rows, segment_s) for kind in (REQUESTS, FEEDBACK)}
        self._closing = threading.Event()
        try:
            os.makedirs(folder, exist_ok=True)
            recover_parts(folder)
        except OSError as exc:
            self._stop(f"cannot use the traffic folder {folder}: {exc.strerror or exc}")
        self._thread = threading.Thread(target=self._run, daemon=True, name="wb-traffic")
        self._thread.start()

    # called on the request path: never blocks, never raises
    def __call__(self, served: Any) -> None:
        self._offer(REQUESTS, served, len(served.records))

    def feedback(self, items: list[tuple[str, list]]) -> str:
        """Queue accepted feedback; "" or why it cannot be kept (log stopped, queue full)."""
        if self.problem:
            return self.problem
        at = self.clock()
        rows = sum(len(labels) for _, labels in items)
        if not self._offer(FEEDBACK, (items, at), rows):
            return self.problem or "the traffic log is behind (its queue is full): send the feedback again shortly"
        return ""

    def _offer(self, kind: str, item: Any, rows: int) -> bool:
        with self._lock:
            if self.problem or self._closing.is_set() or self._pending_rows + rows > self.queue_rows:
                self.dropped += kind == REQUESTS
                return False
            try:
                self._queue.put_nowait((kind, item, rows))
            except queue.Full:
                self.dropped += kind == REQUESTS
                return False
            self._pending_rows += rows
        return True

    # the writer thread
    def _run(self) -> None:
        while True:
            now = self.clock()
            dues = [d for d in (s.due(now) for s in self._segments.values()) if d is not None]
            timeout = max(0.0, min(dues) - now) if dues else 0.5
            try:
                kind, item, rows = self._queue.get(timeout=min(timeout, 0.5))
            except queue.Empty:
                item = None
            if self.problem:
                return
            try:
                if item is not None:
                    with self._lock:
                        self._pending_rows -= rows
                    try:
                        self._write(kind, item)
                    finally:
                        self._queue.task_done()
                now = self.clock()
                for segments in self._segments.values():
                    due = segments.due(now)
                    if due is not None and now >= due:
                        segments.close()
                if self._closing.is_set() and self._queue.empty():
                    for segments in self._segments.values():
                        segments.close()
                    return
            except OSError as exc:
                self._stop(f"the traffic log stopped: cannot write in {self.folder}: {exc.strerror or exc}")
                return

    def _write(self, kind: str, item: Any) -> None:
        now = self.clock()
        if kind == REQUESTS:
            self._segments[REQUESTS].write(request_line(item), now)
            self.written[REQUESTS] += 1
        else:
            items, at = item
            for request_id, labels in items:
                self._segments[FEEDBACK].write(feedback_line(request_id, labels, at), now)
                self.written[FEEDBACK] += 1

    def _stop(self, problem: str) -> None:
        with self._lock:
            self.problem = problem
            self.dropped += self._queue.qsize()
            self._pending_rows = 0
        print(f"wb_serve: {problem}", flush=True)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and close the open segments (at shutdown)."""
        self._closing.set()
        self._thread.join(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.problem or (self._queue.unfinished_tasks == 0):
                return True
            time.sleep(0.01)
        return False

    # what /health and /metrics show
    def health(self) -> dict:
        body = {"traffic": {"folder": self.folder, "requests_logged": self.written[REQUESTS],
                            "feedback_logged": self.written[FEEDBACK], "dropped": self.dropped,
                            "segments_closed": sum(s.closed for s in self._segments.values())}}
        if self.problem:
            body["traffic_problem"] = self.problem
        return body

    def prometheus(self, alias: str) -> list[str]:
        return ["# HELP wb_traffic_dropped_total Requests the traffic log could not keep (queue full or log stopped).",
                "# TYPE wb_traffic_dropped_total counter",
                f'wb_traffic_dropped_total{{alias="{alias}"}} {self.dropped}',
                "# HELP wb_traffic_logged_total Lines written to the traffic log, by kind.",
                "# TYPE wb_traffic_logged_total counter",
                f'wb_traffic_logged_total{{alias="{alias}",kind="requests"}} {self.written[REQUESTS]}',
                f'wb_traffic_logged_total{{alias="{alias}",kind="feedback"}} {self.written[FEEDBACK]}',
                "# HELP wb_traffic_up 1 while the traffic log writes, 0 once a disk error stopped it.",
                "# TYPE wb_traffic_up gauge",
                f'wb_traffic_up{{alias="{alias}"}} {0 if self.problem else 1}']

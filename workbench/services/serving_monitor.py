"""From served traffic to retraining: production's logged requests become drift batches, checked
like any batch, and a retrain the policy decides runs in the background.

    monitor = ServingMonitor(session, "telco-churn", on_message=print)
    while serving:
        monitor.tick(time.time())          # about once a second: reads new closed segments
    monitor.close()

Each tick reads the closed request segments of `.workbench/serving/<project>/traffic/production/`
it has not read (adapters/traffic_log.py: only regular files with a segment's name), keeps
the champion's answered requests (status 200) as pending rows, and keeps the log under
`[serving] log_max_mb`. Two kinds of batch come out of it, each cut at `[serving] batch_rows`
rows, or when `batch_minutes` passed since the last of its kind and there are some:

- a traffic batch: the requests' inputs, as they were served (labels come later, if ever), for
  drift: `production-<first ms>-<last ms>.<csv|parquet>`;
- a labelled batch: the requests that feedback (`POST /feedback`) labelled since the last one,
  inputs plus the `[data] target` column, so the production model's decay is measured and a
  retrain has rows to learn from: `production-labelled-<first ms>-<last ms>.<csv|parquet>`.
  Labels come when they come (a day later is usual), so a feedback line is taken once its
  request's segment must have closed (`segment_seconds` plus a margin after it arrived), and
  labels for a request the log does not hold (a challenger's, a typo) are counted and said.

Both are written in the format of the training data the project's `[drift] score` command
reads, to `.workbench/serving/<project>/batches/`, and checked in a background thread with
DriftService.check_batch: recorded, listed by `workbench drift` and the TUI, weighed and scored
like a batch from the incoming folder. A retrain the policy decides runs in another background
thread, one at a time (a batch checked while one runs records its retrain as not done); the
serving loop that calls tick never waits for either.

The cursor (`.workbench/serving/<project>/monitor.json`: how many lines of each segment are
in a traffic batch, up to when feedback is in a labelled batch, the batch counts, when the last
of each was cut) is written when a batch is cut, so a restarted monitor neither batches a row
twice nor skips one; a batch cut twice (a crash between the file and the cursor) has the same
content and is checked once, as any batch.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from workbench.adapters.traffic_log import (FEEDBACK, REQUESTS, Request, closed_segments, enforce_bound,
                                            read_requests, segment_lines, traffic_dir)
from workbench.core.errors import WorkbenchError
from workbench.core.events import RunEvent, RunStarted
from workbench.core.ports import CancelToken
from workbench.services.session import WorkbenchSession

log = logging.getLogger(__name__)
ALIAS = "production"
LABEL_GRACE_S = 5.0
"""Beyond segment_seconds: how long after a feedback line arrived its request's segment is
surely closed (the server closes segments on a timer of that period)."""
BOUND_EVERY_S = 10.0
"""How often a tick deletes segments past `[serving] log_max_mb` (a listing of every folder)."""
KEEP_BATCHES = 100
"""Traffic batch files kept (the newest): a checked batch's record, and the retrain's training
data in the object store, do not need the file; `workbench drift PROJECT BATCH` shows a kept one's
columns again."""


@dataclass
class Cursor:
    positions: dict[str, int] = field(default_factory=dict)
    """Segment name -> lines of it already in a batch (every line, served or not)."""
    batches: int = 0
    last_batch_at: float = 0.0
    """Unix time of the last batch cut (or of the first tick): batch_minutes count from it."""
    labelled_until: float = 0.0
    """Feedback that arrived up to this unix time is in a labelled batch (or matched no request)."""
    labelled_batches: int = 0
    last_labelled_at: float = 0.0

    @staticmethod
    def load(path: Path, now: float) -> "Cursor":
        try:
            data = json.loads(path.read_text())
            positions = {str(k): int(v) for k, v in dict(data["positions"]).items()}
            return Cursor(positions, int(data["batches"]), float(data["last_batch_at"]),
                          float(data.get("labelled_until", 0.0)), int(data.get("labelled_batches", 0)),
                          float(data.get("last_labelled_at", data["last_batch_at"])))
        except FileNotFoundError:
            return Cursor(last_batch_at=now, last_labelled_at=now)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WorkbenchError(f"cannot read the traffic monitor's cursor {path}: {exc}; delete it to batch "
                                 "the traffic still logged from the start") from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"positions": self.positions, "batches": self.batches,
                                   "last_batch_at": self.last_batch_at, "labelled_until": self.labelled_until,
                                   "labelled_batches": self.labelled_batches,
                                   "last_labelled_at": self.last_labelled_at}, indent=1))
        os.replace(tmp, path)


@dataclass(frozen=True)
class Pending:
    segment: str
    line: int
    request: Request
    """The request, without its rows that broke the data contract."""
    left_out: int = 0
    """Its rows that broke the data contract of the version that answered them: not traffic to
    judge drift by (they are counted in the batch's message instead)."""


@dataclass(frozen=True)
class TrafficBatch:
    number: int
    path: Path
    rows: int
    requests: int
    versions: tuple
    labelled: bool
    unmatched: int = 0
    """Labels skipped: the log holds no answer of the champion's with their request id (a
    challenger answered it, the bound deleted it, or the id is wrong)."""
    left_out: int = 0
    """Served rows kept out of this traffic batch: they broke the data contract."""

    @property
    def name(self) -> str:
        return f"{'labelled' if self.labelled else 'traffic'} batch {self.number}"


class ServingMonitor:
    def __init__(self, session: WorkbenchSession, project: str, on_message: Callable[[str], None] = lambda _m: None,
                 background_session: Callable[[], WorkbenchSession] | None = None):
        ref = session.project(project)
        if ref.manifest is None:
            raise WorkbenchError(str(ref.error))
        self.session = session
        self.project = ref.name
        self.manifest = ref.manifest
        self.on_message = on_message
        state = session.workspace.state_dir
        self.root = traffic_dir(state, self.project)
        self.folder = self.root / ALIAS
        self.cursor_path = state / "serving" / self.project / "monitor.json"
        self.batch_dir = state / "serving" / self.project / "batches"
        self._background_session = background_session or (
            lambda: WorkbenchSession(session.workspace.root, runner=session.runner_choice, cold=session.cold,
                                     scheduler=session.scheduler_flag))
        self.cursor: Cursor | None = None
        self._read: dict[str, int] = {}
        """Segment name -> lines read into `_pending` (or into a batch) so far."""
        self._lines: dict[str, int] = {}
        """Segment name -> its number of lines."""
        self._pending: list[Pending] = []
        self._feedback: dict[str, list[tuple[str, list, float]]] = {}
        """Feedback segment name -> its (request id, labels, arrival time) lines (closed segments
        never change)."""
        self._index: dict[str, tuple[str, int]] = {}
        """Request id -> (segment, line) of every answered champion request in the log, so a label
        arriving later finds its request's inputs."""
        self._bounded_at = 0.0
        self._checking: threading.Thread | None = None
        self._retraining: threading.Thread | None = None
        self._cancel = CancelToken()
        self.outcomes: list = []
        """(TrafficBatch, BatchOutcome) of the checks this monitor made, in order."""
        self.retrains: list = []
        """RunRecords of the retrains this monitor started."""
        self.problems: list[str] = []

    # -- the tick --------------------------------------------------------------------------------

    def tick(self, now: float) -> TrafficBatch | None:
        """Read new traffic, keep the log bounded, and cut a batch when one is due (its check
        starts in the background); the batch cut, if any. A problem (an unreadable cursor, a
        batch that cannot be written) is said once through on_message, and never ends serving."""
        try:
            return self._tick(now)
        except WorkbenchError as exc:
            if str(exc) not in self.problems:
                self.problems.append(str(exc))
                self._say(f"traffic monitor: {exc}")
            return None

    def _tick(self, now: float) -> TrafficBatch | None:
        if self.cursor is None:
            self.cursor = Cursor.load(self.cursor_path, now)
            if not self.cursor_path.exists():  # batch_minutes count from the first tick, across restarts
                self.cursor.save(self.cursor_path)
        spec = self.manifest.serving
        if now - self._bounded_at >= BOUND_EVERY_S:
            self._bounded_at = now
            for path in enforce_bound(self.root, spec.log_max_mb * 1024 * 1024):
                log.info("traffic log over %s MiB: deleted %s", spec.log_max_mb, path)
        self._read_new()
        if self.busy_checking:
            return None
        batch = self._traffic_batch(now) or self._labelled_batch(now)
        if batch is None:
            return None
        self._checking = threading.Thread(target=self._check, args=(batch,), daemon=True,
                                          name=f"{batch.name.replace(' ', '-')}")
        self._checking.start()
        return batch

    def _traffic_batch(self, now: float) -> TrafficBatch | None:
        rows, spec = self.pending_rows, self.manifest.serving
        if rows == 0 or (rows < spec.batch_rows and now - self.cursor.last_batch_at < spec.batch_minutes * 60):
            return None
        return self._cut(now)

    @property
    def pending_rows(self) -> int:
        return sum(len(p.request.inputs) for p in self._pending)

    @property
    def busy_checking(self) -> bool:
        return self._checking is not None and self._checking.is_alive()

    @property
    def busy_retraining(self) -> bool:
        return self._retraining is not None and self._retraining.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Until the background check and retrain end (tests, and `close`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for attr in ("_checking", "_retraining", "_checking"):  # a check may start a retrain
            thread = getattr(self, attr)
            if thread is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 30.0) -> None:
        """Stop a retrain in progress (recorded as cancelled) and wait for the threads."""
        self._cancel.cancel("workbench serve stopped")
        self.wait(timeout)

    # -- reading ---------------------------------------------------------------------------------

    def _read_new(self) -> None:
        present = set()
        for segment in closed_segments(self.folder, REQUESTS):
            present.add(segment.name)
            if segment.name in self._read:
                continue  # a closed segment never grows: read once
            batched = self.cursor.positions.get(segment.name, 0)
            count = 0
            for count, request in read_requests(segment):
                if request is not None and request.status == 200 and request.role == "champion" and request.inputs:
                    self._index[request.request_id] = (segment.name, count)
                    if count >= batched:  # lines before the cursor are in a traffic batch already
                        self._pending.append(_without_broken_rows(segment.name, count, request))
                count += 1
            self._read[segment.name] = self._lines[segment.name] = count
        # Segments deleted (by the bound): forget them, and their rows not batched yet.
        gone = set(self._read) - present
        for name in gone:
            self._read.pop(name, None)
            self._lines.pop(name, None)
        self._pending = [p for p in self._pending if p.segment in present]
        if gone:
            self._index = {rid: where for rid, where in self._index.items() if where[0] in present}
        self.cursor.positions = {k: v for k, v in self.cursor.positions.items() if k in present}

    # -- the batch ----------------------------------------------------------------------------------

    def _cut(self, now: float) -> TrafficBatch:
        """Take the pending requests up to batch_rows rows (whole requests), write them, and move
        the cursor past them."""
        limit = self.manifest.serving.batch_rows
        taken, rows = [], 0
        for pending in self._pending:
            if rows >= limit:
                break
            taken.append(pending)
            rows += len(pending.request.inputs)
        rest = self._pending[len(taken):]
        requests = [p.request for p in taken]
        path = self._batch_path("", requests)
        write_batch(path, requests, self._columns(), None, {})

        cursor = self.cursor
        cut_segment = rest[0].segment if rest else None
        for pending in taken:
            # Whole segments before the cut are consumed to their last line (errors included);
            # the segment the cut falls in, up to the first request left pending.
            cursor.positions[pending.segment] = self._lines[pending.segment]
        if cut_segment is not None:
            cursor.positions[cut_segment] = rest[0].line
        cursor.batches += 1
        cursor.last_batch_at = now
        cursor.save(self.cursor_path)
        self._prune_batches()
        self._pending = rest
        versions = tuple(sorted({r.version for r in requests}, key=str))
        return TrafficBatch(cursor.batches, path, rows, len(requests), versions, False,
                            left_out=sum(p.left_out for p in taken))

    def _batch_path(self, kind: str, requests: list[Request]) -> Path:
        first, last = int(min(r.at for r in requests) * 1000), int(max(r.at for r in requests) * 1000)
        suffix = ".parquet" if self._data_suffix() in (".parquet", ".pq") else ".csv"
        return self.batch_dir / f"{ALIAS}-{kind}{first}-{last}{suffix}"

    # -- the labelled batch ---------------------------------------------------------------------

    def _labelled_batch(self, now: float) -> TrafficBatch | None:
        """Cut a labelled batch when feedback labelled batch_rows rows since the last one (or
        batch_minutes passed and it labelled some): their requests' inputs plus the target."""
        spec, target, cursor = self.manifest.serving, self.manifest.data.target, self.cursor
        if not target:
            return None  # nothing to put the labels in: decay needs [data] target
        # A request's segment closes at most segment_seconds after it was answered, and its
        # feedback comes after it: feedback older than this finds its request in a closed segment.
        horizon = now - spec.segment_seconds - LABEL_GRACE_S
        arrived = sorted((at, rid, labels) for rid, labels, at in self._new_feedback()
                         if cursor.labelled_until < at <= horizon)
        taken: dict[str, list] = {}
        rows, unmatched, until = 0, 0, horizon
        for at, rid, labels in arrived:
            if rows >= spec.batch_rows:
                until = at - 1e-6  # the rest waits for the next batch
                break
            where = self._index.get(rid)
            if where is None:
                unmatched += 1
                continue
            if rid not in taken:
                rows += len(labels)
            taken[rid] = labels  # a later label for the same request wins
        due = rows >= spec.batch_rows or (rows and now - cursor.last_labelled_at >= spec.batch_minutes * 60)
        if not due:
            return None
        requests = [r for r in self._requests(taken) if _labels_every_row(taken.get(r.request_id), r)]
        if not requests:
            cursor.labelled_until = until  # labels that fit no request's rows: said, not retried
            cursor.save(self.cursor_path)
            self._say(f"traffic monitor: {len(taken)} feedback item(s) have labels that do not match their "
                      "request's rows one for one: not used")
            return None
        path = self._batch_path("labelled-", requests)
        write_batch(path, requests, self._columns(), target, taken)
        cursor.labelled_until, cursor.last_labelled_at = until, now
        cursor.labelled_batches += 1
        cursor.save(self.cursor_path)
        self._prune_batches()
        versions = tuple(sorted({r.version for r in requests}, key=str))
        return TrafficBatch(cursor.labelled_batches, path, sum(len(r.inputs) for r in requests), len(requests),
                            versions, True, unmatched)

    def _new_feedback(self) -> list[tuple[str, list, float]]:
        """Every (request id, labels, arrival time) of the closed feedback segments (each segment
        read once: a closed segment never changes)."""
        present = {segment.name: segment for segment in closed_segments(self.folder, FEEDBACK)}
        for name in set(self._feedback) - set(present):
            del self._feedback[name]
        found = []
        for name, segment in present.items():
            if name not in self._feedback:
                lines = []
                for _number, line in segment_lines(segment):
                    rid, labels, at = (line or {}).get("request_id"), (line or {}).get("labels"), (line or {}).get("at")
                    if isinstance(rid, str) and isinstance(labels, list) and isinstance(at, (int, float)) \
                            and not isinstance(at, bool):
                        lines.append((rid, labels, float(at)))
                self._feedback[name] = lines
            found.extend(self._feedback[name])
        return found

    def _requests(self, ids) -> list[Request]:
        """The logged requests of these ids, read again from their (closed, unchanging) segments."""
        wanted: dict[str, set[int]] = {}
        for rid in ids:
            segment, line = self._index[rid]
            wanted.setdefault(segment, set()).add(line)
        found = []
        for segment in closed_segments(self.folder, REQUESTS):
            lines = wanted.get(segment.name)
            if not lines:
                continue
            for number, request in read_requests(segment, min(lines)):
                if number in lines and request is not None and request.request_id in ids:
                    found.append(request)
                if number >= max(lines):
                    break
        return found

    def _prune_batches(self) -> None:
        """Delete all but the newest KEEP_BATCHES batch files. Called when a batch is cut, so when
        no check is running: the older files' checks are done."""
        found = []
        for path in self.batch_dir.glob(f"{ALIAS}-*-*.*"):
            first = path.name.removeprefix(f"{ALIAS}-").removeprefix("labelled-").split("-")[0]
            if first.isdigit():
                found.append((int(first), path.name, path))
        for _first, _name, path in sorted(found)[:-KEEP_BATCHES]:
            path.unlink(missing_ok=True)

    def _data_suffix(self) -> str:
        data = self.manifest.drift.data_file or (self.manifest.data.paths[0] if self.manifest.data.paths else "")
        return Path(data).suffix.lower()

    def _columns(self) -> list[str]:
        """The training data's input columns in their order (the schema `serve` wrote), so the
        batch reads like the training data; empty when there is none yet."""
        try:
            schema = json.loads((self.cursor_path.parent / "schema.json").read_text())
            return [str(c) for c in schema["columns"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    # -- checking and retraining (background threads) ---------------------------------------------

    def _check(self, batch: TrafficBatch) -> None:
        from workbench.services.drift import DriftService

        skipped = (f"; {batch.unmatched} label(s) skipped: not of an answer of the champion's in the log "
                   "(a challenger's, or deleted)") if batch.unmatched else ""
        if batch.left_out:
            skipped += (f"; {batch.left_out:,} served row(s) left out: they broke the data contract "
                        "(workbench serve status counts them)")
        head = f"{batch.name} ({batch.rows:,} rows, {_versions(batch.versions)}{skipped})"
        retraining = self.busy_retraining  # one retrain at a time: a batch checked meanwhile records it as not done
        try:
            service = DriftService(self._background_session())
            outcome = service.check_batch(self.project, batch.path, allow_retrain=not retraining)
        except WorkbenchError as exc:
            self._say(f"{head}: not checked: {exc}")
            return
        except Exception as exc:  # a background thread must say what broke, not die silently
            log.exception("checking %s", batch.path)
            self._say(f"{head}: not checked: {type(exc).__name__}: {exc}")
            return
        self.outcomes.append((batch, outcome))
        summary = f"{head}: {_verdict(outcome)}"
        if not outcome.decision.retrain:
            busy = " (a retrain from traffic is running)" if retraining and outcome.fresh else ""
            self._say(f"{summary} -> no retrain: {outcome.decision.reason}{busy}")
            return
        self._retraining = threading.Thread(target=self._retrain, args=(service, outcome, summary),
                                            name=f"traffic-retrain-{batch.number}", daemon=True)
        self._retraining.start()

    def _retrain(self, service, outcome, summary: str) -> None:
        said = []

        def on_event(event: RunEvent) -> None:
            if isinstance(event, RunStarted) and not said:
                said.append(event.run_id)
                self._say(f"{summary} -> retraining (run {event.run_id})")

        try:
            record = service.retrain(self.project, outcome, on_event=on_event, cancel=self._cancel)
        except Exception as exc:
            log.exception("retraining on %s", outcome.batch.path)
            self._say(f"{summary} -> the retrain did not run: {exc}")
            return
        self.retrains.append(record)
        if not said:
            self._say(f"{summary} -> retraining (run {record.id})")
        self._say(f"traffic retrain run {record.id}: {record.status.value}"
                  + (f" ({record.reason})" if record.reason else "") + self._registered(service.session, record))

    def _registered(self, session: WorkbenchSession, record) -> str:
        """What the retrain's model became: the next step of the loop, said."""
        registration = session.last_registration
        if registration is None or registration[0] is None or registration[0].run_id != record.id:
            return ""
        version = registration[0].version
        if session.registry.aliases(self.project).get("staging") == version:
            return (f" -> version {version}, in staging by [promotion] auto_staging: production's canary "
                    "and shadow follow it")
        return (f" -> version {version} registered (`workbench promote {self.project} {version} --to staging` "
                "puts it behind the canary)")

    def _say(self, message: str) -> None:
        try:
            self.on_message(message)
        except Exception:  # a closed console must not kill the thread that reports into it
            log.exception("reporting %r", message)


def _without_broken_rows(segment: str, line: int, request: Request) -> Pending:
    """The pending traffic of one request: its rows that kept the data contract. A request all
    of whose rows broke it stays pending with no rows, so the next batch still counts them."""
    if not request.contract_rows:
        return Pending(segment, line, request)
    broken = set(request.contract_rows)
    kept = [i for i in range(len(request.inputs)) if i not in broken]
    trimmed = replace(request, inputs=[request.inputs[i] for i in kept],
                      outputs=[request.outputs[i] for i in kept] if request.outputs is not None else None)
    return Pending(segment, line, trimmed, len(broken))


def _labels_every_row(labels: list | None, request: Request) -> bool:
    return labels is not None and len(labels) == len(request.inputs) and all(v is not None for v in labels)


def _versions(versions: tuple) -> str:
    return ", ".join(f"v{v}" for v in versions) or "no version"


def _verdict(outcome) -> str:
    report = outcome.report
    if report is None:
        return "not checked"
    if not report.usable:
        words = f"not checked: {report.rule}"
    elif report.drifted:
        columns = report.drifted_columns
        more = f" and {len(columns) - 4} more" if len(columns) > 4 else ""
        words = "drifted (" + ", ".join(columns[:4]) + more + ")"
    else:
        words = f"warning ({report.rule})" if report.status == "warning" else "no drift"
    decay = report.decay
    if decay is not None:
        words += f"; {decay.metric} {decay.value:.4g} on the batch vs {decay.baseline:.4g} evaluated"
    return words


def write_batch(path: Path, requests: list[Request], columns: list[str], target: str | None,
                labels: dict[str, list]) -> None:
    """Write the requests' input rows (and, with `target`, each row's label) as a CSV or Parquet
    file (by `path`'s suffix), columns in `columns` order then any others as first seen. A column
    is typed by its values: whole numbers as integers (so a 0/1 flag reads "1" as in the training
    CSV), other numbers as doubles, booleans, else text."""
    from workbench.adapters.batch_files import duckdb_cursor, quote_name

    seen = list(dict.fromkeys(columns))
    known = set(seen)
    for request in requests:
        for record in request.inputs:
            for name in record:
                if name not in known and name != target:
                    known.add(name)
                    seen.append(name)
    names = seen + ([target] if target else [])
    rows = []
    for request in requests:
        row_labels = labels.get(request.request_id) if target else None
        for i, record in enumerate(request.inputs):
            row = {name: record.get(name) for name in seen}
            if target:
                row[target] = row_labels[i]
            rows.append(row)
    kinds = {name: _kind([row[name] for row in rows]) for name in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    source = path.with_name(f".{path.name}.{os.getpid()}.jsonl")
    try:
        with open(source, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps({n: _plain(row[n], kinds[n]) for n in names}) + "\n")
        spec = "{" + ", ".join(f"{_literal(n)}: '{kinds[n]}'" for n in names) + "}"
        selects = ", ".join(quote_name(n) for n in names)
        fmt = "(FORMAT parquet)" if path.suffix == ".parquet" else "(HEADER, DELIMITER ',')"
        con = duckdb_cursor()
        try:
            con.execute(f"COPY (SELECT {selects} FROM read_json({_literal(str(source))}, columns = {spec}, "
                        f"format = 'newline_delimited')) TO {_literal(str(tmp))} {fmt}")
        finally:
            con.close()
        os.replace(tmp, path)
    except Exception as exc:
        raise WorkbenchError(f"cannot write the traffic batch {path}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
        source.unlink(missing_ok=True)


def _kind(values: list) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "BOOLEAN"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        if all((isinstance(v, int) or float(v).is_integer()) and abs(v) < 2**63 for v in present):
            return "BIGINT"
        return "DOUBLE"
    return "VARCHAR"


def _plain(value, kind: str):
    if value is None:
        return None
    if kind == "BIGINT":
        return int(value)
    if kind == "VARCHAR" and not isinstance(value, str):
        return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return value


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

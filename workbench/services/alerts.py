"""Alerts: events worth telling people about, sent to the webhooks of `[notify]`.

    session.alerts.emit("run_failed", "telco-churn", "run 42 failed: stage train exited 1", {...})

`emit` never raises into its caller and never waits for a receiver: it resolves who wants the
kind (the workspace's `workspace.toml` and the project's manifest, workbench.core.notify_config),
writes the event and one delivery per receiver to the outbox in the lineage store (one short
transaction; nothing at all when nobody listens) and returns. Delivery is someone else's job,
the way the MLflow mirror's outbox is drained:

- a long-lived process (the TUI) runs a drainer thread (`start_delivery_thread`), woken by its
  own emits and looking every few seconds for other processes' events;
- any other process (a `workbench run`, `drift`, `promote`, `serve`) starts a detached
  `workbench notify sync --background` after it queued something ($WORKBENCH_NOTIFY_SYNC=off:
  only `workbench notify sync` and the TUI deliver), which stays while deliveries are pending.

One drainer at a time per workspace (a file lock). Per receiver (its URL) events go oldest
first and a failed one holds back the later ones until its retry (backoff doubling from
`retry_after_s` to `max_retry_s`), so order holds; other receivers carry on. Each event carries
its id (X-Workbench-Event-Id), the same on every retry. A receiver's headers and format are
read from the config when sending (a fixed token applies to what waits); a delivery whose URL
is no longer configured is closed as not sent, with that said in its last error.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from workbench.core.alert_payload import AlertEvent
from workbench.core.errors import ManifestError, ProjectNotFound, WorkbenchError
from workbench.core.notify_config import (EVENT_KINDS, WORKSPACE_CONFIG, NotifySpec, Receivers, Webhook, combine,
                                          parse_workspace_notify)
from workbench.services.workspace import Workspace

log = logging.getLogger(__name__)
SYNC_ENV = "WORKBENCH_NOTIFY_SYNC"
"""background (default): a process that queued alerts starts a detached drainer; off: only
`workbench notify sync` and the TUI deliver."""
OFF = {"off", "none", "disabled", "false", "0"}
POLL_S = 2.0
"""How often an idle drainer looks for events other processes queued."""
BACKGROUND_BUDGET_S = 900.0
"""A detached drainer gives up after this long (the next command that queues starts another)."""
MAX_SUMMARY = 500


@dataclass(frozen=True)
class SendResult:
    receiver: str
    """Its URL as shown (core.notify_config.shown_url: without a token in its path)."""
    ok: bool
    detail: str
    """The HTTP status, or what went wrong."""


@dataclass(frozen=True)
class AlertsStatus:
    pending: int
    """Deliveries not made yet."""
    failing: int
    """Of those, how many failed at least once."""
    last_error: str | None = None
    last_error_receiver: str | None = None
    last_error_at: datetime | None = None
    delivered: int = 0
    last_delivered_at: datetime | None = None

    @property
    def summary(self) -> str:
        if not self.pending:
            return "alerts delivered"
        text = f"{self.pending} alert(s) undelivered"
        return text + (f", error: {self.last_error}" if self.last_error else "")


class Alerts:
    def __init__(self, workspace: Workspace, lineage: Callable[[], Any], sender=None,
                 notice: Callable[[str], None] = lambda _m: None):
        """`lineage()` gives the lineage store (opened when first needed); `sender` replaces the
        HTTP sender (adapters/webhook_sender.WebhookSender); `notice` hears of an alert that
        could not be queued (the CLI's stderr, a TUI notification)."""
        self.workspace = workspace
        self.notice = notice
        self._lineage = lineage
        self._outbox = None
        self._sender = sender
        self._config: tuple[tuple, NotifySpec] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        """Emits come from several threads (runs, the serving keeper): one delivery thread."""
        self._deliver_here = False
        self.problems: list[str] = []
        """Emits that could not be queued (a broken config, a store that could not be written)."""

    # -- configuration ---------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.workspace.root / WORKSPACE_CONFIG

    def workspace_spec(self) -> NotifySpec:
        """`[notify]` of workspace.toml (read again when the file changes); ManifestError if invalid."""
        path = self.config_path
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return NotifySpec()
        if self._config is not None and self._config[0] == stamp:
            return self._config[1]
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(str(path), None, f"cannot read: {exc}") from None
        spec = parse_workspace_notify(text, str(path))
        self._config = (stamp, spec)
        return spec

    def receivers(self, project: str = "") -> Receivers:
        """The project's receivers and thresholds ('' for the workspace's alone). A project that
        is gone has the workspace's; a broken manifest or workspace.toml raises ManifestError."""
        spec = None
        if project:
            try:
                ref = self.workspace.project(project)
            except ProjectNotFound:
                ref = None
            if ref is not None:
                if ref.manifest is None:
                    raise ref.error or ManifestError(str(ref.manifest_path), None, "cannot be read")
                spec = ref.manifest.notify
        return combine(self.workspace_spec(), spec)

    def check_config(self, project: str = "") -> Receivers:
        return self.receivers(project)

    # -- emitting ----------------------------------------------------------------------------

    def emit(self, kind: str, project: str, summary: str, details: dict[str, Any] | None = None) -> bool:
        """Queue an alert for every receiver that wants `kind`; whether any does. Never raises:
        a problem is logged and kept in `problems` (a run must not fail for its alert's sake)."""
        try:
            if kind not in EVENT_KINDS:
                raise WorkbenchError(f"unknown alert kind {kind!r}")
            hooks = self.receivers(project).for_kind(kind)
            if not hooks:
                return False
            self.outbox.add(uuid.uuid4().hex, project, kind, _line(summary), details or {}, [(h.key, h.shown) for h in hooks])
        except Exception as exc:  # a bug here must not become the caller's failure either
            problem = f"alert {kind} of {project or 'the workspace'} not queued: {exc}"
            log.warning(problem)
            if problem not in self.problems:  # said once: a broken config would say it on every run
                self.problems.append(problem)
                self.notice(problem)
            return False
        try:
            self._request_delivery()
        except Exception as exc:  # queued all the same: the next run or command looks again
            log.warning("alert delivery: %s", exc)
        return True

    def resume(self) -> None:
        """Have someone deliver what earlier processes left waiting (a detached drainer gives up
        after BACKGROUND_BUDGET_S): called after each run. One small read; never raises."""
        try:
            if self.outbox.has_pending():
                self._request_delivery()
        except Exception as exc:  # the run is recorded; its alerts wait for the next look
            log.warning("alert delivery: %s", exc)

    @property
    def outbox(self):
        if self._outbox is None:
            from workbench.adapters.duckdb_alerts import DuckDBAlertOutbox

            self._outbox = DuckDBAlertOutbox(self._lineage())
        return self._outbox

    def _request_delivery(self) -> None:
        if self._deliver_here:
            self.start_delivery_thread()
            self._wake.set()
        else:
            self.start_background_sync()

    # -- state ---------------------------------------------------------------------------------

    def status(self) -> AlertsStatus:
        return AlertsStatus(**self.outbox.summary())

    def undelivered(self, limit: int = 100):
        """Oldest first: adapters.duckdb_alerts.Delivery rows."""
        return self.outbox.pending(limit)

    # -- delivering ----------------------------------------------------------------------------

    @property
    def sender(self):
        if self._sender is None:
            from workbench.adapters.webhook_sender import WebhookSender

            self._sender = WebhookSender()
        return self._sender

    @property
    def lock_path(self) -> Path:
        return self.workspace.ensure_state_dir() / "notify.lock"

    def drain(self, force: bool = False) -> tuple[int, int]:
        """One pass over what is due, under the workspace's drain lock: (sent, failed). A pass
        already under way elsewhere makes this return (0, 0) at once. `force` ignores backoff."""
        from workbench.adapters.locks import LockBusy, file_lock

        try:
            with file_lock(self.lock_path, 0, "the alert outbox"):
                return self._drain(force)
        except LockBusy:
            return 0, 0

    def _drain(self, force: bool) -> tuple[int, int]:
        sent = failed = 0
        blocked: set[str] = set()
        configs: dict[str, Receivers | WorkbenchError] = {}
        now = datetime.now(timezone.utc)
        for item in self.outbox.pending():
            if item.receiver in blocked:
                continue
            if not force and item.next_attempt_at is not None and item.next_attempt_at > now:
                blocked.add(item.receiver)  # its turn has not come: the later ones wait behind it
                continue
            if item.project not in configs:
                try:
                    configs[item.project] = self.receivers(item.project)
                except WorkbenchError as exc:
                    configs[item.project] = exc
            config = configs[item.project]
            try:
                if isinstance(config, WorkbenchError):
                    raise config
                hook = config.by_key(item.receiver)
                if hook is None:
                    self.outbox.delivered(item.alert_id, item.receiver,
                                          f"not sent: {item.receiver_shown} is no longer in [notify] of "
                                          f"{item.project or 'the workspace'}")
                    continue
                self._send(hook, item)
            except Exception as exc:  # DeliveryFailed, a broken config, or a bug: the delivery waits
                timing = config if isinstance(config, Receivers) else Receivers()
                self.outbox.failed(item.alert_id, item.receiver, str(exc) or type(exc).__name__,
                                   backoff_s(item.attempts + 1, timing.retry_after_s, timing.max_retry_s))
                blocked.add(item.receiver)
                failed += 1
                continue
            self.outbox.delivered(item.alert_id, item.receiver)
            sent += 1
        return sent, failed

    def _send(self, hook: Webhook, item) -> None:
        self.sender.send(hook, AlertEvent(item.event_id, item.kind, item.project, item.summary, item.details,
                                          item.created_at, str(self.workspace.root)))

    def send_test(self, project: str = "") -> list[SendResult]:
        """`workbench notify test`: one test event straight to each receiver of the project (or
        of the workspace), not through the outbox, so the answer is known now."""
        receivers = self.receivers(project)
        event = AlertEvent(uuid.uuid4().hex, "test", project,
                           f"test alert from workbench for {project or 'the workspace'}",
                           {"receivers": len(receivers.webhooks)}, datetime.now(timezone.utc), str(self.workspace.root))
        results = []
        for hook in receivers.webhooks:
            try:
                status = self.sender.send(hook, event)
                results.append(SendResult(hook.shown, True, f"HTTP {status}"))
            except WorkbenchError as exc:
                results.append(SendResult(hook.shown, False, str(exc).removeprefix(f"{hook.shown}: ")))
        return results

    # -- who delivers -------------------------------------------------------------------------

    def deliver_here(self) -> None:
        """This process delivers (a long-lived one: the TUI): a thread starts now if alerts are
        waiting, else with the first emit."""
        self._deliver_here = True
        if self.outbox.has_pending():
            self.start_delivery_thread()

    def start_delivery_thread(self) -> None:
        """Deliver from this process until `stop_delivery_thread` (the TUI, for its lifetime)."""
        with self._thread_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._deliver_loop, daemon=True, name="alert-delivery")
            self._thread.start()

    def stop_delivery_thread(self, timeout: float = 5.0) -> None:
        self._deliver_here = False
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _deliver_loop(self) -> None:
        while not self._stop.is_set():
            wait = POLL_S
            try:
                self.drain()
                due = self.outbox.next_due_in()
                if due is not None:
                    wait = min(POLL_S, max(due, 0.05))
            except Exception as exc:  # a store that is busy or broken: try again later
                log.warning("alert delivery: %s", exc)
            self._wake.wait(wait)
            self._wake.clear()

    def sync_in_background(self, budget_s: float = BACKGROUND_BUDGET_S) -> None:
        """The detached `notify sync --background`: deliver while anything is pending, holding
        the lock; after letting go, look once more (an event queued as we finished would
        otherwise wait for the next command)."""
        from workbench.adapters.locks import LockBusy, file_lock

        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            try:
                with file_lock(self.lock_path, 0, "the alert outbox"):
                    while time.monotonic() < deadline:
                        self._drain(force=False)
                        due = self.outbox.next_due_in()
                        if due is None:
                            break
                        time.sleep(min(max(due, 0.05), POLL_S, max(0.0, deadline - time.monotonic())))
            except LockBusy:
                return
            if not self.outbox.has_pending():
                return

    def start_background_sync(self) -> bool:
        if os.environ.get(SYNC_ENV, "background").strip().lower() in OFF:
            return False
        from workbench.adapters.locks import LockBusy, file_lock

        try:
            with file_lock(self.lock_path, 0, "the alert outbox"):
                pass
        except LockBusy:
            return False  # a drainer is at work, and it looks for new events before it leaves
        try:
            subprocess.Popen([sys.executable, "-m", "workbench", "--workspace", str(self.workspace.root), "notify",
                              "sync", "--background"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        except OSError:
            return False  # the events wait in the outbox; the next command tries again
        return True


def backoff_s(attempts: int, first_s: float, max_s: float) -> float:
    """`first_s` after the first failure, doubling, at most `max_s`; jittered so that many
    workbenches do not knock on a receiver at the same moment."""
    return min(max_s, first_s * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)


def _line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_SUMMARY else text[:MAX_SUMMARY - 3] + "..."

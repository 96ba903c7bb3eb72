"""The app-wide messages: what the services report (from their threads) and what workers
return, as typed Textual messages. Widget-specific messages are nested in their widgets.

Service events reach the UI thread through `EventBridge`: the watch service calls it from its
threads; it queues events and wakes the UI thread at most once per batch, so 10,000 log lines
a second arrive as a few dozen `LogLines` messages, not 10,000.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump

from workbench.core.events import EnvironmentLog, RunEvent, StageLog, StageProgress

BATCH_S = 0.05
"""At most one batch per this many seconds while events keep coming."""


class ServiceEvent(Message):
    """A run or watch event from workbench.core.events (logs excepted: see LogLines)."""

    def __init__(self, event: RunEvent) -> None:
        super().__init__()
        self.event = event


class LogLines(Message):
    """Log lines of one run in the order produced: (stage, line); stage "" is the environment."""

    def __init__(self, run_id: int, lines: list[tuple[str, str]]) -> None:
        super().__init__()
        self.run_id = run_id
        self.lines = lines


class Notice(Message):
    """Something to tell the user (a notification), from any thread."""

    def __init__(self, text: str, severity: str = "warning", title: str = "") -> None:
        super().__init__()
        self.text = text
        self.severity = severity
        self.title = title


class WorkDone(Message):
    """A worker's result: `kind` says what it was (projects, run, trend, diff, ...)."""

    def __init__(self, kind: str, payload: Any, key: Any = None) -> None:
        super().__init__()
        self.kind = kind
        self.payload = payload
        self.key = key
        """What it was for (a project name, a run id), to drop answers that came too late."""


class WorkFailed(Message):
    """A worker raised: `error` is the message for the user."""

    def __init__(self, kind: str, error: str, key: Any = None) -> None:
        super().__init__()
        self.kind = kind
        self.error = error
        self.key = key


class EventsPending(Message):
    """Internal: the bridge has events queued."""


class EventBridge:
    """An EventSink any thread may call; `drain()` on the UI thread turns what it queued into
    messages for `target`. Never blocks the caller (the watch service calls it while it
    closes, from threads the UI thread may be joining)."""

    def __init__(self, target: MessagePump):
        self.target = target
        self._queue: deque[RunEvent] = deque()
        self._lock = threading.Lock()
        self._woken = False
        self._last_drain = 0.0

    def __call__(self, event: RunEvent) -> None:
        self._queue.append(event)
        with self._lock:
            if self._woken:
                return
            self._woken = True
        self.target.post_message(EventsPending())

    def drain(self) -> float | None:
        """Post the queued events to the target as messages. Returns seconds to wait before
        draining again (events keep coming), or None when it drained."""
        now = time.monotonic()
        wait = BATCH_S - (now - self._last_drain)
        if wait > 0:
            return wait
        self._last_drain = now
        with self._lock:
            self._woken = False
        for message in self._take():
            self.target.post_message(message)
        return None

    def _take(self) -> list[Message]:
        """The queued events as messages, in order; consecutive log lines of a run in one."""
        messages: list[Message] = []
        open_logs: dict[int, LogLines] = {}
        progress_at: dict[tuple[int, str], int] = {}
        queue = self._queue
        while queue:
            event = queue.popleft()
            if isinstance(event, (StageLog, EnvironmentLog)):
                batch = open_logs.get(event.run_id)
                if batch is None:
                    batch = open_logs[event.run_id] = LogLines(event.run_id, [])
                    messages.append(batch)
                batch.lines.append((event.stage if isinstance(event, StageLog) else "", event.line))
            elif isinstance(event, StageProgress):
                # Only the latest count matters; it need not be ordered against log lines.
                key = (event.run_id, event.stage)
                index = progress_at.get(key)
                if index is None:
                    progress_at[key] = len(messages)
                    messages.append(ServiceEvent(event))
                else:
                    messages[index] = ServiceEvent(event)
            else:
                # Lines after this event must be shown after it: they start a new batch.
                open_logs.clear()
                progress_at.clear()
                messages.append(ServiceEvent(event))
        return messages

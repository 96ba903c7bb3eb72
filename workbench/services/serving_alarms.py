"""Watching a project's served endpoints against `[notify.serving]` (error rate, p99 latency),
from the process that serves them (ServingKeeper: `workbench serve` and the TUI's Serving view).

Every CHECK_S seconds it scrapes each of the project's servers' /metrics into a ScrapeWindow
as wide as the thresholds' window, reads what the endpoint answered over that window and lets
the pure rule (workbench.core.serving_alarm) say whether a threshold was crossed; crossings
become alerts. A server that does not answer /metrics is skipped (the keeper restarts it);
nothing here raises into the serving loop.
"""

from __future__ import annotations

import logging
import time

from workbench.core.errors import WorkbenchError
from workbench.core.notify_config import ServingThresholds
from workbench.core.serving_alarm import Reading, ThresholdLatch
from workbench.services.serving_stats import ScrapeWindow, ServerStats

log = logging.getLogger(__name__)
CHECK_S = 5.0
CLIENT_ROLES = ("champion", "challenger")
"""The roles whose answers reach clients; a shadow's are compared, never returned."""


class ServingAlarm:
    def __init__(self, session, project: str, thresholds: ServingThresholds):
        self.session = session
        self.project = project
        self.thresholds = thresholds
        self.latch = ThresholdLatch()
        self.windows: dict[str, ScrapeWindow] = {}
        """alias -> the scrapes of its server."""
        self._checked_at = 0.0

    @classmethod
    def for_project(cls, session, project: str) -> "ServingAlarm | None":
        """An alarm when `[notify.serving]` (the project's or the workspace's) sets a threshold."""
        try:
            thresholds = session.alerts.receivers(project).serving
        except WorkbenchError as exc:
            log.warning("serving thresholds of %s: %s", project, exc)
            return None
        return cls(session, project, thresholds) if thresholds.any else None

    def tick(self, servers, now: float | None = None) -> None:
        """About once a second; checks every CHECK_S. `servers()` gives the project's
        ServerStatus list (called only when a check is due)."""
        now = time.monotonic() if now is None else now
        if now - self._checked_at < CHECK_S:
            return
        self._checked_at = now
        try:
            for server in servers():
                if server.healthy and server.url:
                    url = server.url.replace("0.0.0.0", "127.0.0.1")
                    window = self.windows.get(server.alias)
                    if window is None or window.url != url:
                        window = self.windows[server.alias] = ScrapeWindow(url, self.thresholds.window_s + CHECK_S)
                    window.poll()
                    self.judge(server.alias, window.stats(self.thresholds.window_s))
        except Exception as exc:  # a Docker hiccup must not stop serving; the next check tries again
            log.warning("serving thresholds of %s: %s", self.project, exc)

    def judge(self, alias: str, stats: ServerStats) -> int:
        """Alerts for what `stats` (rows over a span) shows; how many were emitted."""
        if stats.problem or stats.span_s is None:
            return 0
        rows = [r for r in stats.rows if r.role in CLIENT_ROLES]
        p99s = [r.p99 for r in rows if r.requests and r.p99 is not None]
        reading = Reading(sum(r.requests for r in rows), sum(r.errors for r in rows), max(p99s) if p99s else None,
                          stats.span_s)
        endpoint = f"{self.project} {alias}"
        emitted = 0
        for crossing in self.latch.judge(endpoint, self.thresholds, reading):
            self.session.alerts.emit(crossing.kind, self.project, crossing.summary, {
                "alias": alias, "url": stats.url, "measure": crossing.measure, "value": crossing.value,
                "limit": crossing.limit, "requests": reading.requests, "errors": reading.errors,
                "window_s": round(reading.span_s, 1), "served_version": stats.served_version})
            emitted += 1
        return emitted

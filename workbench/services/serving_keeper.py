"""What a process that started a project's servers does about once a second while they serve,
the same for `workbench serve` and the TUI's Serving view: start a crashed server again
(ServerSupervisor, with its back-off and limit) and turn production's logged traffic into drift
batches, live quality and retrains (ServingMonitor), and alert when an endpoint's error rate or
latency crosses `[notify.serving]` (ServingAlarm). One keeper per project served.
"""

from __future__ import annotations

import time
from typing import Callable

from workbench.core.restart_policy import RestartPolicy
from workbench.services.serving import ServerSupervisor, ServingService


class ServingKeeper:
    def __init__(self, service: ServingService, project: str, containers: list[str], aliases: tuple[str, ...],
                 on_message: Callable[[str], None], policy: RestartPolicy | None = None):
        from workbench.services.serving_monitor import ServingMonitor

        self.project = project
        self.supervisor = ServerSupervisor(service, project, containers, policy)
        # Only production's traffic becomes drift batches: it is what the model in production sees.
        self.monitor = ServingMonitor(service.session, project, on_message) if "production" in aliases else None
        from workbench.services.serving_alarms import ServingAlarm

        # Error rate and latency against [notify.serving], when it sets a threshold.
        self.alarm = ServingAlarm.for_project(service.session, project)
        self._service = service

    @property
    def given_up(self) -> set[str]:
        return self.supervisor.given_up

    def tick(self, now: float | None = None) -> tuple[list[str], bool]:
        """(restarts and give-ups said, one line each; whether any server is still served)."""
        if self.monitor is not None:
            self.monitor.tick(time.time())
        if self.alarm is not None:
            self.alarm.tick(lambda: self._service.status(self.project))
        return self.supervisor.check(now)

    def close(self) -> None:
        """Call after the servers are stopped: a retrain in progress is cancelled, a check finishes."""
        if self.monitor is not None:
            self.monitor.close()

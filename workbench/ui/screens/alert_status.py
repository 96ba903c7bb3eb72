"""The main screen's view of the alert outbox: how many alerts wait for their receivers, in the
status line (`alerts: 3 undelivered`), and a notification with the first few of them and the
last error when the count grows while a receiver is failing. The outbox is read in a thread
worker every ALERTS_EVERY_S (the delivery itself is the session's thread, started with the
services: workbench.services.alerts)."""

from __future__ import annotations

import logging

from workbench.core.errors import WorkbenchError

log = logging.getLogger(__name__)

ALERTS_EVERY_S = 5.0
LISTED = 3
"""Undelivered alerts a notification names (`workbench notify status` lists them all)."""


def read_alerts(session):
    """(AlertsStatus, the oldest few undelivered); None when nothing was ever queued here; False
    when the store could not be read (busy, broken: the panes that need it say so, and this
    count, read every 5 s, stays as it was rather than notify each time)."""
    alerts = session.alerts
    try:
        status = alerts.status()
        if not status.pending and not status.delivered:
            return None
        return status, alerts.undelivered(LISTED) if status.pending else []
    except WorkbenchError as exc:
        log.warning("reading the alert outbox: %s", exc)
        return False


class AlertStatus:
    """Mixed into MainScreen, which provides `_in_thread`, `_status` and `notify`."""

    alerts_pending = 0
    """Alert deliveries not made yet, as last read (0 until read)."""
    _alerts_noted = 0

    def _read_alerts(self) -> None:
        self._in_thread("alerts", None, read_alerts, self.session)

    def _done_alerts(self, result, _key) -> None:
        if result is False:
            return
        if result is None:
            pending = 0
        else:
            status, waiting = result
            pending = status.pending
            if pending > self._alerts_noted and status.failing:
                listed = "\n".join(f"{d.kind} · {d.project or 'workspace'} → {d.receiver_shown}" for d in waiting)
                more = f"\n… and {pending - len(waiting)} more" if pending > len(waiting) else ""
                self.notify(f"{listed}{more}\nlast error: {status.last_error}\n`workbench notify status` lists them",
                            title=f"{pending} alert(s) undelivered", severity="warning", timeout=10)
            self._alerts_noted = pending if status.failing else self._alerts_noted
        if pending != self.alerts_pending:
            self.alerts_pending = pending
            self._status()

    def alerts_fact(self) -> str:
        """What the status line says about alerts: nothing while all went out."""
        return f"  alerts: {self.alerts_pending} undelivered" if self.alerts_pending else ""


def start_delivery(session) -> str | None:
    """Deliver alerts from this process while the TUI is open; a problem in words, or None."""
    try:
        session.alerts.deliver_here()
    except WorkbenchError as exc:
        return f"alerts: {exc}"
    return None

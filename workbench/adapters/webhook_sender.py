"""POSTing an alert to a webhook with httpx; whatever goes wrong becomes a DeliveryFailed with a
line a person can act on ("connection refused", "HTTP 404: no_service"), never a traceback.

A 2xx answer is a delivery. Anything else, and no answer within the timeout, is a failure the
outbox retries later: a receiver that got the request but answered too late gets it again,
with the same X-Workbench-Event-Id, so it can drop the copy.
"""

from __future__ import annotations

import os

import httpx

from workbench.core.alert_payload import EVENT_ID_HEADER, EVENT_KIND_HEADER, AlertEvent, payload_bytes
from workbench.core.errors import WorkbenchError
from workbench.core.notify_config import Webhook, expand_header

TIMEOUT_S = 10.0
USER_AGENT = "workbench-alerts/1"


class DeliveryFailed(WorkbenchError):
    """The receiver did not take the alert; the outbox keeps it for the next try."""


class WebhookSender:
    def __init__(self, timeout_s: float = TIMEOUT_S):
        self.timeout_s = timeout_s
        self._client: httpx.Client | None = None

    def send(self, hook: Webhook, event: AlertEvent) -> int:
        """POST the event; the HTTP status on success, DeliveryFailed otherwise."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   EVENT_ID_HEADER: event.event_id, EVENT_KIND_HEADER: event.kind}
        for name, value in hook.headers:
            try:
                headers[name] = expand_header(value, dict(os.environ))
            except KeyError as exc:
                raise DeliveryFailed(f"header {name} of {hook.shown} ({hook.source}) names ${{{exc.args[0]}}}, "
                                     "which is not set in this process's environment") from None
        try:
            response = self._http().post(hook.url, content=payload_bytes(event, hook.format), headers=headers)
        except httpx.TimeoutException:
            raise DeliveryFailed(f"{hook.shown}: no answer within {self.timeout_s:g} s") from None
        except httpx.ConnectError as exc:
            raise DeliveryFailed(f"{hook.shown}: cannot connect ({_reason(exc, hook)})") from None
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{hook.shown}: {type(exc).__name__}: {_reason(exc, hook)}") from None
        if not 200 <= response.status_code < 300:
            body = " ".join(response.text.split())[:200]
            raise DeliveryFailed(f"{hook.shown}: HTTP {response.status_code}" + (f": {body}" if body else ""))
        return response.status_code

    def _http(self) -> httpx.Client:
        if self._client is None:
            # No redirects: a webhook that moved should be edited, not followed with our headers.
            self._client = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _reason(exc: Exception, hook: Webhook) -> str:
    text = (str(exc).strip() or type(exc).__name__).replace(hook.url, hook.shown)
    for marker in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                   "No route to host", "certificate verify failed"):
        if marker in text:
            return marker.lower()
    return text[:200]

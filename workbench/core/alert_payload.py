"""What a receiver gets: an alert as a JSON object (the default), or as a Slack-compatible
message (`format = "slack"`: `{"text", "blocks"}`, which Slack's incoming webhooks, Mattermost
and Rocket.Chat accept). Pure: the sender (adapters/webhook_sender.py) only POSTs the bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workbench.core.notify_config import EVENT_KINDS

EVENT_ID_HEADER = "X-Workbench-Event-Id"
"""The idempotency key: the same on every retry of one event, so a receiver that got an event
and answered too late (the workbench tries again) can drop the copy."""
EVENT_KIND_HEADER = "X-Workbench-Event"
SCHEMA = 1
"""The JSON payload's version (its `schema` field): fields are only ever added."""
SLACK_DETAIL_LINES = 8
"""Details shown in a Slack message (the JSON payload carries them all)."""
EMOJI = {"run_failed": ":x:", "gate_failed": ":no_entry:", "contract_broken": ":page_with_curl:",
         "batch_drifted": ":chart_with_upwards_trend:", "batch_decayed": ":chart_with_downwards_trend:",
         "retrain_started": ":arrows_counterclockwise:", "retrain_finished": ":checkered_flag:",
         "promoted": ":rocket:", "rolled_back": ":rewind:", "serving_error_rate": ":rotating_light:",
         "serving_latency": ":snail:", "serving_recovered": ":white_check_mark:", "test": ":wave:"}


@dataclass(frozen=True)
class AlertEvent:
    event_id: str
    kind: str
    project: str
    """'' for an event of the workspace as a whole."""
    summary: str
    """One line a person reads first."""
    details: dict[str, Any]
    created_at: datetime
    workspace: str
    """The workspace's folder, so a channel that hears from several knows which."""


def json_payload(event: AlertEvent) -> dict[str, Any]:
    return {"schema": SCHEMA, "id": event.event_id, "kind": event.kind, "project": event.project or None,
            "summary": event.summary, "details": event.details, "created_at": event.created_at.isoformat(),
            "workspace": event.workspace, "source": "workbench"}


def slack_payload(event: AlertEvent) -> dict[str, Any]:
    """`text` is the fallback a notification shows; the blocks carry the title, the details and
    where it came from."""
    where = f"{event.project} · " if event.project else ""
    title = f"{EMOJI.get(event.kind, ':bell:')} *{_escape(where + event.kind.replace('_', ' '))}*"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{title}\n{_escape(event.summary)}"}}]
    lines = [f"*{_escape(str(k))}*: {_escape(_short(v))}" for k, v in list(event.details.items())[:SLACK_DETAIL_LINES]]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(
        f"workbench · {event.workspace} · {event.created_at:%Y-%m-%d %H:%M:%S %Z} · event {event.event_id}")}]})
    return {"text": _escape(f"{where}{event.summary}"), "blocks": blocks}


def payload_bytes(event: AlertEvent, form: str) -> bytes:
    body = slack_payload(event) if form == "slack" else json_payload(event)
    return json.dumps(finite(body), default=str, allow_nan=False, ensure_ascii=False).encode()


def finite(value: Any) -> Any:
    """NaN and infinities as null: strict JSON parsers (most receivers) refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def describe(kind: str) -> str:
    return EVENT_KINDS.get(kind, kind)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def _escape(text: str) -> str:
    """Slack's mrkdwn reads &, < and > as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

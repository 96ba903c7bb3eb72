"""How values read on screen: status glyphs, durations, metrics, times. Colours are not here:
widgets map a status to a component class whose colour is a theme variable."""

from __future__ import annotations

from datetime import datetime

from workbench.core.formatting import duration, metric, signed  # noqa: F401  (shared with the CLI)

GLYPHS = {
    "succeeded": "✓",
    "gate_failed": "✗",
    "reused": "↺",
    "failed": "✗",
    "skipped": "–",
    "cancelled": "⊘",
    "superseded": "⇢",
    "interrupted": "!",
    "running": "●",
    "pending": "·",
}
TONE = {
    "succeeded": "good",
    "gate_failed": "bad",
    "reused": "info",
    "failed": "bad",
    "interrupted": "bad",
    "skipped": "muted",
    "pending": "muted",
    "cancelled": "warn",
    "superseded": "warn",
    "running": "live",
}
"""A status's tone; each widget maps a tone to a theme colour ($success, $error, ...)."""
TONES = ("good", "info", "bad", "muted", "warn", "live")


def status_text(status: str) -> str:
    """`✓ succeeded`, `✗ gate failed`: the glyph and the status in words."""
    return f"{GLYPHS.get(str(status), '?')} {status_words(status)}"


def status_words(status: str) -> str:
    """A status as words on screen (`gate_failed` is stored, `gate failed` is read)."""
    return str(status).replace("_", " ")


def tone(status: str) -> str:
    return TONE.get(str(status), "muted")


def when(moment: datetime | None) -> str:
    """Local time, to the minute: `03-14 09:26`."""
    if moment is None:
        return "—"
    return moment.astimezone().strftime("%m-%d %H:%M")


def short_hash(value: str | None, length: int = 12) -> str:
    if not value:
        return "—"
    value = value.removeprefix("sha256:")
    return value[:length]


def gates(passed: int, failed: int) -> str:
    if not passed and not failed:
        return "—"
    return f"✗{failed} ✓{passed}" if failed else f"✓{passed}"

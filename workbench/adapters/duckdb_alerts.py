"""The alert outbox on DuckDB (schema migration 12): events and their deliveries, one row per
event and receiver, in the lineage store's file.

Like the MLflow outbox, each operation is one short transaction through the lineage store's
session (attach, retry while another process holds the file, errors mapped to ours), and no
transaction is ever held open while a receiver is called: a slow webhook never keeps the file
from a run that is recording itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from workbench.adapters.duckdb_store import DuckDBLineageStore


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one receiver."""
    alert_id: int
    event_id: str
    project: str
    kind: str
    summary: str
    details: dict[str, Any]
    created_at: datetime
    receiver: str
    """The receiver's key (a hash of its URL: core.notify_config.receiver_key)."""
    receiver_shown: str
    """Its URL without the secret part, for screens."""
    attempts: int
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None


COLUMNS = ("a.id, a.event_id, a.project, a.kind, a.summary, a.details, a.created_at, d.receiver, d.receiver_shown, "
           "d.attempts, d.last_error, d.last_attempt_at, d.next_attempt_at")


class DuckDBAlertOutbox:
    def __init__(self, lineage: DuckDBLineageStore):
        self.lineage = lineage

    def add(self, event_id: str, project: str, kind: str, summary: str, details: dict[str, Any],
            receivers: list[tuple[str, str]]) -> int:
        """The event and its deliveries (receiver key, shown URL), in one transaction; returns
        the alert's id."""
        with self.lineage.transaction(write=True) as con:
            alert_id = con.execute(
                "INSERT INTO alerts (event_id, project, kind, summary, details, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                "RETURNING id", [event_id, project, kind, summary, json.dumps(details, default=str), _now()]
            ).fetchone()[0]
            con.executemany("INSERT INTO alert_deliveries (alert_id, receiver, receiver_shown) VALUES (?, ?, ?)",
                            [[alert_id, key, shown] for key, shown in receivers])
        return alert_id

    def pending(self, limit: int = 1000) -> list[Delivery]:
        """Undelivered, oldest event first (so, per receiver, in the order they happened)."""
        with self.lineage.transaction() as con:
            rows = con.execute(f"SELECT {COLUMNS} FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id "
                               "WHERE d.delivered_at IS NULL ORDER BY a.id, d.receiver LIMIT ?", [limit]).fetchall()
        return [_delivery(row) for row in rows]

    def has_pending(self) -> bool:
        with self.lineage.transaction() as con:
            return con.execute("SELECT count(*) FROM alert_deliveries WHERE delivered_at IS NULL").fetchone()[0] > 0

    def next_due_in(self) -> float | None:
        """Seconds until the earliest undelivered one may be tried (0: now); None: none waits."""
        with self.lineage.transaction() as con:
            row = con.execute("SELECT count(*), min(coalesce(next_attempt_at, TIMESTAMP '1970-01-01')) "
                              "FROM alert_deliveries WHERE delivered_at IS NULL").fetchone()
        if not row[0]:
            return None
        return max(0.0, (row[1] - _now()).total_seconds())

    def delivered(self, alert_id: int, receiver: str, note: str | None = None) -> None:
        """Done; `note` says why it was closed without being sent (kept as its last error)."""
        with self.lineage.transaction(write=True) as con:
            con.execute("UPDATE alert_deliveries SET delivered_at = ?, attempts = attempts + ?, last_attempt_at = ?, "
                        "last_error = ? WHERE alert_id = ? AND receiver = ?",
                        [_now(), 0 if note else 1, _now(), note, alert_id, receiver])

    def failed(self, alert_id: int, receiver: str, error: str, retry_in_s: float) -> None:
        with self.lineage.transaction(write=True) as con:
            con.execute("UPDATE alert_deliveries SET attempts = attempts + 1, last_error = ?, last_attempt_at = ?, "
                        "next_attempt_at = ? WHERE alert_id = ? AND receiver = ?",
                        [error, _now(), _now() + timedelta(seconds=retry_in_s), alert_id, receiver])

    def prune(self, before: datetime, dry_run: bool = False) -> int:
        """Alerts whose every delivery went out before `before` (history no one waits on): deleted
        with their deliveries, or only counted in a dry run. Returns how many alerts."""
        done = ("SELECT alert_id FROM alert_deliveries GROUP BY alert_id "
                "HAVING count(*) = count(delivered_at) AND max(delivered_at) < ?")
        with self.lineage.transaction(write=not dry_run) as con:
            count = con.execute(f"SELECT count(*) FROM ({done})", [before]).fetchone()[0]
            if count and not dry_run:
                con.execute(f"DELETE FROM alerts WHERE id IN ({done})", [before])
                con.execute("DELETE FROM alert_deliveries WHERE alert_id NOT IN (SELECT id FROM alerts)")
        return count

    def summary(self) -> dict[str, Any]:
        """Undelivered count, how many of them failed at least once, and the newest error."""
        with self.lineage.transaction() as con:
            pending, failing = con.execute("SELECT count(*), count(last_error) FROM alert_deliveries "
                                           "WHERE delivered_at IS NULL").fetchone()
            error = con.execute("SELECT last_error, receiver_shown, last_attempt_at FROM alert_deliveries "
                                "WHERE delivered_at IS NULL AND last_error IS NOT NULL "
                                "ORDER BY last_attempt_at DESC LIMIT 1").fetchone()
            sent = con.execute("SELECT count(*), max(delivered_at) FROM alert_deliveries "
                               "WHERE delivered_at IS NOT NULL AND attempts > 0").fetchone()
        return {"pending": pending, "failing": failing, "last_error": error[0] if error else None,
                "last_error_receiver": error[1] if error else None,
                "last_error_at": _aware(error[2]) if error else None,
                "delivered": sent[0], "last_delivered_at": _aware(sent[1])}


def _delivery(row: tuple) -> Delivery:
    return Delivery(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), _aware(row[6]), row[7], row[8],
                    row[9], row[10], _aware(row[11]), _aware(row[12]))


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None else None

"""How the registry's rows map to our objects (model versions, audit entries, outbox items), and
the writes every registry transaction shares: a version's insert and an outbox row.

JSON values are stored as text; a non-finite float is stored as null (JSON has no NaN), and
timestamps as naive UTC (DuckDB's TIMESTAMP), made aware again when read.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Callable

from workbench.core.gates import GateResult
from workbench.core.registry import AuditEntry, ModelVersion, OutboxItem

VERSION_COLUMNS = ("project", "version", "run_id", "created_at", "stage", "artifact_name", "artifact_path", "sha256",
                   "size", "run_status", "run_reason", "metrics", "params", "gates", "primary_metric",
                   "primary_value", "snapshot_id", "image_id", "manifest_hash", "data_fingerprints",
                   "inputs_digest", "cache_key")
AUDIT_COLUMNS = ("id", "occurred_at", "actor", "host", "project", "action", "request", "alias", "version",
                 "from_version", "to_version", "reason", "message", "checks", "gates", "comparison")
OUTBOX_COLUMNS = "id, project, kind, key, payload, created_at, attempts, last_error, next_attempt_at"


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def version_row(con, where: str, params: list) -> ModelVersion | None:
    row = con.execute(f"SELECT {', '.join(VERSION_COLUMNS)} FROM model_versions WHERE {where}", params).fetchone()
    return version_from_row(row) if row else None


def version_from_row(row: tuple) -> ModelVersion:
    data = dict(zip(VERSION_COLUMNS, row))
    data.pop("cache_key")
    return ModelVersion(**data | {
        "created_at": data["created_at"].replace(tzinfo=timezone.utc),
        "metrics": {k: (math.nan if v is None else v) for k, v in json.loads(data["metrics"]).items()},
        "params": json.loads(data["params"]),
        "gates": tuple(GateResult(**g) for g in json.loads(data["gates"])),
        "data_fingerprints": json.loads(data["data_fingerprints"]),
    })


def audit_from_row(row: tuple) -> AuditEntry:
    data = dict(zip(AUDIT_COLUMNS + ("row_hash",), row))
    at = data.pop("occurred_at")
    return AuditEntry(**data | {
        "at": at.replace(tzinfo=timezone.utc),
        "checks": json.loads(data["checks"]),
        "gates": json.loads(data["gates"]),
        "comparison": json.loads(data["comparison"]) if data["comparison"] else None,
    })


def outbox_from_row(row: tuple) -> OutboxItem:
    item_id, project, kind, key, payload, created, attempts, error, next_at = row
    return OutboxItem(item_id, project, kind, key, json.loads(payload), aware(created), attempts, error,
                      aware(next_at))


def insert_version(con, v: ModelVersion, cache_key: str) -> None:
    values = {
        **{c: getattr(v, c) for c in VERSION_COLUMNS if hasattr(v, c)},
        "created_at": v.created_at.astimezone(timezone.utc).replace(tzinfo=None),
        "metrics": json.dumps({k: finite(x) for k, x in v.metrics.items()}),
        "params": json.dumps(v.params),
        "gates": json.dumps([gate_dict(g) for g in v.gates]),
        "primary_value": finite(v.primary_value),
        "data_fingerprints": json.dumps(v.data_fingerprints),
        "cache_key": cache_key,
    }
    con.execute(f"INSERT INTO model_versions ({', '.join(VERSION_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(VERSION_COLUMNS))})", [values[c] for c in VERSION_COLUMNS])


def payload_paths(payload: dict[str, Any], convert: Callable[[str], str]) -> dict[str, Any]:
    """The payload with its model file's path converted (a run's payload, or a version's that
    carries its run's): stored relative to the workspace, sent absolute."""
    out = dict(payload)
    if isinstance(out.get("model"), dict) and out["model"].get("path"):
        out["model"] = dict(out["model"], path=convert(out["model"]["path"]))
    if isinstance(out.get("run"), dict):
        out["run"] = payload_paths(out["run"], convert)
    return out


def enqueue(con, project: str, kind: str, key: str, payload: dict[str, Any]) -> None:
    con.execute("INSERT INTO mlflow_outbox (project, kind, key, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                [project, kind, key, json.dumps(payload, default=str), utc_now()])


def gate_dict(g: GateResult) -> dict[str, Any]:
    return {"metric": g.metric, "op": g.op, "threshold": g.threshold, "value": finite(g.value),
            "passed": g.passed, "detail": g.detail}


def finite(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None else None

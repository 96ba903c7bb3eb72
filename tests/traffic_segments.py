"""Traffic log segments written as the model server writes them (the on-disk contract of
adapters/traffic_log.py), for the reader's and the serving monitor's tests."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

_ids = itertools.count(1)
T0_MS = 1_700_000_000_000
"""Segment names carry a 13-digit unix time in ms: `opened_ms` counts from this."""


def request_line(inputs: list[dict], outputs: list | None, *, version=1, role="champion", status=200,
                 seconds=0.004, at=1_700_000_000.0, alias="production", request_id: str | None = None) -> dict:
    request_id = request_id or f"r{next(_ids)}"
    return {"request_id": request_id, "key": request_id, "alias": alias, "role": role, "version": version,
            "status": status, "seconds": seconds, "at": at, "inputs": inputs,
            "outputs": outputs if status == 200 else None, "error": "" if status == 200 else "bad request"}


def write_segment(folder: Path, kind: str, lines: list, opened_ms: int, pid: int = 7) -> Path:
    """A closed segment opened `opened_ms` after T0_MS: written as `.KIND-....jsonl.part`, then
    renamed, as the server does.
    A line that is a str is written as it is (for malformed lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{kind}-{T0_MS + opened_ms}-{pid}.jsonl"
    part = folder / f".{name}.part"
    with open(part, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    os.replace(part, folder / name)
    return folder / name


def feedback_line(request: dict, labels: list, at: float = 1_700_000_100.0) -> dict:
    return {"request_id": request["request_id"], "labels": labels, "at": at}

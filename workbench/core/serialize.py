"""Records to plain JSON-ready dicts, for `--json` output and the TUI's detail views."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from enum import Enum


def to_jsonable(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in ("duration_s", "gates_passed", "reused_stages", "rule"):
            attr = getattr(type(value), name, None)
            if isinstance(attr, property):
                data[name] = to_jsonable(getattr(value, name))
        return data
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value

"""Records to plain JSON-ready values, for `--json` output and the TUI's detail views.

Written for speed as well as clarity: `workbench runs --json` turns 100,000 summaries into JSON.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from functools import lru_cache

_PLAIN = (str, int, bool, type(None))
# Derived values worth having in the JSON beside the stored fields.
_DERIVED = ("duration_s", "gates_passed", "reused_stages", "rule", "warnings", "verdict")


@lru_cache(maxsize=None)
def _derived_properties(cls: type) -> tuple[str, ...]:
    return tuple(name for name in _DERIVED if isinstance(getattr(cls, name, None), property))


def to_jsonable(value):
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return None if value != value else value  # NaN is not JSON
    if hasattr(kind, "__dataclass_fields__"):
        data = {name: to_jsonable(getattr(value, name)) for name in kind.__dataclass_fields__}
        for name in _derived_properties(kind):
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
    return value


def dumps(value) -> str:
    """Indented JSON, except that a list's items go one per line: readable, and fast for long
    listings (json's C encoder is only used without `indent`)."""
    plain = to_jsonable(value)
    if isinstance(plain, list):
        if not plain:
            return "[]"
        return "[\n  " + ",\n  ".join(json.dumps(item, default=str) for item in plain) + "\n]"
    return json.dumps(plain, indent=2, default=str)

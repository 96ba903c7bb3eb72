"""Writing a params document back as TOML, YAML or JSON: a sweep trial's copy of the project's
params file, with its values in (the user's file is never written).

The standard library reads TOML but does not write it; a params file holds tables, arrays and
scalars, which is all `_toml` writes. Comments and layout of the original are not kept: the
copy lives only in the trial's snapshot, and stages read values, not text.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

from workbench.core.errors import WorkbenchError


def write_params(document: dict, path: Path, name: str) -> None:
    """Write `document` to `path` in the format `name`'s suffix says."""
    suffix = name.lower().rsplit(".", 1)[-1]
    if suffix == "toml":
        text = _toml(document)
    elif suffix in ("yaml", "yml"):
        import yaml

        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    elif suffix == "json":
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        raise WorkbenchError(f"{name} is not a TOML, YAML or JSON params file")
    path.write_text(text, encoding="utf-8")


def _toml(document: dict) -> str:
    lines: list[str] = []
    _table(document, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(table: dict, path: list[str], lines: list[str]) -> None:
    plain = {k: v for k, v in table.items() if not _is_table(v) and not _is_table_array(v)}
    if path and (plain or not table):
        lines.append(f"\n[{'.'.join(map(_key, path))}]")
    for key, value in plain.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if _is_table(value):
            _table(value, [*path, key], lines)
        elif _is_table_array(value):
            for item in value:
                lines.append(f"\n[[{'.'.join(map(_key, [*path, key]))}]]")
                for k, v in item.items():
                    lines.append(f"{_key(k)} = {_value(v)}")


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "-_" for c in key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise WorkbenchError(f"cannot write {value!r} to a TOML params file")

"""The params-file keys a run's stages ran with, as compare columns: each stored value (the
canonical JSON of a key's value, which may be an object) flattened into dotted scalar names,
`evaluate` = {"threshold": 0.5} giving `evaluate.threshold` = `0.5`. Pure; the compare store
applies it to the distinct stored values only, never per run."""

from __future__ import annotations

import json
from collections.abc import Iterable


def flatten_key_value(key: str, value: str) -> list[tuple[str, str]]:
    """(dotted name, text) of each scalar in a stored key value. Text is what a logged param
    would hold: a string as itself, anything else as compact JSON (a list stays one value)."""
    try:
        parsed = json.loads(value)
    except ValueError:  # not JSON (an older or foreign row): shown as stored
        return [(key, value)]
    flat: list[tuple[str, str]] = []

    def walk(name: str, node) -> None:
        if isinstance(node, dict) and node:
            for child, inner in node.items():
                walk(f"{name}.{child}", inner)
        elif isinstance(node, str):
            flat.append((name, node))
        else:
            flat.append((name, json.dumps(node, separators=(",", ":"), ensure_ascii=False)))

    walk(key, parsed)
    return flat


def key_value_columns(stored: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str, str, str]]:
    """(file, key, value, name, text) for each distinct stored (file, key, value): `name` is the
    dotted name, prefixed `FILE:` only when two params files give the same dotted name (so that
    the usual case reads `split.seed`, and a clash still names one column each)."""
    flat = [(file, key, value, name, text) for file, key, value in stored
            for name, text in flatten_key_value(key, value)]
    files_by_name: dict[str, set[str]] = {}
    for file, _, _, name, _ in flat:
        files_by_name.setdefault(name, set()).add(file)
    return [(file, key, value, f"{file}:{name}" if len(files_by_name[name]) > 1 else name, text)
            for file, key, value, name, text in flat]

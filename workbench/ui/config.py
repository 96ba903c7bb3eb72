"""The TUI's user config: `$WORKBENCH_CONFIG`, else `$XDG_CONFIG_HOME/workbench/config.toml`
(`~/.config/workbench/config.toml`). Validated here, in one place; a bad key or value is one
message naming the file and the key, and the rest of the file still applies.

    theme = "workbench-dark"      # the theme picked last (the app writes this line)
    watch_on_start = true         # watch projects whose manifest has watch.enabled

    [keys]                        # remap keys by action id (see `?` in the app)
    run_now = "r"
    toggle_watch = "w,ctrl+w"     # several keys: comma-separated
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from workbench.ui.actions import ACTION_IDS

KEY = re.compile(r"^[A-Za-z0-9_+\-]+$")


def config_path() -> Path:
    explicit = os.environ.get("WORKBENCH_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "workbench" / "config.toml"


@dataclass
class UiConfig:
    path: Path
    theme: str | None = None
    """The theme to open with; None: workbench-dark."""
    watch_on_start: bool = True
    """Start watching every project whose manifest has `watch.enabled = true` when the app opens."""
    keys: dict[str, str] = field(default_factory=dict)
    """Action id -> key(s), replacing the default keys of those actions."""
    problems: list[str] = field(default_factory=list)
    """One message per unusable entry (the entry is ignored)."""


def load_config(path: Path | None = None) -> UiConfig:
    path = path or config_path()
    config = UiConfig(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return config
    except (OSError, UnicodeDecodeError) as exc:
        config.problems.append(f"config {path}: cannot read: {exc}")
        return config
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        config.problems.append(f"config {path}: not valid TOML: {exc}")
        return config

    def problem(key: str, what: str) -> None:
        config.problems.append(f"config {path}: {key}: {what}")

    for key, value in data.items():
        if key == "theme":
            if isinstance(value, str) and value:
                config.theme = value
            else:
                problem(key, "must be a theme name")
        elif key == "watch_on_start":
            if isinstance(value, bool):
                config.watch_on_start = value
            else:
                problem(key, "must be true or false")
        elif key == "keys":
            if not isinstance(value, dict):
                problem(key, "must be a table of action id = key")
                continue
            for action, keys in value.items():
                if action not in ACTION_IDS:
                    problem(f"keys.{action}", f"unknown action id (ids: {', '.join(ACTION_IDS)})")
                elif not isinstance(keys, str) or not all(KEY.match(k.strip()) for k in keys.split(",")):
                    problem(f"keys.{action}", f"{keys!r} is not a key such as \"r\", \"ctrl+r\" or \"f5\"")
                else:
                    config.keys[action] = ",".join(k.strip() for k in keys.split(","))
        else:
            problem(key, "unknown key (known: theme, watch_on_start, keys)")
    return config


def save_theme(path: Path, theme: str) -> None:
    """Remember the theme: rewrite only the top-level `theme = ...` line, so the user's other
    settings and comments stay as they are. Raises OSError."""
    line = f"theme = {json.dumps(theme)}\n"
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        lines = []
    for index, existing in enumerate(lines):
        if existing.lstrip().startswith("["):
            lines.insert(index, line)  # before the first table: still a top-level key
            break
        if re.match(r"^\s*theme\s*=", existing):
            lines[index] = line
            break
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)

"""Reads `workspace.toml` from a workspace's root (parsed by workbench.core.workspace_config).

No file is the same as an empty one: every setting has its default. A file that cannot be read
or is not UTF-8 text is an error naming it, as a manifest's would be.
"""

from __future__ import annotations

from pathlib import Path

from workbench.core.errors import ManifestError
from workbench.core.workspace_config import (WORKSPACE_CONFIG_NAME, WorkspaceConfig, WorkspaceConfigError,
                                             parse_workspace_config)

MAX_CONFIG_BYTES = 1024**2


def read_settings_text(path: Path, max_bytes: int, what: str, error=ManifestError) -> str | None:
    """A settings file's text (a manifest, workspace.toml), or None when it does not exist: one
    bounded read (a runaway file must not fill memory), UTF-8, each problem an `error` naming
    the file. `what` ends the too-large message ("a manifest is a few kilobytes")."""
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise error(str(path), None, f"is larger than {max_bytes // 1024**2} MiB; {what} (is this the right file?)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise error(str(path), None, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
                                     "save it as UTF-8") from None


def read_workspace_config(root: Path) -> WorkspaceConfig:
    path = Path(root) / WORKSPACE_CONFIG_NAME
    text = read_settings_text(path, MAX_CONFIG_BYTES, "workspace settings are a few lines", WorkspaceConfigError)
    if text is None:
        return WorkspaceConfig(path=str(path))
    return parse_workspace_config(text, str(path))

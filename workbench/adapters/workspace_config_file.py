"""Reads `workspace.toml` from a workspace's root (parsed by workbench.core.workspace_config).

No file is the same as an empty one: every setting has its default. A file that cannot be read
or is not UTF-8 text is an error naming it, as a manifest's would be.
"""

from __future__ import annotations

from pathlib import Path

from workbench.core.workspace_config import (WORKSPACE_CONFIG_NAME, WorkspaceConfig, WorkspaceConfigError,
                                             parse_workspace_config)

MAX_CONFIG_BYTES = 1024**2


def read_workspace_config(root: Path) -> WorkspaceConfig:
    path = Path(root) / WORKSPACE_CONFIG_NAME
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)  # a runaway file must not fill memory
    except FileNotFoundError:
        return WorkspaceConfig(path=str(path))
    except OSError as exc:
        raise WorkspaceConfigError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise WorkspaceConfigError(str(path), None, f"is larger than {MAX_CONFIG_BYTES // 1024**2} MiB; "
                                                    "workspace settings are a few lines (is this the right file?)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise WorkspaceConfigError(str(path), None, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} on line "
                                                    f"{line}); save it as UTF-8") from None
    return parse_workspace_config(text, str(path))

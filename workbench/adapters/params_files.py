"""Reading params files (TOML, YAML, JSON) for the keys stages name (workbench.core.params_keys).

Each library's errors become a ParamsFileError naming the file and, where the library knows
it, the line: a stage whose params file does not parse fails saying so, never with a traceback.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from workbench.core.params_keys import ParamsFileError

MAX_PARAMS_BYTES = 16 * 1024 * 1024
"""A params file is a few kilobytes; past this it is a data file named by mistake."""


def parse_params(data: bytes, name: str) -> Any:
    """A params file's content as plain values (dicts, lists, numbers, strings), by its suffix."""
    suffix = name.lower().rsplit(".", 1)[-1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsFileError(f"{name} is not UTF-8 text (byte {exc.start})") from None
    try:
        if suffix == "toml":
            value = tomllib.loads(text)
        elif suffix in ("yaml", "yml"):
            value = _yaml(text, name)
        elif suffix == "json":
            value = json.loads(text)
        else:
            raise ParamsFileError(f"{name} is not a TOML, YAML or JSON params file")
    except tomllib.TOMLDecodeError as exc:
        raise ParamsFileError(f"{name} is not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ParamsFileError(f"{name} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ParamsFileError(f"{name} is nested too deeply to read") from None
    if not isinstance(value, dict):
        raise ParamsFileError(f"{name} must hold a table of keys at its top level, not {type(value).__name__}")
    return value


def _yaml(text: str, name: str) -> Any:
    import yaml  # PyYAML, only when a YAML params file is read

    try:
        return yaml.safe_load(text) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ParamsFileError(f"{name} is not valid YAML: {exc.problem}{where}") from None
    except yaml.YAMLError as exc:
        raise ParamsFileError(f"{name} is not valid YAML: {exc}") from None


def read_params_file(folder: Path, name: str) -> Any:
    """Read and parse `name` (project-relative) under `folder`, never through a symlink at its
    end: the watcher reads the live project, where a link could lead anywhere (a run reads its
    snapshot, where project links outside were refused already)."""
    path = folder / name
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ParamsFileError(f"params file {name} does not exist in the project") from None
    except OSError as exc:
        raise ParamsFileError(f"params file {name} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ParamsFileError(f"params file {name} is not a regular file")
        if st.st_size > MAX_PARAMS_BYTES:
            raise ParamsFileError(f"params file {name} holds {st.st_size} bytes, more than the "
                                  f"{MAX_PARAMS_BYTES // 1024 // 1024} MiB a params file may")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_PARAMS_BYTES + 1)
    except OSError as exc:
        raise ParamsFileError(f"params file {name} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    return parse_params(data, name)


class ParamsReader:
    """Parsed params files of one folder, each read once (a run's stages share them)."""

    def __init__(self, folder: Path, present: set[str] | None = None):
        self.folder = folder
        self.present = present
        """The files there are (a snapshot's list); None: ask the file system."""
        self._parsed: dict[str, Any] = {}

    def __call__(self, name: str) -> Any:
        if name not in self._parsed:
            if self.present is not None and name not in self.present:
                self._parsed[name] = ParamsFileError(
                    f"params file {name} is not in the project's snapshot (missing, or ignored by watch.ignore)")
            else:
                try:
                    self._parsed[name] = read_params_file(self.folder, name)
                except ParamsFileError as exc:
                    self._parsed[name] = exc
        found = self._parsed[name]
        if isinstance(found, ParamsFileError):
            raise found
        return found

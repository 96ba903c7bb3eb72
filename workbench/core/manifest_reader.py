"""Typed, range-checked access to one table of a manifest, with errors naming the file and key.

Every value a manifest can hold goes through one of these getters, so that a value outside
what the rest of the workbench (Docker, the clock, the file system, a shell) can take is
refused where it is written, with the key, and never reaches an adapter as a traceback or
as a path that leads out of the project.
"""

from __future__ import annotations

import math
import re
from typing import Any

from workbench.core.errors import ManifestError

SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)b?$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
MIN_MEMORY = 6 * 1024**2
"""Docker refuses a memory limit below 6 MiB."""
MAX_MEMORY = 1024**4
"""1 TiB: more than any one machine the workbench runs on; a larger number is a typo."""
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
WINDOWS_DRIVE_RE = re.compile(r"^[A-Za-z]:")


def parse_size(text: str) -> int:
    """Bytes of a size such as `512m`, `2g` or `1t` (binary units)."""
    match = SIZE_RE.match(text.strip())
    number = float(match.group(1)) if match else math.nan
    if not match or not math.isfinite(number):
        raise ValueError(f"not a size: {text!r} (expected e.g. 512m or 2g)")
    return int(number * SIZE_UNITS[match.group(2).lower()])


def path_problem(value: str, inside: str = "the project") -> str | None:
    """Why a path (or glob) written in the manifest is not one inside `inside`, or None.

    Paths are relative to the project's folder; an absolute path, a home folder or a `..` that
    climbs out would let a stage's inputs, a drift batch folder or a requirements file come
    from anywhere on the host, outside the snapshot and its lineage."""
    if not value.strip():
        return "must not be empty"
    text = value.replace("\\", "/")  # a Windows-style separator must not hide a '..'
    if text.startswith("/") or text == "~" or text.startswith("~/") or WINDOWS_DRIVE_RE.match(text):
        return f"{value!r} must be a path inside {inside}, relative to its folder (not an absolute path)"
    if ".." in text.split("/"):
        return f"{value!r} must be a path inside {inside} (without '..')"
    return None


class TableReader:
    """Typed access to one TOML table, with errors that name the file and the key."""

    def __init__(self, source: str, table: dict[str, Any], prefix: str):
        self.source, self.table, self.prefix = source, table, prefix
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str | None, problem: str) -> ManifestError:
        return ManifestError(self.source, self.key(name) if name else self.prefix or None, problem)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False):
        self.seen.add(name)
        if name not in self.table:
            if required:
                raise self.fail(name, "is required")
            return default
        value = self.table[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = _as_float(value)
        if bool not in kinds and isinstance(value, bool) or not isinstance(value, kinds):
            expected = " or ".join(_type_name(k) for k in kinds)
            raise self.fail(name, f"must be {expected}, got {_type_name(type(value))} {_shown(value)}")
        if isinstance(value, str):
            self._check_text(name, value)
        return value

    def text(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        """A string that names something (a metric, a column): present means not blank."""
        value = self.get(name, str, default=default, required=required)
        if value is not None and not value.strip():
            raise self.fail(name, "must not be empty")
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.get(name, (list, str), default=[])
        if isinstance(value, str):
            value = [value]
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise self.fail(name, f"must be a list of non-empty strings, got {_shown(item)}")
            self._check_text(name, item)
        return tuple(value)

    def path(self, name: str, inside: str = "the project") -> str | None:
        """An optional path relative to the project that must stay inside it."""
        value = self.get(name, str)
        if value is not None:
            self.check_path(name, value, inside)
        return value

    def paths(self, name: str, inside: str = "the project") -> tuple[str, ...]:
        """Paths or globs relative to the project, each of which must stay inside it."""
        values = self.strings(name)
        for value in values:
            self.check_path(name, value, inside)
        return values

    def check_path(self, name: str, value: str, inside: str = "the project") -> None:
        problem = path_problem(value, inside)
        if problem:
            raise self.fail(name, problem)

    def number(self, name: str, default: float | None, low: float, high: float, *, low_open: bool = False,
               unit: str = "") -> float | None:
        """A finite float in [low, high] (or (low, high] when `low_open`); unset gives `default`."""
        value = self.get(name, float, default=default)
        if value is None:
            return None
        if not math.isfinite(value):
            raise self.fail(name, f"must be a finite number, got {value}")
        if value > high or (value <= low if low_open else value < low):
            bound = f"above {low:g}" if low_open else f"at least {low:g}"
            raise self.fail(name, f"must be {bound} and at most {high:g}{unit}, got {value:g}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.get(name, int, default=default)
        if not low <= value <= high:
            raise self.fail(name, f"must be between {low} and {high}, got {_shown(value)}")
        return value

    def size(self, name: str, default: str | None) -> str | None:
        """A memory size such as `512m`, between Docker's minimum (6m) and 1t."""
        value = self.get(name, str, default=default)
        if value is None:
            return None
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None
        if size < MIN_MEMORY:
            raise self.fail(name, f"{value!r} is below Docker's minimum of 6m")
        if size > MAX_MEMORY:
            raise self.fail(name, f"must be at most 1t (1 TiB), got {value!r}")
        return value

    def module_names(self, name: str) -> tuple[str, ...]:
        values = self.strings(name)
        for value in values:
            if not MODULE_RE.match(value.strip()):
                raise self.fail(name, f"{value!r} is not a module name (e.g. numpy or sklearn.ensemble)")
        return tuple(v.strip() for v in values)

    def image(self, name: str) -> str | None:
        value = self.get(name, str)
        if value is not None and (not IMAGE_RE.match(value) or len(value) > 512):
            raise self.fail(name, f"{value!r} is not an image reference (e.g. python:3.11-slim)")
        return value

    def table_of(self, name: str) -> "TableReader":
        value = self.get(name, dict, default={})
        return TableReader(self.source, value, self.key(name))

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            expected = ", ".join(sorted(self.seen))
            raise self.fail(unknown[0], f"unknown key (expected one of: {expected})")

    def _check_text(self, name: str, value: str) -> None:
        # A NUL cannot be in a path, an argument or an environment variable: the OS refuses it
        # with a ValueError far from here.
        if "\0" in value:
            raise self.fail(name, f"must not contain a NUL character, got {_shown(value)}")


def _as_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits: past every range anyway
        return math.inf


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(kind, kind.__name__)

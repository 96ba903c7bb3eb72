"""Themes as data files: TOML or JSON, from the repository's `themes/` and the user's
`~/.config/workbench/themes/` (a user's file with the same name wins).

A file holds Textual's theme fields (colours are CSS colours: `#0178d4`, `rgb(1, 120, 212)`, a
name) and an optional `[variables]` table of Textual's theme variables:

    name = "workbench-dark"       # optional: the file's name (without suffix) otherwise
    dark = true
    primary = "#0178d4"           # the only required colour
    [variables]
    footer-key-foreground = "#5fb0ff"

Every file is validated here, in one place, before Textual sees it: a bad theme becomes one
message naming the file and the problem, never an exception when the theme is applied.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

REPO_THEMES = Path(__file__).resolve().parents[2] / "themes"
"""The themes shipped with the workbench (a source checkout or an editable install)."""
SUFFIXES = (".toml", ".json")
DEFAULT_THEME = "workbench-dark"

COLOR_FIELDS = ("primary", "secondary", "accent", "foreground", "background", "surface", "panel", "boost",
                "success", "warning", "error")
FIELDS = {
    **{name: "colour" for name in COLOR_FIELDS},
    "name": "name",
    "dark": "bool",
    "ansi": "bool",
    "luminosity_spread": "fraction",
    "text_alpha": "fraction",
    "variables": "variables",
}
TEXT_STYLES = {"none", "not", "bold", "b", "dim", "d", "italic", "i", "underline", "u", "underline2", "uu",
               "reverse", "r", "strike", "s", "blink", "overline", "o"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ThemeFileError(Exception):
    """One bad theme file: `str()` names the file, the key and what is wrong."""

    def __init__(self, path: Path, key: str | None, problem: str):
        self.path, self.key, self.problem = path, key, problem
        super().__init__(f"theme {path}: {key + ': ' if key else ''}{problem}")


@dataclass(frozen=True)
class ThemeSet:
    themes: dict[str, Theme]
    """By name; later folders override earlier ones."""
    sources: dict[str, Path]
    problems: list[str]
    """One message per file that could not be used."""


def user_theme_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "workbench" / "themes"


def theme_dirs() -> list[Path]:
    return [REPO_THEMES, user_theme_dir()]


def load_themes(folders: list[Path] | None = None) -> ThemeSet:
    themes: dict[str, Theme] = {}
    sources: dict[str, Path] = {}
    problems: list[str] = []
    for folder in folders if folders is not None else theme_dirs():
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())
        except OSError:
            continue  # no such folder: nothing to load
        for path in files:
            try:
                theme = parse_theme_file(path)
            except ThemeFileError as exc:
                problems.append(str(exc))
                continue
            themes[theme.name] = theme
            sources[theme.name] = path
    return ThemeSet(themes, sources, problems)


def parse_theme_file(path: Path) -> Theme:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ThemeFileError(path, None, f"cannot read: {exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ThemeFileError(path, None, f"not valid TOML: {exc}") from None
    except ValueError as exc:
        raise ThemeFileError(path, None, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ThemeFileError(path, None, "must hold a table of theme fields")
    return theme_from_data(data, path)


def theme_from_data(data: dict, path: Path) -> Theme:
    fields: dict = {}
    for key, value in data.items():
        kind = FIELDS.get(key)
        if kind is None:
            raise ThemeFileError(path, key, f"unknown key (known: {', '.join(FIELDS)})")
        fields[key] = _checked(path, key, kind, value)
    if "primary" not in fields:
        raise ThemeFileError(path, "primary", "missing: every theme needs a primary colour")
    fields.setdefault("name", path.stem)
    theme = Theme(**fields)
    try:
        theme.to_color_system().generate()
    except Exception as exc:  # Textual's colour maths on an odd combination: say which file
        raise ThemeFileError(path, None, f"Textual cannot build a colour system from it: {exc}") from None
    return theme


def _checked(path: Path, key: str, kind: str, value):
    if kind == "name":
        if not isinstance(value, str) or not NAME.match(value):
            raise ThemeFileError(path, key, f"{value!r} is not a name (letters, digits, '-', '_', '.')")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ThemeFileError(path, key, f"{value!r} must be true or false")
        return value
    if kind == "fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ThemeFileError(path, key, f"{value!r} must be a number from 0 to 1")
        return float(value)
    if kind == "colour":
        if not isinstance(value, str) or not _is_colour(value):
            raise ThemeFileError(path, key, f"{value!r} is not a colour (e.g. \"#0178d4\" or \"rgb(1, 120, 212)\")")
        return value
    if not isinstance(value, dict):
        raise ThemeFileError(path, key, "must be a table of variable = value")
    known = _known_variables()
    for name, text in value.items():
        where = f"variables.{name}"
        if name not in known:
            raise ThemeFileError(path, where, "not a Textual theme variable")
        if not isinstance(text, str):
            raise ThemeFileError(path, where, f"{text!r} must be a string")
        if name.endswith("-style") or "-style-" in name:
            words = text.split()
            if not words or any(w not in TEXT_STYLES for w in words):
                raise ThemeFileError(path, where, f"{text!r} is not a text style (e.g. \"bold\", \"reverse\", \"none\")")
        elif not _is_colour(text, allow_alpha_suffix=True):
            raise ThemeFileError(path, where, f"{text!r} is not a colour (e.g. \"#0178d4\" or \"#0178d4 50%\")")
    return dict(value)


def _is_colour(text: str, allow_alpha_suffix: bool = False) -> bool:
    words = text.split()
    if allow_alpha_suffix and len(words) == 2 and re.fullmatch(r"\d{1,3}%", words[1]):
        words = words[:1]
    if len(words) != 1 and not text.strip().startswith(("rgb", "hsl")):
        return False
    value = words[0] if len(words) == 1 else text.strip()
    if allow_alpha_suffix and value in ("auto", "transparent"):
        return True
    try:
        Color.parse(value)
    except ColorParseError:
        return False
    return True


_KNOWN: frozenset[str] | None = None


def _known_variables() -> frozenset[str]:
    global _KNOWN
    if _KNOWN is None:
        _KNOWN = frozenset(Theme(name="probe", primary="#0178d4").to_color_system().generate())
    return _KNOWN

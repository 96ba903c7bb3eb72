"""Params as dependencies, by key: a stage names the values of a params file it reads.

`params = ["train", "split.seed", "other.yaml:model.lr"]` in a stage makes its cache key take
only those values, each as canonical JSON, instead of the whole file's hash: editing
`[evaluate] threshold` then reruns evaluate, not train. A key is a section (`train`) or a dotted
path into nested tables (`split.seed`; a number indexes a list: `layers.0`). A bare key reads
the project's params file: `[project] params`, or else the one of params.toml, params.yaml,
params.yml and params.json at the project's top, when exactly one exists. `FILE:KEY` names
another file. A params file that a stage ALSO lists in `inputs` keeps the whole-file behaviour:
any edit to it reruns that stage.

Pure: reading a file is the caller's (workbench.adapters.params_files); here are the syntax,
the choice of file, the selection of a key and the canonical text of its value.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

PARAMS_SUFFIXES = (".toml", ".yaml", ".yml", ".json")
"""The params file formats a key can be read from."""
DEFAULT_PARAMS_FILES = ("params.toml", "params.yaml", "params.yml", "params.json")
"""Looked for at the project's top when `[project] params` is not set."""


class ParamsFileError(ValueError):
    """A params file that cannot be read as a table of values (the message names the file)."""


@dataclass(frozen=True)
class ParamRef:
    key: str
    """Dotted path into the file: `train`, `split.seed`."""
    file: str | None = None
    """The params file (relative to the project); None: the project's params file."""

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    def label(self, default_file: str | None) -> str:
        """`params.toml:train.lr`: how the value is named in the lineage and the run diff."""
        return f"{self.file or default_file or '?'}:{self.key}"


def parse_param_ref(text: str) -> ParamRef:
    """One entry of a stage's `params`; ValueError says what is wrong with it."""
    entry = text.strip()
    file = None
    if ":" in entry:
        file, _, entry = entry.partition(":")
        file = file.strip().removeprefix("./")  # as the snapshot and the watcher name files
        entry = entry.strip()
        if not file.lower().endswith(PARAMS_SUFFIXES):
            raise ValueError(f"{text!r}: the part before ':' must be a params file ending in "
                             f"{', '.join(PARAMS_SUFFIXES)} (e.g. \"params.yaml:train.lr\")")
    if not entry:
        raise ValueError(f"{text!r} names no key (e.g. \"train\" or \"split.seed\"); to depend on the whole "
                         "file, list it in inputs")
    if any(not part.strip() for part in entry.split(".")):
        raise ValueError(f"{text!r} is not a dotted key: each part between dots must be a name "
                         "(e.g. \"split.seed\")")
    return ParamRef(entry, file)


def params_files(refs: Collection[ParamRef], default_file: str | None) -> tuple[str, ...]:
    """The files a stage's refs read, in first-named order."""
    return tuple(dict.fromkeys(ref.file or default_file or "" for ref in refs if ref.file or default_file))


def default_params_file(configured: str | None, present: Collection[str]) -> tuple[str | None, str | None]:
    """(the project's params file, or None with why there is none) from `[project] params` or
    the candidates present at the project's top (`present`: project-relative paths)."""
    if configured:
        return configured.removeprefix("./"), None
    found = [name for name in DEFAULT_PARAMS_FILES if name in present]
    if len(found) == 1:
        return found[0], None
    if not found:
        return None, (f"no params file: none of {', '.join(DEFAULT_PARAMS_FILES)} is in the project; "
                      "add one, set [project] params = \"FILE\", or name the file in the key (\"FILE:KEY\")")
    return None, (f"several params files ({', '.join(found)}): set [project] params = \"{found[0]}\" "
                  "to say which one a bare key reads")


def select(document: Any, ref: ParamRef, file: str) -> Any:
    """The value at `ref.key` in a parsed params file; KeyError with a message naming the key,
    the file and what is there instead."""
    value = document
    walked: list[str] = []
    for part in ref.parts:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            where = f"[{'.'.join(walked)}]" if walked else "the top level"
            if isinstance(value, Mapping):
                keys = ", ".join(sorted(map(str, value))[:20]) or "nothing"
                there = f"{where} has: {keys}"
            elif isinstance(value, list):
                there = f"{where} is a list of {len(value)} values"
            else:
                there = f"{where} is a value ({canonical(value)}), not a table"
            raise KeyError(f"key {ref.key!r} is not in {file} ({there})")
        walked.append(part)
    return value


def canonical(value: Any) -> str:
    """The value as canonical JSON (sorted keys, no spaces): what the cache key and the lineage
    hold. Dates and times (TOML and YAML have them) are written in ISO 8601; NaN and infinity
    keep their names, so 1 and 1.0 and nan stay apart."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return value  # json writes NaN / Infinity
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@dataclass(frozen=True)
class StageParams:
    """What a stage's `params` resolved to in one project state."""

    values: dict[str, str] = field(default_factory=dict)
    """`file:key` -> canonical JSON of the value, in the order the stage names them."""
    files: tuple[str, ...] = ()
    """The params files read."""
    problem: str | None = None
    """Why a key could not be read (the stage fails before it runs, with this)."""


def resolve_stage_params(stage: str, refs: Collection[ParamRef], default_file: str | None,
                         no_default_reason: str | None, load: Callable[[str], Any]) -> StageParams:
    """The values of a stage's keys. `load(file)` returns a file's parsed content and raises
    ParamsFileError when it cannot (missing, not valid TOML/YAML/JSON)."""
    if not refs:
        return StageParams()
    where = f"stages.{stage}.params"
    values: dict[str, str] = {}
    files: list[str] = []
    for ref in refs:
        file = ref.file or default_file
        if file is None:
            return StageParams(values, tuple(files), f"{where}: {ref.key!r} needs a params file: {no_default_reason}")
        if file not in files:
            files.append(file)
        try:
            values[ref.label(default_file)] = canonical(select(load(file), ref, file))
        except ParamsFileError as exc:
            return StageParams(values, tuple(files), f"{where}: {exc}")
        except KeyError as exc:
            return StageParams(values, tuple(files), f"{exc.args[0]}, which {where} names")
    return StageParams(values, tuple(files))

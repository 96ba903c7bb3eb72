"""What a sweep searches: `--param KEY=SPEC` (or a manifest's `[sweep] params`) read and checked.

A spec is a range `0.01..0.3` (floats; `:log` samples on a log scale, `:int` whole numbers,
both may be given) or a list of choices `15,31,63` (numbers, true/false, or words). KEY is a
params key as a stage's `params` names it (workbench.core.params_keys): a bare dotted key reads
the project's params file, `FILE:KEY` another one. Optuna does the searching; this module only
turns the text into a search space, and puts a trial's values into a params document.

Pure: the caller reads and writes the params files.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workbench.core.params_keys import ParamRef, parse_param_ref, select

SAMPLERS = ("tpe", "random", "grid")
DIRECTIONS = ("maximize", "minimize")
MODIFIERS = ("log", "int")
MAX_GRID_POINTS = 10_000
"""An integer range becomes this many grid points at most: past it, a grid is a mistake."""

Scalar = bool | int | float | str


@dataclass(frozen=True)
class SweepParam:
    name: str
    """The key as given (`train.lr`, `params.yaml:train.lr`): the trial's parameter name."""
    ref: ParamRef
    kind: str
    """`float` or `int` (a range), or `choice`."""
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Scalar, ...] = ()

    def grid(self) -> tuple[Scalar, ...]:
        """Every value a grid sampler tries; ValueError for a range of real numbers."""
        if self.kind == "choice":
            return self.choices
        if self.kind == "int":
            low, high = int(self.low), int(self.high)
            if high - low + 1 > MAX_GRID_POINTS:
                raise ValueError(f"--param {self.name}: {high - low + 1} integers is too many grid points "
                                 f"(at most {MAX_GRID_POINTS}); give a list of values (e.g. 15,31,63)")
            return tuple(range(low, high + 1))
        raise ValueError(f"--param {self.name}: the grid sampler needs a list of values (e.g. 0.01,0.1,0.3) "
                         f"or an integer range (e.g. 1..8:int), not a range of real numbers")


def parse_param_spec(text: str) -> SweepParam:
    """One `KEY=SPEC`; ValueError saying what is wrong, with an example of what is right."""
    key, eq, spec = text.partition("=")
    key, spec = key.strip(), spec.strip()
    if not eq or not key:
        raise ValueError(f"--param {text!r}: write KEY=SPEC, e.g. train.learning_rate=0.01..0.3:log "
                         "or train.num_leaves=15,31,63")
    try:
        ref = parse_param_ref(key)
    except ValueError as exc:
        raise ValueError(f"--param {text!r}: {exc}") from None
    if not spec:
        raise ValueError(f"--param {text!r}: no values after '=' (a range a..b or a list a,b,c)")
    if ".." in spec:
        return _range(text, key, ref, spec)
    if ":" in spec:
        raise ValueError(f"--param {text!r}: ':log' and ':int' apply to a range (a..b), not to a list of values")
    choices = tuple(_scalar(part.strip()) for part in spec.split(","))
    if any(part == "" for part in choices):
        raise ValueError(f"--param {text!r}: an empty value in the list (e.g. 15,31,63)")
    if len(set(map(repr, choices))) < 2:
        raise ValueError(f"--param {text!r}: give at least two different values to choose from, or a range a..b "
                         "(a fixed value belongs in the params file)")
    return SweepParam(key, ref, "choice", choices=choices)


def _range(text: str, key: str, ref: ParamRef, spec: str) -> SweepParam:
    bounds, *modifiers = spec.split(":")
    unknown = [m for m in modifiers if m.strip() not in MODIFIERS]
    if unknown:
        raise ValueError(f"--param {text!r}: unknown modifier {unknown[0]!r} (use :log, :int, or both)")
    modifiers = [m.strip() for m in modifiers]
    low_text, _, high_text = bounds.partition("..")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        raise ValueError(f"--param {text!r}: a range needs two numbers, e.g. 0.01..0.3") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"--param {text!r}: the bounds must be finite numbers")
    if low >= high:
        raise ValueError(f"--param {text!r}: the low bound ({low_text}) must be below the high bound ({high_text})")
    log = "log" in modifiers
    if log and low <= 0:
        raise ValueError(f"--param {text!r}: a log range needs a low bound above 0")
    is_int = "int" in modifiers
    if is_int and not (low.is_integer() and high.is_integer()):
        raise ValueError(f"--param {text!r}: an :int range needs whole-number bounds, e.g. 15..255:int")
    return SweepParam(key, ref, "int" if is_int else "float", low=low, high=high, log=log)


def _scalar(text: str) -> Scalar:
    """A choice as the params file would hold it: 31 an integer, 0.1 a float, true a boolean."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            return text
        return value
    return text


def parse_param_specs(texts: list[str] | tuple[str, ...]) -> tuple[SweepParam, ...]:
    """Every spec, checked; a key given twice is an error."""
    params = tuple(parse_param_spec(text) for text in texts)
    seen: dict[tuple[str | None, str], str] = {}
    for param in params:
        where = (param.ref.file, param.ref.key)
        if where in seen:
            raise ValueError(f"--param {param.name} is given twice")
        seen[where] = param.name
    if not params:
        raise ValueError("a sweep needs at least one --param KEY=SPEC (e.g. train.learning_rate=0.01..0.3:log), "
                         "or [sweep] params in the manifest")
    return params


def check_key(document: Any, param: SweepParam, file: str) -> None:
    """ValueError unless the key is in the params file and holds a single value there."""
    try:
        current = select(document, param.ref, file)
    except KeyError as exc:
        raise ValueError(f"--param {param.name}: {exc.args[0]}") from None
    if isinstance(current, (Mapping, list)):
        raise ValueError(f"--param {param.name}: {param.ref.key!r} in {file} is a "
                         f"{'table' if isinstance(current, Mapping) else 'list'}, not a single value; "
                         "name a key inside it")


def with_values(document: Any, values: dict[ParamRef, Scalar]) -> Any:
    """A copy of a parsed params file with each key set to its value (the keys exist: check_key)."""
    result = copy.deepcopy(document)
    for ref, value in values.items():
        target = result
        *path, last = ref.parts
        for part in path:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return result


def grid_size(params: tuple[SweepParam, ...]) -> int:
    size = 1
    for param in params:
        size *= len(param.grid())
    return size


@dataclass(frozen=True)
class SweepSpec:
    """A manifest's `[sweep]` section: the defaults of `workbench sweep PROJECT`; the command
    line's options replace them (its --param's replace the whole list)."""

    params: tuple[str, ...] = ()
    """`KEY=SPEC` texts, as --param takes them (checked when the manifest is read)."""
    trials: int = 20
    sampler: str = "tpe"
    """`tpe`, `random` or `grid` (Optuna's samplers)."""
    metric: str | None = None
    """The metric the search optimizes; unset: the project's primary_metric."""
    direction: str | None = None
    """`maximize` or `minimize`; unset: the project's primary_metric_goal."""


def parse_sweep_table(table) -> SweepSpec:
    """`[sweep]` from the manifest's table reader; its `fail` names the file and the key."""
    params = table.strings("params")
    for text in params:
        try:
            parse_param_spec(text)
        except ValueError as exc:
            raise table.fail("params", str(exc).replace("--param ", "")) from None
    trials = table.integer("trials", SweepSpec.trials, 1, 100_000)
    sampler = table.get("sampler", str, default=SweepSpec.sampler)
    if sampler not in SAMPLERS:
        raise table.fail("sampler", f"must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    metric = table.text("metric")
    direction = table.text("direction")
    if direction is not None and direction not in DIRECTIONS:
        raise table.fail("direction", f"must be 'maximize' or 'minimize', got {direction!r}")
    table.reject_unknown()
    return SweepSpec(params, trials, sampler, metric, direction)

"""The project manifest, `workbench.toml`: parsed and validated in one place.

Every field is documented here; the README's manifest reference is written from this file.
Validation is strict (an unknown key is an error) because a typo such as `imputs` would
otherwise silently make a stage's cache key ignore its inputs.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from workbench.core.errors import ManifestError
from workbench.core.gates import Gate, parse_gate

MANIFEST_NAME = "workbench.toml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmg]?)b?$", re.IGNORECASE)
DEFAULT_IGNORES = (
    ".workbench/**",
    ".git/**",
    ".hg/**",
    ".svn/**",
    "**/__pycache__/**",
    "**/.ipynb_checkpoints/**",
    "**/*.swp",
    "**/*.swx",
    "**/*~",
    "**/.#*",
    "**/#*#",
    "**/.DS_Store",
)


@dataclass(frozen=True)
class DataSpec:
    paths: tuple[str, ...] = ()
    """Data files (globs, relative to the project) whose fingerprint, schema and column
    statistics are recorded in the lineage of every run."""
    target: str | None = None
    """The label column."""
    sensitive: tuple[str, ...] = ()
    """Columns that fairness metrics are computed over (e.g. `female`)."""
    incoming: str | None = None
    """Folder where new batches of production-like data land (drift checks)."""


@dataclass(frozen=True)
class EnvironmentSpec:
    base_image: str | None = None
    """Docker base image; unset means $WORKBENCH_BASE_IMAGE, then `python:3.11-slim`, then the
    offline image made by `workbench env bootstrap`."""
    requirements: str | None = None
    """A pip requirements file, relative to the project, installed into the image once."""
    memory: str = "2g"
    """Memory limit per stage container, e.g. `512m`, `2g`."""
    cpus: float = 1.0
    """CPU limit per stage container (fractional cores)."""
    network: bool = False
    """Whether stage containers may use the network (off by default)."""
    timeout_s: float = 1800.0
    """Default stage time limit in seconds."""
    preload: tuple[str, ...] = ()
    """Modules a warm worker imports ahead of time (default: guessed from requirements)."""
    cold: bool = False
    """Require a fresh container per stage (no warm worker)."""

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)


@dataclass(frozen=True)
class StageSpec:
    name: str
    command: str
    """Shell command run in the project's snapshot (working directory)."""
    inputs: tuple[str, ...] = ()
    """Globs of project files the stage reads; they make up its cache key."""
    outputs: tuple[str, ...] = ()
    """Files the stage must write into its output folder; missing ones fail the stage."""
    depends_on: tuple[str, ...] = ()
    """Stages whose outputs this stage reads (mounted under $WB_UPSTREAM_DIR/<stage>)."""
    timeout_s: float | None = None
    """Time limit for this stage; defaults to environment.timeout_s."""
    memory: str | None = None
    """Memory limit for this stage; defaults to environment.memory."""


@dataclass(frozen=True)
class WatchSpec:
    enabled: bool = True
    """Whether `workbench watch` and the TUI watch this project by default."""
    debounce_ms: int = 300
    """Quiet period: a burst of file events becomes one change after this many ms of calm."""
    ignore: tuple[str, ...] = ()
    """Extra globs the watcher and snapshots ignore (VCS, editor and cache files always are)."""


@dataclass(frozen=True)
class PromotionSpec:
    """The promotion policy (`workbench promote`); checked by workbench.core.promotion."""

    tolerance: float = 0.0
    """How much worse than the production version (champion) a challenger's primary metric may
    be and still go to production, in the metric's own units (0.002 = 0.2 points of AUC)."""
    champion_challenger: bool = True
    """Refuse production to a version worse than the current production version (beyond the
    tolerance) on project.primary_metric."""
    require_reproducibility: bool = False
    """Production also needs a `reproduce` run of the version's run that wrote a byte-identical
    model file and got the same metrics (timings aside)."""
    auto_staging: bool = False
    """Promote a new version to staging by itself when its run passes every gate (used by
    drift retraining and watch mode)."""
    model_artifact_kind: str = "model"
    """The artifact kind (`wb.log_artifact(name, kind=...)`) that marks a run's model file;
    a successful run that logs one registers a model version."""


@dataclass(frozen=True)
class RetrainSpec:
    """When a checked batch triggers a retrain (`[drift.retrain]`); decided by
    workbench.core.drift_retrain.decide_retrain. A retrain never promotes by itself unless
    promotion.auto_staging says so."""

    on_drift: bool = False
    """Retrain when a batch is drifted (off by default: retraining is opted into)."""
    max_decay: float | None = None
    """Retrain when the production model's `decay_metric` on a labelled batch is worse than its
    recorded evaluation by more than this (in the metric's units); unset: decay never retrains."""
    decay_metric: str | None = None
    """The metric decay is judged on; defaults to project.primary_metric."""
    policy: str = "append"
    """`append`: train on the production model's training data plus the batch; `replace`: on
    the batch alone. Either way the project's data file is never written: the run's snapshot
    gets the combined file in its place."""
    cooldown_minutes: float = 60.0
    """No retrain within this many minutes of the previous one."""
    max_per_day: int = 3
    """At most this many retrains in any 24 hours (0: never)."""


@dataclass(frozen=True)
class DriftSpec:
    """How batches in data.incoming are compared with the training data (`[drift]`); see
    workbench.core.drift for the tests."""

    data_file: str | None = None
    """The data file batches are compared with and appended to (a path relative to the project);
    defaults to the one file data.paths matches."""
    small_reference_rows: int = 1000
    """References with at most this many rows use the tests (KS, chi-squared); larger ones the
    distances (Wasserstein, Jensen-Shannon), whose size does not shrink with sample size."""
    ks_pvalue: float = 0.05
    """Numbers, small reference: drifted when the Kolmogorov-Smirnov p-value is below this."""
    wasserstein: float = 0.1
    """Numbers, large reference: drifted when the Wasserstein distance, in reference standard
    deviations, is above this."""
    chi2_pvalue: float = 0.05
    """Categories, small reference: drifted when the chi-squared p-value is below this."""
    jensen_shannon: float = 0.1
    """Categories, large reference: drifted when the Jensen-Shannon distance (0..1) is above this."""
    psi: float = 0.25
    """Any column: drifted when its PSI is above this (under 0.1 stable, 0.1-0.25 moderate,
    above 0.25 major)."""
    psi_bins: int = 10
    """Quantile bins of the reference for a numeric column's PSI."""
    drift_share: float = 0.5
    """A batch is drifted when at least this share of its columns drifted."""
    ignore_columns: tuple[str, ...] = ()
    """Columns not compared (ids, timestamps)."""
    score: str | None = None
    """A command that scores a labelled batch with the production model (run like a stage:
    the batch at $WB_UPSTREAM_DIR/batch/$WB_BATCH_FILE, the model's stage output at
    $WB_UPSTREAM_DIR/<stage>) and logs metrics with wb.log_metrics; unset: decay not measured."""
    retrain: RetrainSpec = field(default_factory=RetrainSpec)


@dataclass(frozen=True)
class Manifest:
    name: str
    stages: dict[str, StageSpec]
    description: str = ""
    primary_metric: str | None = None
    """The metric trends and champion/challenger comparisons use."""
    primary_metric_goal: str = "maximize"
    """`maximize` or `minimize`."""
    data: DataSpec = field(default_factory=DataSpec)
    environment: EnvironmentSpec = field(default_factory=EnvironmentSpec)
    gates: tuple[Gate, ...] = ()
    watch: WatchSpec = field(default_factory=WatchSpec)
    promotion: PromotionSpec = field(default_factory=PromotionSpec)
    drift: DriftSpec = field(default_factory=DriftSpec)
    source: str = MANIFEST_NAME

    @property
    def ignores(self) -> tuple[str, ...]:
        return DEFAULT_IGNORES + self.watch.ignore

    def stage_order(self) -> list[str]:
        from workbench.core.planning import topological_order

        return topological_order({n: s.depends_on for n, s in self.stages.items()})


def parse_size(text: str) -> int:
    match = SIZE_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r} (expected e.g. 512m or 2g)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit])


class _Reader:
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
            value = float(value)
        if bool not in kinds and isinstance(value, bool) or not isinstance(value, kinds):
            expected = " or ".join(_type_name(k) for k in kinds)
            raise self.fail(name, f"must be {expected}, got {_type_name(type(value))} {value!r}")
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.get(name, (list, str), default=[])
        if isinstance(value, str):
            value = [value]
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise self.fail(name, f"must be a list of non-empty strings, got {item!r}")
        return tuple(value)

    def table_of(self, name: str) -> "_Reader":
        value = self.get(name, dict, default={})
        return _Reader(self.source, value, self.key(name))

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            expected = ", ".join(sorted(self.seen))
            raise self.fail(unknown[0], f"unknown key (expected one of: {expected})")


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(kind, kind.__name__)


def parse_manifest(text: str, source: str = MANIFEST_NAME) -> Manifest:
    """Parse and validate a manifest's text; `source` names the file in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(source, None, f"not valid TOML: {exc}") from None
    root = _Reader(source, raw, "")

    project = root.table_of("project")
    name = project.get("name", str, required=True)
    if not NAME_RE.match(name):
        raise project.fail("name", f"{name!r} must be letters, digits, '-', '_' or '.'")
    description = project.get("description", str, default="")
    primary = project.get("primary_metric", str)
    goal = project.get("primary_metric_goal", str, default="maximize")
    if goal not in ("maximize", "minimize"):
        raise project.fail("primary_metric_goal", f"must be 'maximize' or 'minimize', got {goal!r}")
    project.reject_unknown()

    data_table = root.table_of("data")
    data = DataSpec(
        paths=data_table.strings("paths"),
        target=data_table.get("target", str),
        sensitive=data_table.strings("sensitive"),
        incoming=data_table.get("incoming", str),
    )
    data_table.reject_unknown()

    env = _parse_environment(root.table_of("environment"))
    stages = _parse_stages(root, source)
    gates_table = root.table_of("gates")
    gates = []
    for metric, rule in gates_table.table.items():
        gates_table.seen.add(metric)
        if not isinstance(rule, str):
            raise gates_table.fail(metric, f"must be a string such as \">= 0.80\", got {rule!r}")
        try:
            gates.append(parse_gate(metric, rule))
        except ValueError as exc:
            raise gates_table.fail(metric, str(exc)) from None

    watch_table = root.table_of("watch")
    debounce = watch_table.get("debounce_ms", int, default=300)
    if debounce < 0 or debounce > 60_000:
        raise watch_table.fail("debounce_ms", f"must be between 0 and 60000, got {debounce}")
    watch = WatchSpec(
        enabled=watch_table.get("enabled", bool, default=True),
        debounce_ms=debounce,
        ignore=watch_table.strings("ignore"),
    )
    watch_table.reject_unknown()
    promotion = _parse_promotion(root.table_of("promotion"))
    drift = _parse_drift(root.table_of("drift"))
    root.reject_unknown()

    return Manifest(
        name=name, description=description, primary_metric=primary, primary_metric_goal=goal,
        data=data, environment=env, stages=stages, gates=tuple(gates), watch=watch, promotion=promotion,
        drift=drift, source=source,
    )


def _parse_promotion(table: _Reader) -> PromotionSpec:
    tolerance = table.get("tolerance", float, default=0.0)
    if tolerance < 0 or tolerance != tolerance:
        raise table.fail("tolerance", f"must be zero or positive (an allowed drop of the primary metric), got {tolerance}")
    kind = table.get("model_artifact_kind", str, default="model")
    if not kind.strip():
        raise table.fail("model_artifact_kind", "must not be empty")
    spec = PromotionSpec(
        tolerance=tolerance,
        champion_challenger=table.get("champion_challenger", bool, default=True),
        require_reproducibility=table.get("require_reproducibility", bool, default=False),
        auto_staging=table.get("auto_staging", bool, default=False),
        model_artifact_kind=kind,
    )
    table.reject_unknown()
    return spec


def _parse_drift(table: _Reader) -> DriftSpec:
    def number(key: str, default: float, low: float, high: float, low_open: bool = True) -> float:
        value = table.get(key, float, default=default)
        if value != value or value > high or (value <= low if low_open else value < low):
            bound = f"above {low:g}" if low_open else f"at least {low:g}"
            raise table.fail(key, f"must be {bound} and at most {high:g}, got {value}")
        return value

    def integer(key: str, default: int, low: int, high: int) -> int:
        value = table.get(key, int, default=default)
        if not low <= value <= high:
            raise table.fail(key, f"must be between {low} and {high}, got {value}")
        return value

    data_file = table.get("data_file", str)
    if data_file is not None and (not data_file.strip() or data_file.startswith("/") or ".." in data_file.split("/")):
        raise table.fail("data_file", f"{data_file!r} must be a path inside the project")
    score = table.get("score", str)
    if score is not None and not score.strip():
        raise table.fail("score", "must not be empty")
    spec = DriftSpec(
        data_file=data_file,
        small_reference_rows=integer("small_reference_rows", 1000, 0, 10**9),
        ks_pvalue=number("ks_pvalue", 0.05, 0.0, 1.0),
        wasserstein=number("wasserstein", 0.1, 0.0, math.inf),
        chi2_pvalue=number("chi2_pvalue", 0.05, 0.0, 1.0),
        jensen_shannon=number("jensen_shannon", 0.1, 0.0, 1.0),
        psi=number("psi", 0.25, 0.0, math.inf),
        psi_bins=integer("psi_bins", 10, 2, 100),
        drift_share=number("drift_share", 0.5, 0.0, 1.0),
        ignore_columns=table.strings("ignore_columns"),
        score=score,
        retrain=_parse_retrain(table.table_of("retrain")),
    )
    table.reject_unknown()
    return spec


def _parse_retrain(table: _Reader) -> RetrainSpec:
    max_decay = table.get("max_decay", float)
    if max_decay is not None and (max_decay != max_decay or max_decay < 0):
        raise table.fail("max_decay", f"must be zero or positive (an allowed drop of the metric), got {max_decay}")
    metric = table.get("decay_metric", str)
    if metric is not None and not metric.strip():
        raise table.fail("decay_metric", "must not be empty")
    policy = table.get("policy", str, default="append")
    if policy not in ("append", "replace"):
        raise table.fail("policy", f"must be 'append' or 'replace', got {policy!r}")
    cooldown = table.get("cooldown_minutes", float, default=60.0)
    if cooldown != cooldown or cooldown < 0:
        raise table.fail("cooldown_minutes", f"must be zero or positive, got {cooldown}")
    per_day = table.get("max_per_day", int, default=3)
    if per_day < 0:
        raise table.fail("max_per_day", f"must be zero or positive, got {per_day}")
    spec = RetrainSpec(on_drift=table.get("on_drift", bool, default=False), max_decay=max_decay,
                       decay_metric=metric, policy=policy, cooldown_minutes=cooldown, max_per_day=per_day)
    table.reject_unknown()
    return spec


def _parse_environment(table: _Reader) -> EnvironmentSpec:
    memory = table.get("memory", str, default="2g")
    _check_size(table, "memory", memory)
    cpus = table.get("cpus", float, default=1.0)
    if cpus <= 0:
        raise table.fail("cpus", f"must be positive, got {cpus}")
    timeout = table.get("timeout_s", float, default=1800.0)
    if timeout <= 0:
        raise table.fail("timeout_s", f"must be positive, got {timeout}")
    spec = EnvironmentSpec(
        base_image=table.get("base_image", str),
        requirements=table.get("requirements", str),
        memory=memory,
        cpus=cpus,
        network=table.get("network", bool, default=False),
        timeout_s=timeout,
        preload=table.strings("preload"),
        cold=table.get("cold", bool, default=False),
    )
    table.reject_unknown()
    return spec


def _check_size(table: _Reader, key: str, value: str) -> None:
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise table.fail(key, str(exc)) from None
    if size < 6 * 1024**2:
        raise table.fail(key, f"{value!r} is below Docker's minimum of 6m")


def _parse_stages(root: _Reader, source: str) -> dict[str, StageSpec]:
    stages_table = root.table_of("stages")
    if not stages_table.table:
        raise root.fail("stages", "at least one stage is required, e.g. [stages.train]")
    stages: dict[str, StageSpec] = {}
    for name in stages_table.table:
        if not NAME_RE.match(name):
            raise stages_table.fail(name, "a stage name must be letters, digits, '-', '_' or '.'")
        table = stages_table.table_of(name)
        command = table.get("command", str, required=True)
        if not command.strip():
            raise table.fail("command", "must not be empty")
        memory = table.get("memory", str)
        if memory is not None:
            _check_size(table, "memory", memory)
        timeout = table.get("timeout_s", float)
        if timeout is not None and timeout <= 0:
            raise table.fail("timeout_s", f"must be positive, got {timeout}")
        outputs = table.strings("outputs")
        for out in outputs:
            if out.startswith("/") or ".." in out.split("/"):
                raise table.fail("outputs", f"{out!r} must be a path inside the stage's output folder")
        stages[name] = StageSpec(
            name=name, command=command, inputs=table.strings("inputs"), outputs=outputs,
            depends_on=table.strings("depends_on"), timeout_s=timeout, memory=memory,
        )
        table.reject_unknown()
    for stage in stages.values():
        for dep in stage.depends_on:
            if dep not in stages:
                raise ManifestError(source, f"stages.{stage.name}.depends_on",
                                    f"unknown stage {dep!r} (stages: {', '.join(stages)})")
    from workbench.core.planning import CycleError, topological_order

    try:
        topological_order({n: s.depends_on for n, s in stages.items()})
    except CycleError as exc:
        raise ManifestError(source, "stages", str(exc)) from None
    return stages

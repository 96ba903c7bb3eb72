"""The project manifest, `workbench.toml`: parsed and validated in one place.

Every field is documented here; docs/manifest.md, the manifest reference, is written from this file.
Validation is strict (an unknown key is an error) because a typo such as `imputs` would
otherwise silently make a stage's cache key ignore its inputs. Every value is range-checked
here too (workbench.core.manifest_reader): paths stay inside the project, numbers are finite
and within what Docker and the clock take, so no bad value reaches an adapter.
"""

from __future__ import annotations

import math
import re
import sys
import tomllib
from dataclasses import dataclass, field

from workbench.core.errors import ManifestError
from workbench.core.gates import Gate, parse_gate
from workbench.core.manifest_reader import TableReader as _Reader
from workbench.core.manifest_reader import parse_size, path_problem
from workbench.core.notify_config import NotifySpec, parse_notify_table
from workbench.core.params_keys import PARAMS_SUFFIXES, ParamRef, parse_param_ref
from workbench.core.stage_command import command_scripts
from workbench.core.sweep_spec import SweepSpec, parse_sweep_table

MANIFEST_NAME = "workbench.toml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NAME = 100
"""Project and stage names end up in container names, labels and file names."""
MAX_CPUS = 1024.0
"""More CPUs than any one machine has; the engine refuses more than its own at run time."""
MIN_CPUS = 0.01
"""Docker's smallest CPU share."""
MAX_JOBS = 64
"""Stages of one run at once: more would only queue on any machine this runs on."""
MAX_TIMEOUT_S = 30 * 24 * 3600.0
"""30 days: past this a time limit is a typo, and timers overflow near 1e9 s."""
MAX_COOLDOWN_MINUTES = 365 * 24 * 60.0
EVALUATION_TASKS = ("auto", "classification", "regression")
PREDICTIONS_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz")
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
    """Data files (globs, relative to the project and inside it) whose fingerprint, schema and
    column statistics are recorded in the lineage of every run."""
    target: str | None = None
    """The label column."""
    sensitive: tuple[str, ...] = ()
    """Columns that fairness metrics are computed over (e.g. `female`)."""
    incoming: str | None = None
    """Folder where new batches of production-like data land (drift checks); inside the project."""


@dataclass(frozen=True)
class EnvironmentSpec:
    base_image: str | None = None
    """Docker base image; unset means $WORKBENCH_BASE_IMAGE, then `python:3.11-slim`, then the
    offline image made by `workbench env bootstrap`."""
    requirements: str | None = None
    """A pip requirements file, relative to the project and inside it, installed into the image once."""
    memory: str = "2g"
    """Memory limit per stage container, e.g. `512m`, `2g`: from Docker's minimum, 6m, to 1t."""
    cpus: float = 1.0
    """CPU limit per stage container (fractional cores), from 0.01 to 1024; the engine refuses
    more than its machine has, and the stage fails saying so."""
    network: bool = False
    """Whether stage containers may use the network (off by default)."""
    timeout_s: float = 1800.0
    """Default stage time limit in seconds: above 0, at most 30 days."""
    preload: tuple[str, ...] = ()
    """Modules a warm worker imports ahead of time, as dotted module names (default: guessed
    from requirements)."""
    cold: bool = False
    """Require a fresh container per stage (no warm worker)."""
    jobs: int | None = None
    """How many of the project's stages may run at once (1 to 64; `workbench run --jobs`
    overrides it); unset: the machine's CPU count divided by the widest stage's `cpus`."""

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)


@dataclass(frozen=True)
class StageSpec:
    name: str
    command: str
    """Shell command run in the project's snapshot (working directory). The scripts it runs
    (`python stages/train.py`) must be inside the project; a missing one fails the stage before
    it starts, naming this key."""
    inputs: tuple[str, ...] = ()
    """Globs of project files the stage reads (inside the project); they make up its cache key."""
    outputs: tuple[str, ...] = ()
    """Files the stage must write into its output folder; missing ones fail the stage."""
    depends_on: tuple[str, ...] = ()
    """Stages whose outputs this stage reads (mounted under $WB_UPSTREAM_DIR/<stage>)."""
    timeout_s: float | None = None
    """Time limit for this stage (above 0, at most 30 days); defaults to environment.timeout_s."""
    memory: str | None = None
    """Memory limit for this stage (6m to 1t); defaults to environment.memory."""
    cpus: float | None = None
    """CPU limit for this stage (0.01 to 1024); defaults to environment.cpus. Parallel stages
    share the run's CPU budget by it."""
    gpus: int = 0
    """GPUs the stage needs (0 to 64): Docker device requests for that many GPUs, and on a
    cluster a `gpus` resource, so the stage waits for a worker that declares them."""
    predictions: str | None = None
    """A predictions file the stage writes into its output folder (`predictions.parquet`, or a
    .csv): one row per evaluated example with the label (named as data.target, or `label`), a
    `score` (probability of the positive class) or a `prediction`, an optional `id`, and the
    data.sensitive columns (or an `id` to join them from the data file). After the stage the
    workbench computes its evaluation from it (workbench.core.evaluation) and records the
    metrics; a missing or malformed file fails the stage."""
    params: tuple[ParamRef, ...] = ()
    """Keys of a params file the stage reads (`["train", "split.seed", "other.yaml:model.lr"]`):
    its cache key takes their values, not the whole file's hash (workbench.core.params_keys).
    A missing key fails the stage before it runs, naming the key and the file. A params file
    the stage also lists in `inputs` keeps the whole-file behaviour: any edit reruns it."""


@dataclass(frozen=True)
class EvaluationSpec:
    """How the workbench evaluates a stage's predictions file (`[evaluation]`)."""

    task: str = "auto"
    """`classification` (binary), `regression`, or `auto`: binary when the file has a `score`
    column or the label has two values, regression otherwise."""
    threshold: float = 0.5
    """Binary classification: a row is predicted positive when its score is at least this
    (0 to 1); the confusion matrix, accuracy, precision, recall, F1 and the per-group rates
    are taken at it."""
    positive: str | None = None
    """The label value of the positive class, as text (e.g. `Yes`). Unset: the larger of two
    numbers (1, true), or the one of yes/true/1/positive among two strings."""


SERVING_CONTRACT_POLICIES = ("report", "reject")
"""`[serving] contract`: a request that breaks the contract is answered and reported, or refused."""


@dataclass(frozen=True)
class ServingSpec:
    """How `workbench serve` predicts with a released model (`[serving]`); see docs/serving.md."""

    predict: str | None = None
    """`FILE:FUNCTION` relative to the project, e.g. `stages/predict.py:predict`, called as
    `function(frame, model)` (`model` is what the file's optional `load(model_path)` returned,
    else the model file's path); unset: a LightGBM model file is served by LightGBM itself."""
    canary: float = 0.0
    """The share of production's traffic (0 to 1) answered by staging's model, sticky per
    request key (X-Request-Key, else the request id); read when `workbench serve` starts."""
    shadow: bool = False
    """Staging's model also scores every request production answers, after the answer is sent
    (logged with role shadow, never returned)."""
    log_requests: bool = True
    """Keep a traffic log of every request (inputs, outputs, version, status, latency) in
    `.workbench/serving/<project>/traffic/<alias>/`, and take `POST /feedback` labels there."""
    segment_rows: int = 5_000
    """A traffic log segment is closed (made readable) after this many lines (1 to 1,000,000)..."""
    segment_seconds: float = 60.0
    """...or this many seconds after its first line (1 to 86,400), whichever comes first."""
    batch_rows: int = 10_000
    """Production's champion traffic becomes a drift batch once this many rows (1 to 10,000,000)
    were served since the last batch (services/serving_monitor.py)."""
    batch_minutes: float = 60.0
    """... or once this many minutes (0.1 to 10,080) passed since the last batch with some rows."""
    log_max_mb: int = 256
    """The project's traffic log (requests and feedback, every alias) is kept under this many MiB
    (1 to 1,000,000): the oldest closed segments past it are deleted."""
    contract: str = "report"
    """What the server does with a request that breaks the data contract of the version answering
    it (its release's contract.json): `report` answers it and says so (response, header,
    /metrics, traffic log), `reject` refuses it with a 422 naming row, column, rule and value."""


@dataclass(frozen=True)
class GcSpec:
    """What `workbench gc` keeps of the project's history (`[gc]`); see docs/gc.md."""

    keep_runs: int = 50
    """The newest runs of the project kept (0 to 1,000,000); older runs are deleted by
    `workbench gc` unless something still needs them: a version in staging, production or the
    audit trail, a kept run that reused their outputs, a drift batch's record. `--keep` overrides."""


@dataclass(frozen=True)
class WatchSpec:
    enabled: bool = True
    """Whether `workbench watch` and the TUI watch this project by default."""
    debounce_ms: int = 300
    """Quiet period: a burst of file events becomes one change after this many ms of calm
    (0 to 60000)."""
    ignore: tuple[str, ...] = ()
    """Extra globs (inside the project) the watcher and snapshots ignore (VCS, editor and cache
    files always are)."""


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
    drift_share: float = 0.2
    """A batch is drifted when at least this share of its compared columns drifted, or at
    least drift_columns of them, whichever is fewer columns."""
    drift_columns: int = 3
    """A batch is drifted when at least this many of its columns drifted, however wide the
    table (on 53 columns, a share alone would need 11)."""
    ignore_columns: tuple[str, ...] = ()
    """Columns not compared (ids, timestamps)."""
    score: str | None = None
    """A command that scores a labelled batch with the production model (run like a stage:
    the batch at $WB_UPSTREAM_DIR/batch/$WB_BATCH_FILE, the model's stage output at
    $WB_UPSTREAM_DIR/<stage>) and logs metrics with wb.log_metrics; unset: decay not measured."""
    retrain: RetrainSpec = field(default_factory=RetrainSpec)
    verdict: str = "weighted"
    """How a batch's verdict weighs its drifted columns (workbench.core.drift_verdict):
    `weighted` by the production model's feature importance (a severe shift of an important
    feature, or drifted columns carrying drift_importance, drift the batch; the share rule
    still counts), or `share`, the column count alone (the rule before weights)."""
    important_feature: float = 0.05
    """weighted: a feature holding at least this share of the model's importance is important;
    a severe shift of it (PSI >= 2 x psi, or its mean moved a standard deviation) drifts the
    batch on its own."""
    drift_importance: float = 0.3
    """weighted: the batch is drifted when its drifted columns together carry at least this
    share of the model's importance."""


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
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    gc: GcSpec = field(default_factory=GcSpec)
    serving: ServingSpec = field(default_factory=ServingSpec)
    external_links: tuple[str, ...] = ()
    """`[project] external_links`: project symlinks (paths relative to the project, e.g.
    `data/big.parquet` or a folder `data/lake`) that may lead outside the project, to data kept
    elsewhere. Snapshots copy their targets' content. Any other symlink that leaves the project
    fails the run before it starts, naming the link: following one by accident would copy
    whatever it points at (`/etc/shadow`, another project's data) into the run."""
    sweep: SweepSpec = field(default_factory=SweepSpec)
    """`[sweep]`: what `workbench sweep PROJECT` searches by default (workbench.core.sweep_spec)."""
    notify: NotifySpec = field(default_factory=NotifySpec)
    """`[notify]`: webhooks for this project's alerts and thresholds for its served endpoints
    (workbench.core.notify_config; docs/alerts.md)."""
    params_file: str | None = None
    """`[project] params`: the params file a stage's bare keys (`params = ["train"]`) read; unset:
    the one of params.toml, params.yaml, params.yml, params.json at the project's top."""
    source: str = MANIFEST_NAME

    @property
    def ignores(self) -> tuple[str, ...]:
        return DEFAULT_IGNORES + self.watch.ignore

    def stage_order(self) -> list[str]:
        from workbench.core.planning import topological_order

        return topological_order({n: s.depends_on for n, s in self.stages.items()})


def parse_manifest(text: str, source: str = MANIFEST_NAME) -> Manifest:
    """Parse and validate a manifest's text; `source` names the file in error messages.

    Whatever the text holds, the only exception is a ManifestError: a manifest that cannot be
    read is one project's problem, never a crash of a listing of every project."""
    root = _Reader(source, _read_toml(text, source), "")

    project = root.table_of("project")
    name = project.get("name", str, required=True)
    _check_name(project, "name", name)
    description = project.get("description", str, default="")
    primary = project.text("primary_metric")
    goal = project.get("primary_metric_goal", str, default="maximize")
    if goal not in ("maximize", "minimize"):
        raise project.fail("primary_metric_goal", f"must be 'maximize' or 'minimize', got {goal!r}")
    external_links = _external_links(project)
    params_file = project.path("params")
    if params_file is not None and not params_file.lower().endswith(PARAMS_SUFFIXES):
        raise project.fail("params", f"{params_file!r} must be a TOML, YAML or JSON file "
                                     f"(ending in {', '.join(PARAMS_SUFFIXES)})")
    project.reject_unknown()

    data_table = root.table_of("data")
    data = DataSpec(
        paths=data_table.paths("paths"),
        target=data_table.text("target"),
        sensitive=data_table.strings("sensitive"),
        incoming=data_table.path("incoming"),
    )
    data_table.reject_unknown()

    env = _parse_environment(root.table_of("environment"))
    stages = _parse_stages(root, source)
    gates = _parse_gates(root.table_of("gates"))

    watch_table = root.table_of("watch")
    watch = WatchSpec(
        enabled=watch_table.get("enabled", bool, default=True),
        debounce_ms=watch_table.integer("debounce_ms", 300, 0, 60_000),
        ignore=watch_table.paths("ignore"),
    )
    watch_table.reject_unknown()
    promotion = _parse_promotion(root.table_of("promotion"))
    drift = _parse_drift(root.table_of("drift"))
    evaluation = _parse_evaluation(root.table_of("evaluation"))
    gc_table = root.table_of("gc")
    gc = GcSpec(keep_runs=gc_table.integer("keep_runs", GcSpec.keep_runs, 0, 1_000_000))
    gc_table.reject_unknown()
    serving = _parse_serving(root.table_of("serving"))
    sweep = parse_sweep_table(root.table_of("sweep"))
    notify = parse_notify_table(root.table_of("notify"))
    root.reject_unknown()

    return Manifest(
        name=name, description=description, primary_metric=primary, primary_metric_goal=goal,
        data=data, environment=env, stages=stages, gates=gates, watch=watch, promotion=promotion,
        evaluation=evaluation, gc=gc,
        drift=drift, external_links=external_links, params_file=params_file, source=source, serving=serving,
        sweep=sweep, notify=notify,
    )


def _parse_serving(table: _Reader) -> ServingSpec:
    spec = table.text("predict")
    if spec is not None:
        path, colon, function = spec.partition(":")
        if not colon or not path.endswith(".py") or not function.isidentifier():
            raise table.fail("predict", f"must be FILE.py:FUNCTION (e.g. 'stages/predict.py:predict'), got {spec!r}")
        table.check_path("predict", path, "the project")
    canary = table.number("canary", 0.0, 0.0, 1.0)
    shadow = table.get("shadow", bool, default=False)
    log_requests = table.get("log_requests", bool, default=ServingSpec.log_requests)
    segment_rows = table.integer("segment_rows", ServingSpec.segment_rows, 1, 1_000_000)
    segment_seconds = table.number("segment_seconds", ServingSpec.segment_seconds, 1.0, 86_400.0, unit=" seconds")
    batch_rows = table.integer("batch_rows", 10_000, 1, 10_000_000)
    batch_minutes = table.number("batch_minutes", 60.0, 0.1, 10_080.0)
    log_max_mb = table.integer("log_max_mb", 256, 1, 1_000_000)
    contract = table.get("contract", str, default=ServingSpec.contract)
    if contract not in SERVING_CONTRACT_POLICIES:
        raise table.fail("contract", f"must be one of {', '.join(SERVING_CONTRACT_POLICIES)} (what the server does "
                                     f"with a request that breaks the data contract), got {contract!r}")
    table.reject_unknown()
    return ServingSpec(predict=spec, canary=canary, shadow=shadow, log_requests=log_requests,
                       segment_rows=segment_rows, segment_seconds=segment_seconds,
                       batch_rows=batch_rows, batch_minutes=batch_minutes, log_max_mb=log_max_mb,
                       contract=contract)


def _external_links(project: _Reader) -> tuple[str, ...]:
    links = []
    for value in project.strings("external_links"):
        link = value.strip().removeprefix("./").rstrip("/")
        if link.startswith("/") or ".." in link.split("/") or not link:
            raise project.fail("external_links", f"{value!r} must be the path of a symlink inside the project, "
                                                 "relative to its folder")
        links.append(link)
    return tuple(links)


def _read_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(source, None, f"not valid TOML: {exc}") from None
    except RecursionError:
        raise ManifestError(source, None, "cannot be read: arrays or tables nested too deeply "
                                          "(hundreds of levels); a manifest needs two or three") from None
    except MemoryError:
        raise ManifestError(source, None, "cannot be read: too large to hold in memory") from None
    except ValueError as exc:  # Python refuses integers of thousands of digits
        if "digits" in str(exc):
            limit = sys.get_int_max_str_digits()
            raise ManifestError(source, None, f"cannot be read: a number in it is too large "
                                              f"(more than {limit} digits)") from None
        raise ManifestError(source, None, f"cannot be read: {exc}") from None


def _check_name(table: _Reader, key: str, name: str) -> None:
    if not NAME_RE.match(name):
        raise table.fail(key, f"{name!r} must be letters, digits, '-', '_' or '.'")
    if len(name) > MAX_NAME:
        raise table.fail(key, f"must be at most {MAX_NAME} characters, got {len(name)}")


def _parse_gates(table: _Reader) -> tuple[Gate, ...]:
    gates = []
    for metric, rule in table.table.items():
        table.seen.add(metric)
        if not metric.strip():
            raise table.fail(metric, "a gate needs a metric name, e.g. auc = \">= 0.80\"")
        if not isinstance(rule, str):
            raise table.fail(metric, f"must be a string such as \">= 0.80\", got {rule!r}")
        try:
            gate = parse_gate(metric, rule)
        except ValueError as exc:
            raise table.fail(metric, str(exc)) from None
        if not math.isfinite(gate.threshold):
            raise table.fail(metric, f"{rule!r}: the threshold must be a finite number")
        gates.append(gate)
    return tuple(gates)


def _parse_promotion(table: _Reader) -> PromotionSpec:
    tolerance = table.get("tolerance", float, default=0.0)
    if not math.isfinite(tolerance):
        raise table.fail("tolerance", f"must be a finite number, got {tolerance}")
    if tolerance < 0:
        raise table.fail("tolerance", f"must be zero or positive (an allowed drop of the primary metric), got {tolerance}")
    spec = PromotionSpec(
        tolerance=tolerance,
        champion_challenger=table.get("champion_challenger", bool, default=True),
        require_reproducibility=table.get("require_reproducibility", bool, default=False),
        auto_staging=table.get("auto_staging", bool, default=False),
        model_artifact_kind=table.text("model_artifact_kind", default="model"),
    )
    table.reject_unknown()
    return spec


def _parse_drift(table: _Reader) -> DriftSpec:
    def number(key: str, default: float, high: float) -> float:
        return table.number(key, default, 0.0, high, low_open=True)

    score = table.text("score")
    if score is not None:
        _check_command_scripts(table, "score", score)
    spec = DriftSpec(
        data_file=table.path("data_file"),
        small_reference_rows=table.integer("small_reference_rows", 1000, 0, 10**9),
        ks_pvalue=number("ks_pvalue", 0.05, 1.0),
        wasserstein=number("wasserstein", 0.1, 1e6),
        chi2_pvalue=number("chi2_pvalue", 0.05, 1.0),
        jensen_shannon=number("jensen_shannon", 0.1, 1.0),
        psi=number("psi", 0.25, 1e6),
        psi_bins=table.integer("psi_bins", 10, 2, 100),
        drift_share=number("drift_share", 0.2, 1.0),
        drift_columns=table.integer("drift_columns", 3, 1, 10**6),
        ignore_columns=table.strings("ignore_columns"),
        score=score,
        retrain=_parse_retrain(table.table_of("retrain")),
        verdict=_verdict_rule(table),
        important_feature=number("important_feature", 0.05, 1.0),
        drift_importance=number("drift_importance", 0.3, 1.0),
    )
    table.reject_unknown()
    return spec


DRIFT_VERDICTS = ("weighted", "share")
"""`[drift] verdict` (workbench.core.drift_verdict.WEIGHTED and SHARE)."""


def _verdict_rule(table: _Reader) -> str:
    verdict = table.get("verdict", str, default="weighted")
    if verdict not in DRIFT_VERDICTS:
        raise table.fail("verdict", f"must be 'weighted' (by the model's feature importance) or 'share' (the share "
                                    f"of drifted columns alone), got {verdict!r}")
    return verdict


def _parse_retrain(table: _Reader) -> RetrainSpec:
    max_decay = _non_negative(table, "max_decay", None, 1e6, "an allowed drop of the metric")
    policy = table.get("policy", str, default="append")
    if policy not in ("append", "replace"):
        raise table.fail("policy", f"must be 'append' or 'replace', got {policy!r}")
    spec = RetrainSpec(
        on_drift=table.get("on_drift", bool, default=False), max_decay=max_decay,
        decay_metric=table.text("decay_metric"), policy=policy,
        cooldown_minutes=_non_negative(table, "cooldown_minutes", 60.0, MAX_COOLDOWN_MINUTES, "a year at most"),
        max_per_day=table.integer("max_per_day", 3, 0, 10_000),
    )
    table.reject_unknown()
    return spec


def _non_negative(table: _Reader, key: str, default: float | None, high: float, what: str) -> float | None:
    value = table.get(key, float, default=default)
    if value is None:
        return None
    if not math.isfinite(value):
        raise table.fail(key, f"must be a finite number, got {value}")
    if value < 0:
        raise table.fail(key, f"must be zero or positive ({what}), got {value:g}")
    if value > high:
        raise table.fail(key, f"must be at most {high:g} ({what}), got {value:g}")
    return value


def _parse_evaluation(table: _Reader) -> EvaluationSpec:
    task = table.get("task", str, default="auto")
    if task not in EVALUATION_TASKS:
        raise table.fail("task", f"must be one of {', '.join(EVALUATION_TASKS)}, got {task!r}")
    spec = EvaluationSpec(task=task, threshold=table.number("threshold", 0.5, 0.0, 1.0),
                          positive=table.text("positive"))
    table.reject_unknown()
    return spec


def _predictions_file(table: _Reader) -> str | None:
    value = table.path("predictions", inside="the stage's output folder")
    if value is not None and not value.lower().endswith(PREDICTIONS_SUFFIXES):
        raise table.fail("predictions", f"{value!r} must be a Parquet or CSV file "
                                        f"(ending in {', '.join(PREDICTIONS_SUFFIXES)})")
    return value


def _timeout(table: _Reader, default: float | None) -> float | None:
    return table.number("timeout_s", default, 0.0, MAX_TIMEOUT_S, low_open=True, unit=" (30 days)")


def _parse_environment(table: _Reader) -> EnvironmentSpec:
    spec = EnvironmentSpec(
        base_image=table.image("base_image"),
        requirements=table.path("requirements"),
        memory=table.size("memory", "2g"),
        cpus=table.number("cpus", 1.0, MIN_CPUS, MAX_CPUS),
        network=table.get("network", bool, default=False),
        timeout_s=_timeout(table, 1800.0),
        preload=table.module_names("preload"),
        cold=table.get("cold", bool, default=False),
        jobs=_jobs(table),
    )
    table.reject_unknown()
    return spec


MAX_GPUS = 64


def _jobs(table: _Reader) -> int | None:
    if table.get("jobs", int, default=None) is None:
        return None
    return table.integer("jobs", 1, 1, MAX_JOBS)


def _check_command_scripts(table: _Reader, key: str, command: str) -> None:
    """The scripts a command runs (`python stages/train.py`) are files of the project's
    snapshot: one outside it would run code that no lineage records."""
    for script in command_scripts(command):
        problem = path_problem(script)
        if problem:
            raise table.fail(key, f"{problem}: the run's snapshot holds only the project's files")


def _param_refs(table: _Reader) -> tuple[ParamRef, ...]:
    """A stage's `params`: keys of a params file, each checked (syntax, a file inside the project)."""
    refs = []
    for value in table.strings("params"):
        try:
            ref = parse_param_ref(value)
        except ValueError as exc:
            raise table.fail("params", str(exc)) from None
        if ref.file is not None:
            table.check_path("params", ref.file)
        refs.append(ref)
    if len(set(refs)) < len(refs):
        twice = next(r for r in refs if refs.count(r) > 1)
        raise table.fail("params", f"{twice.key!r} is listed twice")
    return tuple(refs)


def _parse_stages(root: _Reader, source: str) -> dict[str, StageSpec]:
    stages_table = root.table_of("stages")
    if not stages_table.table:
        raise root.fail("stages", "at least one stage is required, e.g. [stages.train]")
    stages: dict[str, StageSpec] = {}
    for name in stages_table.table:
        if not NAME_RE.match(name):
            raise stages_table.fail(name, "a stage name must be letters, digits, '-', '_' or '.'")
        if len(name) > MAX_NAME:
            raise stages_table.fail(name, f"a stage name must be at most {MAX_NAME} characters, got {len(name)}")
        table = stages_table.table_of(name)
        command = table.text("command", required=True)
        _check_command_scripts(table, "command", command)
        stages[name] = StageSpec(
            name=name, command=command, inputs=table.paths("inputs"),
            outputs=table.paths("outputs", inside="the stage's output folder"),
            depends_on=table.strings("depends_on"), timeout_s=_timeout(table, None),
            predictions=_predictions_file(table),
            memory=table.size("memory", None), params=_param_refs(table),
            cpus=table.number("cpus", None, MIN_CPUS, MAX_CPUS),
            gpus=table.integer("gpus", 0, 0, MAX_GPUS),
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

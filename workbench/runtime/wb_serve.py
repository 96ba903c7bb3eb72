"""The model server that runs inside a project's serving container (`workbench serve`).

Shipped like wb.py and wb_worker.py: the host mounts this folder read-only at /wb/lib and runs
`python /wb/lib/wb_serve.py ...` in an image built FROM the project's own environment image
plus FastAPI and uvicorn (adapters/serving_image.py). It imports nothing of the workbench.

What it serves is an alias's deploy pointer (adapters/deploy.py), mounted read-only:

    /wb/deploy/<alias> -> releases/<version>-.../{model.txt, metadata.json}

A `Loaded` model is the triple (version, predictor, since), built completely (model read, the
project's `load` run, one warm-up prediction) before anything can see it. Requests read the
current `Loaded` once and use only it, so a response is computed by exactly one version and says
which, and GET /metrics counts requests, statuses, latency and rows per version (Prometheus
text format). A poller thread resolves the alias every `poll_s` seconds; when it points at another
release the new model is loaded beside the old and swapped in by one reference assignment under
a lock (hot swap: no request fails, none sees a half-loaded model). A release that fails to load
leaves the old model serving and is reported in /health.

Canary and shadow (`--challenger staging --canary SHARE --shadow`, production's server only): a
second holder follows the challenger alias with the same hot swap, and CanaryRouter sends the
routing keys (X-Request-Key, else the request id) whose sha256 point in [0, 1) is below SHARE to
the challenger, so a caller sticks to one version across requests and restarts. With shadow,
each request the champion answered is scored again by the challenger in a background task after
the answer is sent; its Served (role shadow) reaches the listeners, never the caller. A
challenger with no model, or serving the champion's own version, stands aside.

Requests are checked against the schema of the training data (`--schema`, a JSON file the host
writes: column names and kinds, the target left out): unknown or missing columns, values of the
wrong type, bad JSON and oversized bodies get a 4xx naming the problem, and any other error of
the project's predict function a 422 naming it, never a 500. Each request is also held to the
per-row rules of the answering version's data contract (its release's contract.json: type,
nullable, min, max, categories per column), swapped with the model: `--contract report` answers
a breaking request and says so (body "contract", header X-Contract, /metrics, the traffic log),
`--contract reject` refuses it with a 422 naming row, column, rule and value.

With `--traffic DIR` every request's outcome is also appended to a traffic log in DIR, and
POST /feedback takes true labels by request id into the same folder (wb_traffic.py: the
on-disk format, and what a host reading that folder must beware of).
"""


import argparse
import csv
import dataclasses
import hashlib
import importlib.util
import io
import json
import math
import os
import re
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date as date_type, datetime, timezone
from typing import Any, Callable

DEFAULT_MAX_BODY = 8 * 1024 * 1024
DEFAULT_MAX_ROWS = 100_000
NUMBER, STRING, BOOLEAN = "number", "string", "boolean"
RELEASE_SCHEMA = "schema.json"
RELEASE_CONTRACT = "contract.json"
CONTRACT_POLICIES = ("report", "reject")
LISTED_BREACHES = 100
"""A response or traffic log line lists this many contract breaches at most (all are counted)."""
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestProblem(Exception):
    """A request the server refuses, with the HTTP status and a message naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- schema ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schema:
    columns: dict[str, str]
    """Every input column the training data has (target excluded), by kind: number/string/boolean."""
    required: tuple[str, ...]
    """Columns a request must hold (the model's features when known, else every column)."""

    @staticmethod
    def load(path: str | None) -> "Schema | None":
        if not path:
            return None
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        columns = dict(data["columns"])
        return Schema(columns, tuple(data.get("required") or columns))

    def with_required(self, features: list[str] | None) -> "Schema":
        if not features or not set(features) <= set(self.columns):
            return self
        return Schema(self.columns, tuple(features))


def check_records(records: list[dict], schema: Schema | None) -> None:
    """Raise a 422 naming the first unknown column, missing column or mistyped value."""
    if schema is None:
        return
    for index, record in enumerate(records):
        unknown = [name for name in record if name not in schema.columns]
        if unknown:
            raise RequestProblem(422, f"record {index}: unknown column(s) {', '.join(sorted(unknown))} "
                                      f"(the training data has: {', '.join(schema.columns)})")
        missing = [name for name in schema.required if name not in record]
        if missing:
            raise RequestProblem(422, f"record {index}: missing column(s) {', '.join(missing)}")
        for name, value in record.items():
            if value is None:
                continue  # a missing value: the model decides (LightGBM handles NaN)
            kind = schema.columns[name]
            if kind == NUMBER and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise RequestProblem(422, f"record {index}: column {name!r} must be a number, got {value!r}")
            if kind == STRING and not isinstance(value, str):
                raise RequestProblem(422, f"record {index}: column {name!r} must be a string, got {value!r}")
            if kind == BOOLEAN and not isinstance(value, bool):
                raise RequestProblem(422, f"record {index}: column {name!r} must be true or false, got {value!r}")


# -- the data contract -------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnRules:
    name: str
    type: str | None
    nullable: bool
    low: Any
    high: Any
    categories: frozenset | None
    severity: str


def _parse_time(kind: str, value: Any) -> Any:
    """A date/timestamp column's value (ISO text) as a comparable object; ValueError if it is not one."""
    if not isinstance(value, str):
        raise ValueError(value)
    return date_type.fromisoformat(value) if kind == "date" else datetime.fromisoformat(value)


def _fits_type(kind: str | None, value: Any) -> bool:
    if kind is None:
        return True
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or \
            (isinstance(value, float) and value.is_integer())
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    try:
        _parse_time(kind, value)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class ServedContract:
    """The per-row rules of the data contract this version was trained under (the release's
    contract.json, written at promotion by workbench.core.served_contract): type, nullable,
    min, max and categories per column. Batch-level rules (unique, row counts, SQL rules) are not
    in it: one request cannot break them."""

    source: str
    columns: tuple[ColumnRules, ...]

    @staticmethod
    def load(path: str) -> "ServedContract":
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        columns = []
        for name, rules in data["columns"].items():
            kind = rules.get("type")
            low, high = rules.get("min"), rules.get("max")
            if kind in ("date", "timestamp"):
                low = None if low is None else _parse_time(kind, low)
                high = None if high is None else _parse_time(kind, high)
            categories = rules.get("categories")
            columns.append(ColumnRules(name, kind, bool(rules.get("nullable", True)), low, high,
                                       frozenset(categories) if categories is not None else None,
                                       rules.get("severity", "error")))
        return ServedContract(str(data.get("source", RELEASE_CONTRACT)), tuple(columns))

    def check(self, records: list[dict]) -> list[dict]:
        """Every breach of the request's records: {"row", "column", "rule", "value", "severity"},
        at most one per value (a value of the wrong type is not also judged by its range). Only
        the columns a record holds are judged (a missing one is the schema check's business)."""
        breaches = []
        for row, record in enumerate(records):
            for rules in self.columns:
                if rules.name not in record:
                    continue
                value = record[rules.name]
                rule = self._broken(rules, value)
                if rule is not None:
                    if isinstance(value, float) and not math.isfinite(value):
                        value = None if value != value else str(value)  # strict JSON holds no NaN or inf
                    breaches.append({"row": row, "column": rules.name, "rule": rule, "value": value,
                                     "severity": rules.severity})
        return breaches

    @staticmethod
    def _broken(rules: ColumnRules, value: Any) -> str | None:
        if value is None or (isinstance(value, float) and value != value):
            return None if rules.nullable else "nullable"
        if not _fits_type(rules.type, value):
            return "type"
        if rules.categories is not None:
            try:
                if value not in rules.categories:
                    return "categories"
            except TypeError:  # a list or an object: not a value of any category
                return "categories"
        if rules.low is None and rules.high is None:
            return None
        if rules.type in ("date", "timestamp"):
            value = _parse_time(rules.type, value)
        elif isinstance(value, (str, bool)):
            return None  # an untyped column's text has no range
        try:
            if rules.low is not None and value < rules.low:
                return "min"
            if rules.high is not None and value > rules.high:
                return "max"
        except TypeError:  # a naive and an aware timestamp: nothing to compare
            return None
        return None

    def message(self, breach: dict) -> str:
        """A refusal naming row, column, rule and value, like the schema check's 422s."""
        rules = next((c for c in self.columns if c.name == breach["column"]), None)
        rule = breach["rule"]
        asks = {"nullable": "a value (not missing)",
                "type": f"a value of type {rules.type}" if rules else "",
                "min": f"at least {rules.low}" if rules else "",
                "max": f"at most {rules.high}" if rules else "",
                "categories": "one of " + ", ".join(sorted(map(repr, rules.categories)))
                if rules and rules.categories else ""}.get(rule, "")
        return (f"record {breach['row']}: column {breach['column']!r} breaks the data contract ({self.source}), "
                f"rule {rule}: must be {asks}, got {breach['value']!r}")


def records_from_csv(text: str, schema: Schema | None) -> list[dict]:
    """CSV rows as records, numbers parsed where the schema says the column is numeric."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise RequestProblem(400, "the CSV body has no header line")
    records = []
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise RequestProblem(400, f"CSV line {line} has more fields than the header")
        record: dict[str, Any] = {}
        for name, text_value in row.items():
            kind = schema.columns.get(name) if schema else None
            if text_value is None or text_value == "":
                record[name] = None
            elif kind == NUMBER:
                try:
                    record[name] = float(text_value)
                except ValueError:
                    raise RequestProblem(422, f"CSV line {line}: column {name!r} must be a number, "
                                              f"got {text_value!r}") from None
            elif kind == BOOLEAN:
                lowered = text_value.strip().lower()
                if lowered not in ("true", "false", "1", "0"):
                    raise RequestProblem(422, f"CSV line {line}: column {name!r} must be true or false, "
                                              f"got {text_value!r}")
                record[name] = lowered in ("true", "1")
            else:
                record[name] = text_value
        records.append(record)
    return records


def records_from_json(body: bytes) -> list[dict]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestProblem(400, f"the body is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        if "records" not in data:
            raise RequestProblem(400, 'a JSON object body needs a "records" key holding a list of objects')
        data = data["records"]
    if not isinstance(data, list):
        raise RequestProblem(400, 'the body must be a list of objects or {"records": [...]}')
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise RequestProblem(400, f"record {index} is not an object of column: value")
    return data


# -- models ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Loaded:
    version: Any
    release: str
    predict: Callable[[Any], list]
    features: list[str] | None
    since: str
    schema: Schema | None
    """The training data's columns, requiring this version's features (a swap may change them)."""
    contract: ServedContract | None = None
    """The per-row rules of the data contract this version was trained under; None: no contract."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _import_function(project_dir: str, spec: str) -> tuple[Any, Callable]:
    """`stages/predict.py:predict` -> the module and its function, the project on sys.path."""
    path, _, name = spec.partition(":")
    full = os.path.join(project_dir, path)
    # As `python stages/predict.py` would: its own folder first (`import common`), then the project.
    for folder in (project_dir, os.path.dirname(full)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    module_spec = importlib.util.spec_from_file_location(f"wb_serving_{abs(hash(full))}", full)
    if module_spec is None or module_spec.loader is None:
        raise RuntimeError(f"cannot import {full}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, name or "predict", None)):
        raise RuntimeError(f"{path} has no function {name or 'predict'!r}")
    return module, getattr(module, name or "predict")


def _as_list(result: Any) -> list:
    if hasattr(result, "tolist"):
        result = result.tolist()
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in list(result)]


def load_release(folder: str, project_dir: str | None, predict_spec: str | None,
                 schema: Schema | None) -> Loaded:
    """Load and warm the model of one release folder; raises on any failure."""
    import pandas as pd

    with open(os.path.join(folder, "metadata.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    model_path = os.path.join(folder, meta["model_file"])
    features: list[str] | None = None
    if predict_spec:
        module, function = _import_function(project_dir or ".", predict_spec)
        model = module.load(model_path) if callable(getattr(module, "load", None)) else model_path

        def predict(frame: "pd.DataFrame") -> list:
            return _as_list(function(frame, model))
    else:
        import lightgbm

        booster = lightgbm.Booster(model_file=model_path)
        features = list(booster.feature_name())

        def predict(frame: "pd.DataFrame") -> list:
            frame = frame[features].copy()
            for column in frame.columns:
                # Text (object, or pandas 3's str dtype) becomes a category; LightGBM then maps it
                # with the levels it stored at training (`pandas_categorical` in model.txt).
                if not pd.api.types.is_numeric_dtype(frame[column]) and \
                        not isinstance(frame[column].dtype, pd.CategoricalDtype):
                    frame[column] = frame[column].astype("category")
            return _as_list(booster.predict(frame))
    # The columns this version was trained on, recorded in its release at promotion; a release
    # from before that was recorded falls back to the data file's columns at `serve` time.
    schema = Schema.load(os.path.join(folder, RELEASE_SCHEMA)) \
        if os.path.isfile(os.path.join(folder, RELEASE_SCHEMA)) else schema
    # Its data contract too, so a swap or rollback brings the other version's rules with it; a
    # release without one (no contract when it was trained, or promoted before contracts) checks none.
    contract_path = os.path.join(folder, RELEASE_CONTRACT)
    contract = ServedContract.load(contract_path) if os.path.isfile(contract_path) else None
    loaded = Loaded(meta.get("version"), os.path.basename(folder), predict, features, _now(),
                    schema.with_required(features) if schema is not None else None, contract)
    warm = _warm_up_frame(schema, features)
    if warm is not None:
        loaded.predict(warm)
    return loaded


def _warm_up_frame(schema: Schema | None, features: list[str] | None):
    """One row of plausible values, so the first real request does not pay for lazy set-up."""
    if schema is None:
        return None
    import pandas as pd

    sample = {NUMBER: 0.0, STRING: None, BOOLEAN: False}
    columns = features if features and set(features) <= set(schema.columns) else list(schema.columns)
    return pd.DataFrame([{name: sample[schema.columns[name]] for name in columns}], columns=columns)


class ModelHolder:
    """The model the alias serves now; swapped whole, read whole."""

    def __init__(self, alias_link: str, project_dir: str | None, predict_spec: str | None,
                 schema: Schema | None):
        self.alias_link = alias_link
        self.project_dir = project_dir
        self.predict_spec = predict_spec
        self.schema = schema
        self._lock = threading.Lock()
        self._current: Loaded | None = None
        self.last_error = ""
        self.swaps = 0
        self.swapped_at: float | None = None
        """Unix time of the last swap, to the microsecond: a response's version can be checked against it."""

    @property
    def current(self) -> Loaded | None:
        return self._current

    def refresh(self) -> bool:
        """Load the release the alias points at if it is not the one served; True on a swap."""
        try:
            folder = os.path.realpath(self.alias_link)
        except OSError as exc:
            self.last_error = f"cannot resolve {self.alias_link}: {exc}"
            return False
        current = self._current
        if current is not None and os.path.basename(folder) == current.release:
            return False
        if not os.path.isfile(os.path.join(folder, "metadata.json")):
            self.last_error = f"the alias points at no release yet ({self.alias_link})"
            return False
        try:
            loaded = load_release(folder, self.project_dir, self.predict_spec, self.schema)
        except Exception as exc:  # a broken release must not take the served model down
            self.last_error = f"could not load {os.path.basename(folder)}: {type(exc).__name__}: {exc}"
            print(f"wb_serve: {self.last_error}", file=sys.stderr, flush=True)
            return False
        with self._lock:
            self._current = dataclasses.replace(loaded, since=_now())  # serving since now, not since loading began
            self.swapped_at = time.time()
            self.swaps += 1
        self.last_error = ""
        print(f"wb_serve: serving version {loaded.version} ({loaded.release})", file=sys.stderr, flush=True)
        return True

    def poll(self, interval_s: float, stop: threading.Event) -> None:
        while not stop.wait(interval_s):
            self.refresh()


# -- what one request got ----------------------------------------------------------------------

CHAMPION, CHALLENGER, SHADOW = "champion", "challenger", "shadow"
"""Who answered: the alias's own model (champion); for a canary share of production traffic,
staging's model (challenger); a shadow score is staging's answer, logged but never returned."""


@dataclass(frozen=True)
class Served:
    """One prediction request's outcome: what /metrics counts and the traffic log keeps."""

    request_id: str
    key: str
    """The caller's routing key (X-Request-Key), else the request id: canary routing is sticky to it."""
    alias: str
    role: str
    version: Any
    status: int
    seconds: float
    at: float
    """Unix time the request arrived."""
    records: list = field(default_factory=list)
    predictions: list | None = None
    error: str = ""
    breaches: list = field(default_factory=list)
    """The records' breaches of the answering version's data contract (ServedContract.check)."""


class Router:
    """Which loaded model answers a request. Today: always the alias's own (the champion)."""

    def __init__(self, holder: ModelHolder):
        self.holder = holder

    def choose(self, key: str) -> tuple[Loaded | None, str]:
        return self.holder.current, CHAMPION

    def shadow(self, key: str, role: str) -> Loaded | None:
        """A model that also scores this request after its answer is sent (never returned)."""
        return None

    def describe(self) -> dict | None:
        """What /health says about the challenger; None: there is none."""
        return None


def routing_point(key: str) -> float:
    """`key` as a stable number in [0, 1): the same in every process and after a restart
    (Python's hash() is salted per process), uniform enough for a share of distinct keys."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


class CanaryRouter(Router):
    """Champion/challenger routing in the production server: a `share` of the routing keys
    (those whose routing_point is below it) get the challenger's answer (staging's model); with
    `shadow`, every request the champion answers is also scored by the challenger after its
    answer is sent. A canaried request is not shadowed: the challenger already answered it.

    The challenger stands aside (all traffic is the champion's) while it has no model loaded
    (staging holds no version, or its release fails to load) and while it serves the champion's
    own version: comparing a version with itself measures nothing."""

    def __init__(self, holder: ModelHolder, challenger: ModelHolder, share: float, shadow: bool):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"the canary share must be between 0 and 1, got {share}")
        super().__init__(holder)
        self.challenger = challenger
        self.share = share
        self.shadowing = shadow

    def _active_challenger(self, champion: Loaded | None) -> Loaded | None:
        challenger = self.challenger.current
        if challenger is None or champion is None or challenger.version == champion.version:
            return None
        return challenger

    def choose(self, key: str) -> tuple[Loaded | None, str]:
        champion = self.holder.current
        challenger = self._active_challenger(champion)
        if challenger is not None and self.share > 0.0 and routing_point(key) < self.share:
            return challenger, CHALLENGER
        return champion, CHAMPION

    def shadow(self, key: str, role: str) -> Loaded | None:
        if not self.shadowing or role != CHAMPION:
            return None
        return self._active_challenger(self.holder.current)

    def describe(self) -> dict:
        champion, challenger = self.holder.current, self.challenger.current
        active = self._active_challenger(champion) is not None
        if active:
            state = "active"
        elif challenger is None:
            state = self.challenger.last_error or "no model loaded yet"
        elif champion is None:
            state = "no champion loaded yet"
        else:
            state = f"serves the champion's own version ({challenger.version}): all traffic is the champion's"
        body = {"alias": os.path.basename(self.challenger.alias_link),
                "version": challenger.version if challenger else None,
                "release": challenger.release if challenger else None,
                "share": self.share, "shadow": self.shadowing, "active": active, "state": state}
        if self.challenger.last_error and challenger is not None:
            body["problem"] = self.challenger.last_error
        return body


# -- metrics -----------------------------------------------------------------------------------

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Requests by version, role and status, latency histograms by version and role, rows
    predicted: what `GET /metrics` reports in the Prometheus text format (version 0.0.4)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.buckets: dict[tuple[str, str], list[int]] = {}
        self.sums: dict[tuple[str, str], float] = {}
        self.rows: dict[tuple[str, str], int] = {}
        self.breaches: dict[tuple[str, str, str, str], int] = {}
        """(column, rule, version, role) -> values that broke the answering version's contract."""

    def observe(self, served: Served) -> None:
        label = ("none" if served.version is None else str(served.version), served.role)
        with self._lock:
            key = label + (served.status,)
            self.requests[key] = self.requests.get(key, 0) + 1
            counts = self.buckets.setdefault(label, [0] * (len(LATENCY_BUCKETS) + 1))
            for index, bound in enumerate(LATENCY_BUCKETS):
                if served.seconds <= bound:
                    counts[index] += 1
            counts[-1] += 1  # +Inf
            self.sums[label] = self.sums.get(label, 0.0) + served.seconds
            if served.status == 200:
                self.rows[label] = self.rows.get(label, 0) + len(served.records)
            for breach in served.breaches:
                key = (breach["column"], breach["rule"]) + label
                self.breaches[key] = self.breaches.get(key, 0) + 1

    def render(self, alias: str, holder: "ModelHolder") -> str:
        loaded = holder.current
        lines = ["# HELP wb_requests_total Prediction requests answered, by model version, role and HTTP status.",
                 "# TYPE wb_requests_total counter"]
        with self._lock:
            for (version, role, status), count in sorted(self.requests.items()):
                lines.append(f'wb_requests_total{{alias="{alias}",version="{version}",role="{role}",'
                             f'status="{status}"}} {count}')
            lines += ["# HELP wb_request_seconds Time to answer a prediction request, by model version and role.",
                      "# TYPE wb_request_seconds histogram"]
            for (version, role), counts in sorted(self.buckets.items()):
                labels = f'alias="{alias}",version="{version}",role="{role}"'
                for bound, count in zip(LATENCY_BUCKETS, counts):
                    lines.append(f'wb_request_seconds_bucket{{{labels},le="{bound}"}} {count}')
                lines.append(f'wb_request_seconds_bucket{{{labels},le="+Inf"}} {counts[-1]}')
                lines.append(f"wb_request_seconds_sum{{{labels}}} {self.sums[(version, role)]:.6f}")
                lines.append(f"wb_request_seconds_count{{{labels}}} {counts[-1]}")
            lines += ["# HELP wb_rows_predicted_total Rows predicted, by model version and role.",
                      "# TYPE wb_rows_predicted_total counter"]
            for (version, role), count in sorted(self.rows.items()):
                lines.append(f'wb_rows_predicted_total{{alias="{alias}",version="{version}",role="{role}"}} {count}')
            if self.breaches:
                lines += ["# HELP wb_contract_breaches_total Request values that broke the answering version's "
                          "data contract, by column, rule, model version and role.",
                          "# TYPE wb_contract_breaches_total counter"]
            for (column, rule, version, role), count in sorted(self.breaches.items()):
                lines.append(f'wb_contract_breaches_total{{alias="{alias}",column="{_label(column)}",rule="{rule}",'
                             f'version="{version}",role="{role}"}} {count}')
        lines += ["# HELP wb_model_version The model version the alias serves now (-1: none loaded).",
                  "# TYPE wb_model_version gauge",
                  f'wb_model_version{{alias="{alias}"}} '
                  f"{loaded.version if loaded is not None and isinstance(loaded.version, int) else -1}",
                  "# HELP wb_model_swaps_total Models loaded and swapped in since the server started.",
                  "# TYPE wb_model_swaps_total counter",
                  f'wb_model_swaps_total{{alias="{alias}"}} {holder.swaps}']
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped (column names are the user's)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# -- the app -----------------------------------------------------------------------------------

async def read_body(request, max_body: int, what: str = "body") -> tuple[bytes, str]:
    """(the body, its content type), read no further than `max_body` bytes (a declared length
    over it is refused before reading); a 413 RequestProblem naming `what` otherwise."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body:
        raise RequestProblem(413, f"the {what} is {int(declared)} bytes, more than the {max_body} allowed")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise RequestProblem(413, f"the {what} is more than the {max_body} bytes allowed")
    return body, request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


async def read_records(request, schema: Schema | None, max_body: int, max_rows: int) -> list[dict]:
    """The request's body as checked records; raises RequestProblem naming what is wrong."""
    body, kind = await read_body(request, max_body)
    if kind in ("text/csv", "application/csv"):
        try:
            records = records_from_csv(body.decode("utf-8-sig"), schema)
        except UnicodeDecodeError:
            raise RequestProblem(400, "the CSV body is not UTF-8") from None
    elif kind in ("application/json", ""):
        records = records_from_json(body)
    else:
        raise RequestProblem(415, f"unsupported content type {kind!r}: send application/json or text/csv")
    if not records:
        raise RequestProblem(422, "no records to predict")
    if len(records) > max_rows:
        raise RequestProblem(413, f"{len(records)} records, more than the {max_rows} allowed")
    check_records(records, schema)
    return records


def score(loaded: Loaded, records: list[dict]) -> list:
    """`loaded`'s predictions for checked records; a failure of the model is a 422 naming it."""
    import pandas as pd

    frame = pd.DataFrame.from_records(records)
    for column in frame.columns:
        if loaded.schema is not None and loaded.schema.columns.get(column) == NUMBER:
            # a column of nulls must stay numeric, not become text
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    try:
        return loaded.predict(frame)
    except Exception as exc:
        raise RequestProblem(422, f"the model could not predict these records: "
                                  f"{type(exc).__name__}: {exc}") from None


def request_id_of(request) -> str:
    request_id = request.headers.get("x-request-id", "")
    # a caller's own id is kept (to send feedback with it later) only when it is tame
    return request_id if REQUEST_ID.fullmatch(request_id) else uuid.uuid4().hex


def build_app(holder: ModelHolder, alias: str, max_body: int = DEFAULT_MAX_BODY,
              max_rows: int = DEFAULT_MAX_ROWS, router: Router | None = None,
              traffic: Any = None, contract_policy: str = "report"):
    """`traffic`: a wb_traffic.Journal (the traffic log and /feedback), or None.
    `contract_policy`: what a request that breaks the answering version's data contract gets:
    `report` (answered; the body's "contract" and the X-Contract header say so) or `reject` (a 422
    naming row, column, rule and value; a breach of a warning-level column is only reported)."""
    if contract_policy not in CONTRACT_POLICIES:
        raise ValueError(f"the contract policy must be one of {', '.join(CONTRACT_POLICIES)}, got {contract_policy!r}")
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse
    from starlette.background import BackgroundTask

    app = FastAPI(title=f"workbench serve ({alias})", docs_url=None, redoc_url=None)
    metrics = Metrics()
    router = router or Router(holder)
    listeners: list[Callable[[Served], None]] = [metrics.observe]
    """Each request's Served goes to each of these, in order, before its answer is sent; a shadow
    score's Served (role shadow, same request id) after the answer is sent."""
    app.state.listeners = listeners
    if traffic is not None:
        listeners.append(traffic)

    def answer(status: int, body: dict, request_id: str, version: Any = None, role: str = CHAMPION,
               background: Any = None, breaches: list | None = None) -> JSONResponse:
        headers = {"X-Request-Id": request_id, "X-Model-Role": role}
        if version is not None:
            headers["X-Model-Version"] = str(version)
        if breaches:
            headers["X-Contract"] = "broken"
            body = body | {"contract": breaches[:LISTED_BREACHES]}
            if len(breaches) > LISTED_BREACHES:
                body["contract_breaches"] = len(breaches)
        return JSONResponse(body | {"request_id": request_id}, status_code=status, headers=headers,
                            background=background)

    @app.get("/health")
    def health() -> JSONResponse:
        loaded = holder.current
        body = {"alias": alias, "version": loaded.version if loaded else None,
                "release": loaded.release if loaded else None, "since": loaded.since if loaded else None,
                "healthy": loaded is not None, "swaps": holder.swaps, "swapped_at": holder.swapped_at}
        if holder.last_error:
            body["problem"] = holder.last_error
        challenger = router.describe()
        if challenger is not None:
            body["challenger"] = challenger
        if traffic is not None:
            body |= traffic.health()
        return JSONResponse(body, status_code=200 if loaded else 503)

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        text = metrics.render(alias, holder)
        if traffic is not None:
            text += "\n".join(traffic.prometheus(alias)) + "\n"
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.post("/feedback")
    async def feedback(request: Request) -> JSONResponse:
        return await take_feedback(request, traffic, max_body)

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        at, started = time.time(), time.perf_counter()
        request_id = request_id_of(request)
        key = request.headers.get("x-request-key") or request_id
        loaded, role = router.choose(key)  # one version for the whole request: its model and its schema
        records: list = []
        breaches: list = []
        try:
            records = await read_records(request, loaded.schema if loaded is not None else holder.schema,
                                         max_body, max_rows)
            if loaded is None:
                raise RequestProblem(503, f"no model loaded yet: {holder.last_error or 'starting'}")
            if loaded.contract is not None:
                breaches = loaded.contract.check(records)
                refused = next((b for b in breaches if b["severity"] == "error"), None) \
                    if contract_policy == "reject" else None
                if refused is not None:
                    raise RequestProblem(422, loaded.contract.message(refused))
            predictions = score(loaded, records)
            served = Served(request_id, key, alias, role, loaded.version, 200, time.perf_counter() - started,
                            at, records, predictions, breaches=breaches)
        except RequestProblem as problem:
            served = Served(request_id, key, alias, role, loaded.version if loaded else None, problem.status,
                            time.perf_counter() - started, at, records, None, problem.message, breaches)
        for listener in listeners:
            listener(served)
        if served.status != 200:
            return answer(served.status, {"error": served.error}, request_id, served.version, role,
                          breaches=served.breaches)
        shadow = router.shadow(key, role)
        background = BackgroundTask(shadow_score, shadow, served) if shadow is not None else None
        return answer(200, {"predictions": served.predictions, "version": served.version}, request_id,
                      served.version, role, background, served.breaches)

    async def shadow_score(shadow: Loaded, answered: Served) -> None:
        """Score an answered request with the shadow model, after the answer is sent (a
        background task: the caller does not wait for it) and hand its record to the listeners.
        On the event loop like every prediction, so listeners are called from one thread only.
        Nothing here can reach the caller, so a failure is only recorded."""
        started = time.perf_counter()
        breaches: list = []
        try:
            check_records(answered.records, shadow.schema)
            # held to its own contract, reported only: the caller has its answer already
            breaches = shadow.contract.check(answered.records) if shadow.contract is not None else []
            predictions, status, error = score(shadow, answered.records), 200, ""
        except RequestProblem as problem:
            predictions, status, error = None, problem.status, problem.message
        served = Served(answered.request_id, answered.key, alias, SHADOW, shadow.version, status,
                        time.perf_counter() - started, answered.at, answered.records, predictions, error, breaches)
        for listener in listeners:
            try:
                listener(served)
            except Exception as exc:  # the answer is gone; a listener's failure must not kill the loop
                print(f"wb_serve: a listener failed on a shadow record: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)

    return app


async def take_feedback(request, traffic: Any, max_body: int):
    """POST /feedback: true labels by request id, into the traffic log (202), or a 4xx naming the problem."""
    from fastapi.responses import JSONResponse

    def refuse(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    if traffic is None:
        return refuse(409, "this server keeps no traffic log, so feedback could not be joined to its requests: "
                           "serve with a traffic log (manifest [serving] log_requests = true) to send feedback")
    try:
        body, kind = await read_body(request, max_body, "feedback body")
    except RequestProblem as problem:
        return refuse(problem.status, problem.message)
    if kind not in ("application/json", ""):
        return refuse(415, f"unsupported content type {kind!r} for feedback: send application/json")
    try:
        items = traffic.parse_feedback(body)
    except traffic.Problem as problem:
        return refuse(problem.status, problem.message)
    why_not = traffic.feedback(items)
    if why_not:
        return refuse(503, f"the feedback was not kept: {why_not}")
    return JSONResponse({"accepted": len(items)}, status_code=202)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve an alias's model (inside its container)")
    parser.add_argument("--deploy", required=True, help="the project's deploy folder")
    parser.add_argument("--alias", required=True)
    parser.add_argument("--project", default=None, help="the project's code (for a [serving] predict)")
    parser.add_argument("--predict", default=None, help="FILE:FUNCTION, relative to --project")
    parser.add_argument("--schema", default=None, help="a JSON file of the training data's columns")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--poll-s", type=float, default=1.0)
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY)
    parser.add_argument("--challenger", default=None,
                        help="another alias (staging) whose model answers --canary of the traffic or shadows it")
    parser.add_argument("--canary", type=float, default=0.0, help="share of routing keys the challenger answers")
    parser.add_argument("--shadow", action="store_true", help="the challenger also scores the champion's requests")
    parser.add_argument("--traffic", default=None, help="a folder for the traffic log and feedback")
    parser.add_argument("--segment-rows", type=int, default=5_000, help="lines per traffic log segment at most")
    parser.add_argument("--segment-s", type=float, default=60.0,
                        help="seconds a traffic log segment stays open at most")
    parser.add_argument("--contract", choices=CONTRACT_POLICIES, default="report",
                        help="a request that breaks the data contract: answered and reported, or refused (422)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.canary <= 1.0:
        parser.error(f"--canary must be between 0 and 1, got {args.canary}")

    import uvicorn

    schema = Schema.load(args.schema)
    holder = ModelHolder(os.path.join(args.deploy, args.alias), args.project, args.predict, schema)
    holders = [holder]
    router = None
    if args.challenger:
        challenger = ModelHolder(os.path.join(args.deploy, args.challenger), args.project, args.predict, schema)
        router = CanaryRouter(holder, challenger, args.canary, args.shadow)
        holders.append(challenger)
    stop = threading.Event()
    for index, each in enumerate(holders):
        each.refresh()
        threading.Thread(target=each.poll, args=(args.poll_s, stop), daemon=True,
                         name=f"wb-serve-poll-{index}").start()
    journal = None
    if args.traffic:
        import wb_traffic  # a sibling on /wb/lib (PYTHONPATH)

        journal = wb_traffic.Journal(args.traffic, args.segment_rows, args.segment_s)
    app = build_app(holder, args.alias, args.max_body, router=router, traffic=journal,
                    contract_policy=args.contract)
    # uvicorn handles SIGTERM (`docker stop`): it finishes the requests in flight, puts back the
    # handler it found and raises the signal again; this handler makes that an exit through
    # `finally`, which closes the traffic log's open segments (the default would just die).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    finally:
        stop.set()
        if journal is not None:
            journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

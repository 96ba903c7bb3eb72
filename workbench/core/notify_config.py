"""Who hears about what: the `[notify]` section, in a project's manifest or in the workspace's
`workspace.toml`, parsed and validated in one place (services/alerts.py delivers).

    [notify]
    retry_after_s = 5            # the first retry of a failed delivery; doubles up to max_retry_s
    max_retry_s = 600

    [[notify.webhooks]]
    url = "https://hooks.slack.com/services/T000/B000/XXXX"
    events = ["run_failed", "gate_failed", "promoted", "rolled_back"]   # default: every kind
    format = "slack"             # "json" (default) or "slack"
    headers = { Authorization = "Bearer ${ALERTS_TOKEN}" }              # ${VAR}: read when sending

    [notify.serving]             # thresholds for served endpoints (workbench serve, the TUI)
    max_error_rate = 0.05        # share of requests answered 4xx/5xx
    max_p99_ms = 500
    window_s = 60                # measured over the last window_s seconds
    min_requests = 20            # fewer requests in the window say nothing

A project's alerts go to the workspace's receivers and to its own; its `[notify.serving]`
replaces the workspace's. Header values are kept as written: a `${VAR}` is read from the
environment of the process that delivers, so a token never lands in the lineage store.

Validation is strict as in the manifest (an unknown key is an error naming the file and key),
but `workspace.toml` may hold other sections (`[cluster]`, ...), which this module ignores.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from workbench.core.errors import ManifestError
from workbench.core.manifest_reader import TableReader
from workbench.core.workspace_config import WORKSPACE_CONFIG_NAME, workspace_tables

WORKSPACE_CONFIG = WORKSPACE_CONFIG_NAME

EVENT_KINDS: dict[str, str] = {
    "run_failed": "a run failed (a stage failed, timed out or the run could not start)",
    "gate_failed": "a run finished but a gate failed",
    "contract_broken": "data broke its contract",
    "batch_drifted": "a new data batch drifted from the production model's training data",
    "batch_decayed": "the production model's metric fell on a labelled batch",
    "retrain_started": "a retrain started (drift or decay)",
    "retrain_finished": "a retrain finished (succeeded or not)",
    "promoted": "a version was promoted to staging or production",
    "rolled_back": "an alias was rolled back to an earlier version",
    "serving_error_rate": "a served endpoint's error rate crossed [notify.serving] max_error_rate",
    "serving_latency": "a served endpoint's p99 latency crossed [notify.serving] max_p99_ms",
    "serving_recovered": "a served endpoint went back under its thresholds",
    "test": "`workbench notify test`",
}
"""Every kind an alert may have, with what it means (docs/alerts.md lists them)."""
FORMATS = ("json", "slack")
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
RESERVED_HEADERS = {"content-type", "content-length", "host", "x-workbench-event-id"}
"""Headers the workbench sets itself: the idempotency key is the event's, not a setting."""


@dataclass(frozen=True)
class Webhook:
    url: str
    """http(s) URL the alert is POSTed to; it names the receiver (one delivery per event and URL)."""
    events: tuple[str, ...] = ()
    """The kinds sent there; empty: every kind."""
    format: str = "json"
    """`json`: the event as a JSON object; `slack`: `{"text", "blocks"}` for a Slack incoming webhook."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers, values as written (`${VAR}` expanded when sending)."""
    source: str = ""
    """The file that configured it, for messages."""

    def wants(self, kind: str) -> bool:
        return kind == "test" or not self.events or kind in self.events

    @property
    def key(self) -> str:
        """What the outbox calls this receiver: a hash of its URL, which often holds a secret
        (a Slack webhook's path is its token), so the URL itself is never stored."""
        return receiver_key(self.url)

    @property
    def shown(self) -> str:
        return shown_url(self.url)


@dataclass(frozen=True)
class ServingThresholds:
    max_error_rate: float | None = None
    """Alert when the share of requests answered 4xx or 5xx goes above this (0-1)."""
    max_p99_ms: float | None = None
    """Alert when the 99th percentile latency goes above this many milliseconds."""
    window_s: float = 60.0
    """The span the rate and the p99 are measured over."""
    min_requests: int = 20
    """A window with fewer requests is not judged (one slow request of three is not an outage)."""

    @property
    def any(self) -> bool:
        return self.max_error_rate is not None or self.max_p99_ms is not None


@dataclass(frozen=True)
class NotifySpec:
    webhooks: tuple[Webhook, ...] = ()
    serving: ServingThresholds | None = None
    """None: not set here (a project then takes the workspace's)."""
    retry_after_s: float | None = None
    """The first retry of a failed delivery waits this long; each further one twice as long
    (None: not set here; RETRY_AFTER_S unless the workspace sets it)."""
    max_retry_s: float | None = None
    """The longest wait between two tries of one delivery (None: not set here)."""
    source: str = ""


RETRY_AFTER_S, MAX_RETRY_S = 5.0, 600.0


@dataclass(frozen=True)
class Receivers:
    """What one project's alerts go to: the workspace's receivers and the project's own."""
    webhooks: tuple[Webhook, ...] = ()
    serving: ServingThresholds = field(default_factory=ServingThresholds)
    retry_after_s: float = RETRY_AFTER_S
    max_retry_s: float = MAX_RETRY_S

    def for_kind(self, kind: str) -> tuple[Webhook, ...]:
        return tuple(w for w in self.webhooks if w.wants(kind))

    def by_key(self, key: str) -> Webhook | None:
        return next((w for w in self.webhooks if w.key == key), None)


def combine(workspace: NotifySpec | None, project: NotifySpec | None) -> Receivers:
    """The project's receivers: the workspace's first, then the project's; a URL named in both is
    one receiver (the project's entry, which is the more specific)."""
    specs = [s for s in (workspace, project) if s is not None]
    hooks: dict[str, Webhook] = {}
    for spec in specs:
        for hook in spec.webhooks:
            hooks.pop(hook.url, None)
            hooks[hook.url] = hook
    serving = next((s.serving for s in reversed(specs) if s.serving is not None), ServingThresholds())
    first = next((s.retry_after_s for s in reversed(specs) if s.retry_after_s is not None), RETRY_AFTER_S)
    most = next((s.max_retry_s for s in reversed(specs) if s.max_retry_s is not None), MAX_RETRY_S)
    return Receivers(tuple(hooks.values()), serving, first, max(first, most))


def parse_notify_table(table: TableReader) -> NotifySpec:
    """`[notify]` of a manifest or of workspace.toml (a TableReader names the file in errors)."""
    if not table.table:
        return NotifySpec(source="")
    retry_after_s = table.number("retry_after_s", None, 0.0, 3600.0, low_open=True, unit=" seconds")
    max_retry_s = table.number("max_retry_s", None, 0.0, 86_400.0, low_open=True, unit=" seconds")
    if max_retry_s is not None and max_retry_s < (retry_after_s or RETRY_AFTER_S):
        raise table.fail("max_retry_s", f"must be at least retry_after_s ({retry_after_s or RETRY_AFTER_S:g}), "
                                        f"got {max_retry_s:g}")
    raw = table.get("webhooks", list, default=[])
    hooks = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise table.fail("webhooks", f"must be tables ([[notify.webhooks]] with url = ...), got {item!r}")
        hook = _webhook(TableReader(table.source, item, f"{table.key('webhooks')}[{index}]"))
        if hook.url in seen:
            raise table.fail("webhooks", f"{hook.shown} is listed twice; one entry per URL (merge their events)")
        seen.add(hook.url)
        hooks.append(hook)
    serving = _serving(table.table_of("serving")) if "serving" in table.table else None
    table.seen.add("serving")
    table.reject_unknown()
    return NotifySpec(tuple(hooks), serving, retry_after_s, max_retry_s, table.source)


def parse_workspace_notify(text: str, source: str = WORKSPACE_CONFIG) -> NotifySpec:
    """The `[notify]` section of a workspace.toml's text; other sections are not ours to judge."""
    section = workspace_tables(text, source).get("notify")
    if section is None:
        return NotifySpec()
    if not isinstance(section, dict):
        raise ManifestError(source, "notify", f"must be a table ([notify]), got {section!r}")
    return parse_notify_table(TableReader(source, section, "notify"))


def _webhook(table: TableReader) -> Webhook:
    url = table.text("url", required=True).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise table.fail("url", f"must be an http:// or https:// URL with a host, got {url!r}")
    events = table.strings("events")
    for event in events:
        if event not in EVENT_KINDS:
            raise table.fail("events", f"unknown event {event!r} (known: {', '.join(EVENT_KINDS)})")
    form = table.get("format", str, default="json")
    if form not in FORMATS:
        raise table.fail("format", f"must be 'json' or 'slack', got {form!r}")
    headers = table.get("headers", dict, default={})
    pairs = []
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise table.fail("headers", f"{name!r} is not a header name")
        if name.lower() in RESERVED_HEADERS:
            raise table.fail("headers", f"{name} is set by the workbench itself")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise table.fail("headers", f"{name}: must be a one-line string, got {value!r}")
        pairs.append((name, value))
    table.reject_unknown()
    return Webhook(url, tuple(events), form, tuple(pairs), table.source)


def _serving(table: TableReader) -> ServingThresholds:
    rate = table.number("max_error_rate", None, 0.0, 1.0)
    p99 = table.number("max_p99_ms", None, 0.0, 3_600_000.0, low_open=True, unit=" ms")
    window = table.number("window_s", 60.0, 1.0, 86_400.0, unit=" seconds")
    min_requests = table.integer("min_requests", 20, 1, 1_000_000_000)
    table.reject_unknown()
    if rate is None and p99 is None:
        raise table.fail(None, "sets no threshold: give max_error_rate, max_p99_ms or both")
    return ServingThresholds(rate, p99, window, min_requests)


def expand_header(value: str, environ: dict[str, str]) -> str:
    """`Bearer ${TOKEN}` with $TOKEN from `environ`; KeyError names a variable that is not set."""
    def one(match: re.Match) -> str:
        name = match.group(1)
        if name not in environ:
            raise KeyError(name)
        return environ[name]
    return ENV_REF.sub(one, value)


def receiver_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def shown_url(url: str) -> str:
    """A URL as screens and messages show it: scheme, host, port and the first path segment;
    what follows (a Slack or Teams webhook's token), a query and a user:password are left out,
    with a short hash so two receivers on one host stay apart. `http://127.0.0.1:8080/hook`
    shows as it is."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    where = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) <= 1 and not parts.query and not parts.username and not parts.password:
        return where + (f"/{segments[0]}" if segments else "")
    first = f"/{segments[0]}" if segments else ""
    return f"{where}{first}/… (#{receiver_key(url)[:6]})"

"""What the model servers are doing: requests per second, error rate and latency per version and
role (champion, challenger, shadow), read from each server's `GET /metrics` (runtime/wb_serve.py).

A scrape is the server's counters at one moment, parsed with prometheus_client's text parser.
Everything shown is an increase between scrapes, computed the way Prometheus's `increase()`
does: per series, over consecutive scrapes, a value lower than the one before is a counter reset
(the container restarted, its counters start from zero), so the later value counts whole.

- `ScrapeWindow`: the scrapes of one server over the last WINDOW_S seconds (the TUI scrapes once
  a second); `stats(span_s)` gives the rows over the newest `span_s` seconds, `history()` one point
  per pair of consecutive scrapes, for a chart over time.
- `snapshot()`: the one-shot form behind `workbench serve status`. Requests, errors and latency
  are totals since the server started (its counters, which a restart sets back to zero); req/s
  is the increase between two scrapes one second apart (a total has no rate). One second costs
  the command a second, and says what the server does now rather than its average since start.

p50/p95/p99 are estimates from the latency histogram's buckets (0.001 s to 5 s, wb_serve's
LATENCY_BUCKETS), linearly interpolated within the bucket holding the quantile, as Prometheus's
`histogram_quantile` does: a p99 of 7.3 ms says it lies between 5 and 10 ms, not more. A quantile
in the +Inf bucket is reported as the largest finite bound (5 s), as Prometheus does.

A server that does not answer /metrics is reported as such (`ServerStats.problem`), never raised.
Live quality (from /feedback) is not computed here: `RoleStats.quality` is filled by the caller
(`with_quality`) from the feedback join, when it knows it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Iterable

WINDOW_S = 300.0
"""How long a ScrapeWindow keeps scrapes (the chart's width, at most)."""
SCRAPE_TIMEOUT_S = 2.0
LARGEST_BOUND_S = 5.0
"""wb_serve's largest finite latency bucket: a quantile there may be any time above it."""
ROLES = ("champion", "challenger", "shadow")
"""The order rows are shown in: the champion first, its challengers beside it."""

Key = tuple[str, str]
"""(version, role): the labels that make one row; version is "none" for requests answered
before any model was loaded."""


@dataclass(frozen=True)
class Scrape:
    """One server's counters at one moment (`at`: time.monotonic() of the scrape)."""
    at: float
    alias: str
    requests: dict[tuple[str, str, str], float]
    """(version, role, status) -> requests answered since the server started."""
    buckets: dict[Key, tuple[tuple[float, float], ...]]
    """(version, role) -> cumulative latency histogram: (upper bound in seconds, count), sorted, +Inf last."""
    served_version: int | None
    swaps: int
    breaches: dict[tuple[str, str, str, str], float] = field(default_factory=dict)
    """(version, role, column, rule) -> request values that broke the answering version's data
    contract since the server started (wb_contract_breaches_total)."""


@dataclass(frozen=True)
class Quality:
    """A version's live quality, from the true labels sent to /feedback (filled by the caller)."""
    metric: str
    value: float
    labelled_rows: int


@dataclass(frozen=True)
class RoleStats:
    alias: str
    version: str
    role: str
    requests: int
    """Requests answered over the span (since the server started, for a snapshot)."""
    rate: float | None
    """Requests per second over the span; None when there is no span (a single scrape)."""
    client_errors: int
    server_errors: int
    p50: float | None
    p95: float | None
    p99: float | None
    """Seconds, bucket estimates (module docstring); None with no requests."""
    quality: Quality | None = None
    contract_breaches: tuple[tuple[str, str, int], ...] = ()
    """(column, rule, values) that broke this version's data contract since the server started,
    most first; filled for totals (`serve status`), not for increases."""

    @property
    def errors(self) -> int:
        return self.client_errors + self.server_errors

    @property
    def error_rate(self) -> float | None:
        """The share of requests answered 4xx or 5xx."""
        return self.errors / self.requests if self.requests else None

    def as_json(self) -> dict:
        return {"alias": self.alias, "version": self.version, "role": self.role, "requests": self.requests,
                "rate": self.rate, "errors": self.errors, "client_errors": self.client_errors,
                "server_errors": self.server_errors, "error_rate": self.error_rate,
                "p50_s": self.p50, "p95_s": self.p95, "p99_s": self.p99,
                "quality": None if self.quality is None else
                {"metric": self.quality.metric, "value": self.quality.value,
                 "labelled_rows": self.quality.labelled_rows},
                "contract_breaches": [{"column": column, "rule": rule, "count": count}
                                      for column, rule, count in self.contract_breaches]}


@dataclass(frozen=True)
class ServerStats:
    """One server's rows (champion first), or why there are none."""
    url: str
    alias: str
    served_version: int | None
    rows: tuple[RoleStats, ...] = ()
    span_s: float | None = None
    """Seconds the rows' increases cover; None for totals since the server started."""
    problem: str = ""
    """Non-empty when /metrics did not answer (the rows are then empty)."""

    def as_json(self) -> dict:
        return {"url": self.url, "alias": self.alias, "served_version": self.served_version, "span_s": self.span_s,
                "problem": self.problem, "rows": [row.as_json() for row in self.rows]}


@dataclass(frozen=True)
class HistoryPoint:
    """One interval between consecutive scrapes: what the chart draws per version and role."""
    at: float
    key: Key
    rate: float
    p99: float | None


class ScrapeFailed(Exception):
    """The server did not answer /metrics, or answered something that is not its metrics."""


# -- reading /metrics --------------------------------------------------------------------------

def fetch_metrics(url: str, timeout: float = SCRAPE_TIMEOUT_S) -> str:
    from workbench.adapters.server_http import ServerUnreachable, get

    try:
        status, body = get(url.rstrip("/") + "/metrics", timeout)
    except ServerUnreachable as exc:
        raise ScrapeFailed(f"/metrics did not answer: {exc}") from None
    if status != 200:
        raise ScrapeFailed(f"/metrics answered {status}")
    return body.decode("utf-8", "replace")


def parse_metrics(text: str, at: float | None = None) -> Scrape:
    """A scrape from /metrics text; ScrapeFailed when it is not Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    requests: dict[tuple[str, str, str], float] = {}
    buckets: dict[Key, list[tuple[float, float]]] = {}
    breaches: dict[tuple[str, str, str, str], float] = {}
    alias, served, swaps = "", None, 0
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                alias = labels.get("alias", alias)
                key = (labels.get("version", "none"), labels.get("role", "champion"))
                if sample.name == "wb_requests_total":
                    requests[key + (labels.get("status", ""),)] = sample.value
                elif sample.name == "wb_request_seconds_bucket":
                    buckets.setdefault(key, []).append((float(labels["le"]), sample.value))
                elif sample.name == "wb_model_version":
                    served = int(sample.value) if sample.value >= 0 else None
                elif sample.name == "wb_model_swaps_total":
                    swaps = int(sample.value)
                elif sample.name == "wb_contract_breaches_total":
                    breaches[key + (labels["column"], labels["rule"])] = sample.value
    except (ValueError, KeyError, TypeError) as exc:
        raise ScrapeFailed(f"/metrics is not Prometheus text: {exc}") from None
    return Scrape(time.monotonic() if at is None else at, alias, requests,
                  {key: tuple(sorted(counts)) for key, counts in buckets.items()}, served, swaps, breaches)


def scrape(url: str) -> Scrape:
    return parse_metrics(fetch_metrics(url))


# -- arithmetic --------------------------------------------------------------------------------

def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The q-quantile of a cumulative histogram [(upper bound, count), ..., (inf, total)], as
    Prometheus's histogram_quantile: linear within the bucket where the rank falls, the first
    bucket starting at 0, the +Inf bucket answered by the largest finite bound. None when empty."""
    buckets = sorted(buckets)
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    for index, (bound, count) in enumerate(buckets[:-1]):
        if count >= rank:
            start, below = (0.0, 0.0) if index == 0 else buckets[index - 1]
            if index == 0 and bound <= 0:
                return bound
            return start + (bound - start) * (rank - below) / (count - below) if count > below else bound
    return buckets[-2][0]


def _increase(scrapes: list[Scrape]) -> tuple[dict, dict]:
    """Requests and histogram increases over consecutive scrapes, each counter reset (a value
    lower than the scrape before: the server restarted) counted from zero, as Prometheus does.
    A histogram resets as a whole (its count went down), so its buckets stay cumulative."""
    requests: dict[tuple[str, str, str], float] = {}
    buckets: dict[Key, dict[float, float]] = {}
    for before, after in zip(scrapes, scrapes[1:]):
        for key, value in after.requests.items():
            old = before.requests.get(key, 0.0)
            requests[key] = requests.get(key, 0.0) + (value - old if value >= old else value)
        for key, counts in after.buckets.items():
            old = dict(before.buckets.get(key, ()))
            reset = counts[-1][1] < old.get(math.inf, 0.0)
            into = buckets.setdefault(key, {})
            for bound, count in counts:
                into[bound] = into.get(bound, 0.0) + (count if reset else count - old.get(bound, 0.0))
    return requests, {key: tuple(sorted(counts.items())) for key, counts in buckets.items()}


def _rows(alias: str, requests: dict, buckets: dict, seconds: float | None) -> tuple[RoleStats, ...]:
    keys = {key[:2] for key in requests} | set(buckets)
    rows = []
    for version, role in keys:
        by_status = {status: n for (v, r, status), n in requests.items() if (v, r) == (version, role)}
        total = int(round(sum(by_status.values())))
        client = int(round(sum(n for s, n in by_status.items() if s.startswith("4"))))
        server = int(round(sum(n for s, n in by_status.items() if s.startswith("5"))))
        histogram = buckets.get((version, role), ())
        rows.append(RoleStats(alias, version, role, total, total / seconds if seconds else None, client, server,
                              histogram_quantile(0.50, histogram), histogram_quantile(0.95, histogram),
                              histogram_quantile(0.99, histogram)))
    return tuple(sorted(rows, key=_row_order))


def _row_order(row: RoleStats) -> tuple:
    role = ROLES.index(row.role) if row.role in ROLES else len(ROLES)
    return (role, int(row.version) if row.version.isdigit() else -1, row.version)


def totals(url: str, latest: Scrape) -> ServerStats:
    """The rows since the server started (its counters as they are), with their contract breaches."""
    rows = _rows(latest.alias, latest.requests, latest.buckets, None)
    return ServerStats(url, latest.alias, latest.served_version,
                       tuple(replace(row, contract_breaches=_breaches_of(latest, row)) for row in rows))


def _breaches_of(latest: Scrape, row: RoleStats) -> tuple[tuple[str, str, int], ...]:
    found = [(column, rule, int(round(count))) for (version, role, column, rule), count in latest.breaches.items()
             if (version, role) == (row.version, row.role) and count > 0]
    return tuple(sorted(found, key=lambda b: (-b[2], b[0], b[1])))


def between(url: str, scrapes: list[Scrape]) -> ServerStats:
    """The rows over the increase from the first scrape to the last."""
    latest = scrapes[-1]
    seconds = latest.at - scrapes[0].at
    requests, buckets = _increase(scrapes)
    return ServerStats(url, latest.alias, latest.served_version,
                       _rows(latest.alias, requests, buckets, seconds if seconds > 0 else None), span_s=seconds)


def with_quality(stats: ServerStats, qualities: dict) -> ServerStats:
    """The rows with their live quality: {version: Quality} for every role of a version, or
    {(version, role): Quality} for each role on its own (a shadow and the champion scored on the
    same requests compare like for like); versions as int or str."""
    by_role = {(str(key[0]), key[1]): quality for key, quality in qualities.items() if isinstance(key, tuple)}
    by_version = {str(key): quality for key, quality in qualities.items() if not isinstance(key, tuple)}

    def quality_of(row: RoleStats):
        return by_role.get((row.version, row.role)) or by_version.get(row.version) or row.quality
    return replace(stats, rows=tuple(replace(row, quality=quality_of(row)) for row in stats.rows))


def latency_ms(seconds: float | None, unit: bool = True) -> str:
    """A bucket estimate on screen: `7.7 ms`, `-` with no requests, `>= 5000 ms` in the +Inf
    bucket; without the unit (a column headed `p99 ms`): `7.7`, `>=5000`."""
    if seconds is None:
        return "-"
    ms = seconds * 1000
    prefix = (">= " if unit else ">=") if seconds >= LARGEST_BOUND_S else ""
    return prefix + (f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}") + (" ms" if unit else "")


# -- the two ways of reading -------------------------------------------------------------------

@dataclass
class ScrapeWindow:
    """One server's scrapes over the last WINDOW_S seconds (oldest first)."""
    url: str
    window_s: float = WINDOW_S
    scrapes: deque = field(default_factory=deque)
    points: deque = field(default_factory=deque)
    """The history (one point per pair of consecutive scrapes and row), computed as scrapes arrive."""
    problem: str = ""

    def poll(self) -> None:
        """Scrape once; a server that does not answer leaves the window as it was and says why."""
        try:
            self.add(scrape(self.url))
        except ScrapeFailed as exc:
            self.problem = str(exc)

    def add(self, latest: Scrape) -> None:
        self.problem = ""
        if self.scrapes and latest.at > self.scrapes[-1].at:
            self.points.extend(_points(self.scrapes[-1], latest))  # once per scrape, not per redraw
        self.scrapes.append(latest)
        while self.scrapes and latest.at - self.scrapes[0].at > self.window_s:
            self.scrapes.popleft()
        while self.points and self.points[0].at <= self.scrapes[0].at:
            self.points.popleft()

    def stats(self, span_s: float | None = None) -> ServerStats:
        """The rows over the newest span_s seconds of the window (all of it by default); totals
        since start while only one scrape is known."""
        if not self.scrapes:
            return ServerStats(self.url, "", None, problem=self.problem or "not scraped yet")
        latest = self.scrapes[-1]
        kept = [s for s in self.scrapes if span_s is None or latest.at - s.at <= span_s + 1e-6]
        stats = totals(self.url, latest) if len(kept) < 2 else between(self.url, kept)
        return replace(stats, problem=self.problem)

    def history(self) -> list[HistoryPoint]:
        """Per consecutive pair of scrapes in the window and per version and role: req/s and p99."""
        return list(self.points)


def _points(before: Scrape, after: Scrape) -> list[HistoryPoint]:
    seconds = after.at - before.at
    return [HistoryPoint(after.at, (row.version, row.role), row.rate or 0.0, row.p99)
            for row in _rows(after.alias, *_increase([before, after]), seconds)]


def snapshot(urls: list[str], gap_s: float = 1.0) -> dict[str, ServerStats]:
    """`serve status`: per url, totals since the server started with req/s over the gap_s
    between two scrapes (module docstring). A server that does not answer has a problem."""
    first: dict[str, Scrape | str] = {}
    for url in urls:
        try:
            first[url] = scrape(url)
        except ScrapeFailed as exc:
            first[url] = str(exc)
    if any(isinstance(s, Scrape) for s in first.values()):
        time.sleep(gap_s)
    found = {}
    for url, earlier in first.items():
        if isinstance(earlier, str):
            found[url] = ServerStats(url, "", None, problem=earlier)
            continue
        try:
            latest = scrape(url)
        except ScrapeFailed as exc:
            found[url] = ServerStats(url, earlier.alias, earlier.served_version, problem=str(exc))
            continue
        found[url] = snapshot_of(url, earlier, latest)
    return found


def snapshot_of(url: str, earlier: Scrape, latest: Scrape) -> ServerStats:
    """Totals from `latest`, each row's rate from the increase since `earlier`."""
    now = between(url, [earlier, latest])
    rates = {(row.version, row.role): row.rate for row in now.rows}
    stats = totals(url, latest)
    return replace(stats, rows=tuple(replace(row, rate=rates.get((row.version, row.role), 0.0 if now.span_s else None))
                                     for row in stats.rows))

"""When a served endpoint's error rate or latency is worth an alert: the rule, pure.

An endpoint (a project's alias) is judged on what it answered over the last `window_s` seconds
(`[notify.serving]`): the share of requests answered 4xx or 5xx, and the p99 latency. A window
with fewer than `min_requests` requests says nothing either way. Alerts are edge-triggered: one
when a measure goes over its limit, nothing while it stays over, and one `serving_recovered`
when it is back under, so a bad hour is two messages, not 720.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.core.notify_config import ServingThresholds


@dataclass(frozen=True)
class Reading:
    """What an endpoint answered over a window: clients' requests (champion and challenger; a
    shadow answers nobody), how many were errors, and the slowest row's p99."""
    requests: int
    errors: int
    p99_s: float | None
    span_s: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Crossing:
    kind: str
    """serving_error_rate, serving_latency or serving_recovered."""
    measure: str
    """error_rate or p99_ms."""
    value: float
    limit: float
    summary: str


@dataclass
class ThresholdLatch:
    """Which (endpoint, measure) pairs are over their limit now."""
    over: set[tuple[str, str]] = field(default_factory=set)

    def judge(self, endpoint: str, limits: ServingThresholds, reading: Reading) -> list[Crossing]:
        if reading.requests < limits.min_requests:
            return []
        found = []
        window = f"over the last {reading.span_s:.0f} s, {reading.requests:,} requests"
        if limits.max_error_rate is not None:
            rate = reading.error_rate
            found += self._edge(endpoint, "error_rate", rate > limits.max_error_rate, rate, limits.max_error_rate,
                                "serving_error_rate",
                                f"{endpoint}: error rate {rate:.1%} is above {limits.max_error_rate:.1%} ({window})",
                                f"{endpoint}: error rate {rate:.1%} is back under {limits.max_error_rate:.1%} ({window})")
        if limits.max_p99_ms is not None and reading.p99_s is not None:
            p99 = reading.p99_s * 1000
            found += self._edge(endpoint, "p99_ms", p99 > limits.max_p99_ms, p99, limits.max_p99_ms,
                                "serving_latency",
                                f"{endpoint}: p99 latency {p99:.0f} ms is above {limits.max_p99_ms:g} ms ({window})",
                                f"{endpoint}: p99 latency {p99:.0f} ms is back under {limits.max_p99_ms:g} ms ({window})")
        return found

    def _edge(self, endpoint: str, measure: str, over: bool, value: float, limit: float, kind: str,
              crossed: str, recovered: str) -> list[Crossing]:
        key = (endpoint, measure)
        if over and key not in self.over:
            self.over.add(key)
            return [Crossing(kind, measure, value, limit, crossed)]
        if not over and key in self.over:
            self.over.discard(key)
            return [Crossing("serving_recovered", measure, value, limit, recovered)]
        return []

"""Serving statistics (services/serving_stats.py) on /metrics text written here by hand, in the
format runtime/wb_serve.py's Metrics.render writes: champion, challenger and shadow rows, rates,
error shares, quantiles against a hand computation, a counter reset after a restart."""

from __future__ import annotations

import pytest

from workbench.services import serving_stats as stats
from workbench.services.serving_stats import Quality, ScrapeWindow, histogram_quantile, parse_metrics

BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def metrics_text(served: int | None, series: dict, swaps: int = 1, alias: str = "production") -> str:
    """series: (version, role) -> {"status": {code: n}, "buckets": [cumulative count per BOUND], "inf": n}."""
    lines = ["# HELP wb_requests_total Prediction requests answered.", "# TYPE wb_requests_total counter"]
    for (version, role), s in series.items():
        for status, n in s["status"].items():
            lines.append(f'wb_requests_total{{alias="{alias}",version="{version}",role="{role}",status="{status}"}} {n}')
    lines += ["# HELP wb_request_seconds Time to answer.", "# TYPE wb_request_seconds histogram"]
    for (version, role), s in series.items():
        labels = f'alias="{alias}",version="{version}",role="{role}"'
        for bound, n in zip(BOUNDS, s["buckets"]):
            lines.append(f'wb_request_seconds_bucket{{{labels},le="{bound}"}} {n}')
        lines.append(f'wb_request_seconds_bucket{{{labels},le="+Inf"}} {s["inf"]}')
        lines.append(f"wb_request_seconds_sum{{{labels}}} 1.0")
        lines.append(f"wb_request_seconds_count{{{labels}}} {s['inf']}")
    lines += ["# TYPE wb_model_version gauge", f'wb_model_version{{alias="{alias}"}} {served if served is not None else -1}',
              "# TYPE wb_model_swaps_total counter", f'wb_model_swaps_total{{alias="{alias}"}} {swaps}']
    return "\n".join(lines) + "\n"


def series(ok: int, client: int = 0, server: int = 0, fast: int | None = None) -> dict:
    """`ok + client + server` requests: `fast` of them (default all) at <= 5 ms, the rest in (5, 10] ms."""
    total = ok + client + server
    fast = total if fast is None else fast
    cumulative = [0, 0, fast] + [total] * 9  # le 0.001, 0.0025: none; 0.005: fast; 0.01 and above: all
    status = {200: ok} | ({422: client} if client else {}) | ({500: server} if server else {})
    return {"status": status, "buckets": cumulative, "inf": total}


def test_parse_reads_rows_served_version_and_swaps():
    scrape = parse_metrics(metrics_text(2, {("2", "champion"): series(10), ("3", "challenger"): series(4, client=1)},
                                        swaps=3), at=0.0)
    assert scrape.alias == "production" and scrape.served_version == 2 and scrape.swaps == 3
    assert scrape.requests[("3", "challenger", "422")] == 1
    assert scrape.buckets[("2", "champion")][2] == (0.005, 10) and scrape.buckets[("2", "champion")][-1][1] == 10


def test_quantile_interpolates_like_prometheus_histogram_quantile():
    # 100 requests: 20 at <= 1 ms, 50 more at <= 2.5 ms, 25 more at <= 5 ms, 5 more at <= 10 ms.
    buckets = [(0.001, 20), (0.0025, 70), (0.005, 95), (0.01, 100), (float("inf"), 100)]
    # p50: rank 50 falls in (1, 2.5] ms, 30 of its 50: 1 + 1.5 * 30/50 = 1.9 ms
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.0019)
    # p95: rank 95 is the end of (2.5, 5] ms exactly: 5 ms
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.005)
    # p99: rank 99 in (5, 10] ms, 4 of its 5: 5 + 5 * 4/5 = 9 ms
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.009)
    # p10 in the first bucket, which starts at 0: 1 ms * 10/20
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.0005)
    # beyond the largest finite bound: that bound, as Prometheus answers
    assert histogram_quantile(0.99, [(0.001, 1), (0.005, 2), (float("inf"), 10)]) == 0.005
    assert histogram_quantile(0.5, [(0.001, 0), (float("inf"), 0)]) is None


def test_window_rates_error_share_and_quantiles_per_version_and_role():
    window = ScrapeWindow("http://x")
    window.add(parse_metrics(metrics_text(1, {("1", "champion"): series(100), ("2", "challenger"): series(10)}), at=10.0))
    # 10 s later: the champion answered 200 more (190 ok, 6 4xx, 4 5xx), half of them in (5, 10] ms;
    # the challenger 20 more, all fast; a shadow appeared with 30.
    window.add(parse_metrics(metrics_text(1, {("1", "champion"): series(290, client=6, server=4, fast=200),
                                              ("2", "challenger"): series(30),
                                              ("2", "shadow"): series(30)}), at=20.0))
    view = window.stats()
    assert view.span_s == 10.0 and view.served_version == 1 and not view.problem
    rows = {(r.version, r.role): r for r in view.rows}
    assert [(r.version, r.role) for r in view.rows] == [("1", "champion"), ("2", "challenger"), ("2", "shadow")]
    champion = rows[("1", "champion")]
    assert champion.requests == 200 and champion.rate == pytest.approx(20.0)
    assert (champion.client_errors, champion.server_errors) == (6, 4)
    assert champion.error_rate == pytest.approx(0.05)
    # the increase: 100 at <= 5 ms, 100 in (5, 10] ms; p50 is the end of the 5 ms bucket, p99 5 + 5 * 98/100 ms
    assert champion.p50 == pytest.approx(0.005)
    assert champion.p99 == pytest.approx(0.0099)
    challenger = rows[("2", "challenger")]
    assert challenger.requests == 20 and challenger.rate == pytest.approx(2.0) and challenger.error_rate == 0.0
    # all 20 in (2.5, 5] ms: p50 = 2.5 + 2.5 * 10/20 ms
    assert challenger.p50 == pytest.approx(0.00375)
    assert rows[("2", "shadow")].requests == 30  # a series new since the first scrape counts from zero


def test_counter_reset_after_a_restart_counts_the_new_values_whole():
    window = ScrapeWindow("http://x")
    window.add(parse_metrics(metrics_text(1, {("1", "champion"): series(500)}), at=0.0))
    window.add(parse_metrics(metrics_text(1, {("1", "champion"): series(600)}), at=1.0))
    # the container restarted: counters from zero; 40 answered since
    window.add(parse_metrics(metrics_text(1, {("1", "champion"): series(40, fast=0)}), at=2.0))
    row = window.stats().rows[0]
    assert row.requests == 140 and row.rate == pytest.approx(70.0)
    # 100 fast before the restart, 40 in (5, 10] ms after: no negative bucket, p99 in the slow bucket
    assert 0.005 < row.p99 <= 0.01
    points = window.history()
    assert [p.rate for p in points] == [100.0, 40.0]


def test_span_and_window_keep_only_recent_scrapes():
    window = ScrapeWindow("http://x", window_s=5.0)
    for second in range(10):
        window.add(parse_metrics(metrics_text(1, {("1", "champion"): series(10 * second * second)}), at=float(second)))
    assert len(window.scrapes) == 6  # seconds 4..9
    assert [(p.at, p.rate) for p in window.history()] == [(s, 10 * (s * s - (s - 1) ** 2)) for s in (5.0, 6.0, 7.0, 8.0, 9.0)]
    assert window.stats(span_s=1.0).rows[0].rate == pytest.approx(10 * (81 - 64))
    assert window.stats().rows[0].requests == 10 * (81 - 16)


def test_a_single_scrape_gives_totals_without_a_rate_and_snapshot_rates_from_two():
    first = parse_metrics(metrics_text(1, {("1", "champion"): series(100)}), at=0.0)
    latest = parse_metrics(metrics_text(1, {("1", "champion"): series(130, server=2)}), at=1.0)
    window = ScrapeWindow("http://x")
    window.add(first)
    assert window.stats().rows[0].rate is None and window.stats().span_s is None
    row = stats.snapshot_of("http://x", first, latest).rows[0]
    assert row.requests == 132 and row.server_errors == 2 and row.rate == pytest.approx(32.0)


def test_quality_is_attached_by_version():
    view = stats.totals("http://x", parse_metrics(metrics_text(1, {("1", "champion"): series(5),
                                                                    ("2", "challenger"): series(5)}), at=0.0))
    view = stats.with_quality(view, {2: Quality("auc", 0.81, 120)})
    assert [r.quality for r in view.rows] == [None, Quality("auc", 0.81, 120)]
    assert view.as_json()["rows"][1]["quality"] == {"metric": "auc", "value": 0.81, "labelled_rows": 120}


def test_a_server_that_does_not_answer_is_reported_not_raised():
    found = stats.snapshot(["http://127.0.0.1:9"], gap_s=0.0)  # port 9 (discard): nothing listens
    assert found["http://127.0.0.1:9"].rows == () and "did not answer" in found["http://127.0.0.1:9"].problem
    window = ScrapeWindow("http://127.0.0.1:9")
    window.poll()
    assert window.stats().problem.startswith("/metrics did not answer")
    with pytest.raises(stats.ScrapeFailed, match="not Prometheus text"):
        parse_metrics("wb_requests_total{alias= 3\n")


def test_quality_by_version_and_role_keeps_a_shadow_apart_from_the_challenger():
    view = stats.totals("http://x", parse_metrics(metrics_text(1, {("1", "champion"): series(5),
                                                                    ("2", "challenger"): series(5),
                                                                    ("2", "shadow"): series(5)}), at=0.0))
    view = stats.with_quality(view, {(1, "champion"): Quality("auc", 0.80, 400),
                                     (2, "challenger"): Quality("auc", 0.83, 100),
                                     (2, "shadow"): Quality("auc", 0.82, 400)})
    assert {(r.version, r.role): r.quality.value for r in view.rows} == \
        {("1", "champion"): 0.80, ("2", "challenger"): 0.83, ("2", "shadow"): 0.82}

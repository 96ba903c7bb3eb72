"""The figures benchmarks/bench_serve_vs_mlflow.py computes from its measurements (the benchmark
itself runs both servers and is run by hand, see its docstring)."""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_serve_vs_mlflow import Load, Server, format_table, longest_gap, ratio  # noqa: E402


def test_ratio_is_ours_over_theirs_and_nan_without_a_figure():
    assert ratio(1.0, 4.0) == 0.25
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(float("nan"), 2.0))
    assert math.isnan(ratio(None, 2.0))


def test_longest_gap_counts_the_window_edges_and_ignores_answers_outside_it():
    assert longest_gap([1.0, 2.0, 5.0], 0.0, 6.0) == 3.0
    assert longest_gap([0.5, 1.0], 0.0, 10.0) == 9.0  # no answer after 1.0: the gap runs to the end
    assert longest_gap([], 2.0, 3.5) == 1.5
    assert longest_gap([-5.0, 1.0, 20.0], 0.0, 2.0) == 1.0


def test_percentiles_of_a_window_only_count_requests_sent_in_it():
    load = Load(started=[0.0, 1.0, 2.0, 3.0], latency=[0.1, 0.9, 0.2, 0.3], done=[0.1, 1.9, 2.2, 3.3])
    assert load.p(0.99) == 0.9
    assert load.p(0.99, since=1.5, until=3.0) == 0.3
    assert math.isnan(load.p(0.5, since=10.0))


def test_the_rate_leaves_out_answers_after_the_load_stopped():
    load = Load(done=[0.5, 1.0, 1.5, 2.0, 2.4])
    assert load.rate(0.0, 2.0) == 2.0  # 2.4 was in flight at the stop: not counted


def test_each_server_gets_its_own_request_format_with_the_same_rows():
    records = [{"tenure": 3.0, "contract": "One year"}]
    assert Server("workbench", "", "/predict", False).body(records) == b'[{"tenure": 3.0, "contract": "One year"}]'
    assert Server("mlflow", "", "/invocations", True).body(records) == \
        b'{"dataframe_records": [{"tenure": 3.0, "contract": "One year"}]}'


def test_the_table_leaves_a_missing_ratio_blank():
    lines = format_table([("req/s", "120.0", "60.0", 2.0), ("failed", "0", "3", float("nan"))])
    assert lines[2] == "| req/s | 120.0 | 60.0 | 2.00 |"
    assert lines[3] == "| failed | 0 | 3 |  |"

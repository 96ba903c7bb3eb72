"""The host's reader of the traffic log (adapters/traffic_log.py) on real files: only closed
segments with a segment's name that are regular files are read (a planted symlink, FIFO, folder,
in-progress `.part` or stray name is skipped), malformed lines are skipped but keep their line
numbers, feedback joins by request id, and the bound deletes the oldest segments first. Also the
live metrics and totals of core/serving_quality.py."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.traffic_segments import feedback_line, request_line, write_segment
from workbench.adapters.traffic_log import (FEEDBACK, REQUESTS, closed_segments, enforce_bound, log_bytes,
                                            open_segment, read_feedback, read_requests, segment_lines)
from workbench.core.serving_quality import auc, binary_label, live_quality, totals

ROW = {"amount": 50.0, "plan": "basic"}


def test_only_closed_regular_segments_with_a_segment_name_are_listed(tmp_path):
    folder = tmp_path / "production"
    second = write_segment(folder, REQUESTS, [request_line([ROW], [0.4])], opened_ms=2000)
    first = write_segment(folder, REQUESTS, [request_line([ROW], [0.5])], opened_ms=1000, pid=99)
    feedback = write_segment(folder, FEEDBACK, [], opened_ms=1500)
    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps(request_line([{"password": "x"}], [1])) + "\n")
    os.symlink(secret, folder / "requests-1700000000500-1.jsonl")             # a link to a host file
    os.mkfifo(folder / "requests-1700000000600-1.jsonl")                      # would block a reader
    (folder / "requests-1700000000700-1.jsonl").mkdir()                       # a folder
    (folder / ".requests-1700000000800-1.jsonl.part").write_text("{}\n")      # still being written
    (folder / "requests-1700000000900-1.json").write_text("{}\n")             # not a segment name
    (folder / "requests-900-1.jsonl").write_text("{}\n")                      # not 13 digits
    (folder / "requests-x-1.jsonl").write_text("{}\n")
    listed = closed_segments(folder, REQUESTS)
    assert [s.path for s in listed] == [first, second]
    assert [s.path for s in closed_segments(folder, FEEDBACK)] == [feedback]
    assert closed_segments(tmp_path / "missing", REQUESTS) == []
    os.symlink(folder, tmp_path / "staging")  # the alias folder itself a link: to a host folder, say
    assert closed_segments(tmp_path / "staging", REQUESTS) == []
    assert enforce_bound(tmp_path, 0) == [first, feedback, second]  # through the real folder only


def test_a_name_swapped_for_a_symlink_or_fifo_after_listing_is_not_followed(tmp_path):
    folder = tmp_path / "production"
    path = write_segment(folder, REQUESTS, [request_line([ROW], [0.5])], opened_ms=1000)
    segment = closed_segments(folder, REQUESTS)[0]
    path.unlink()
    os.symlink(tmp_path / "elsewhere", path)
    (tmp_path / "elsewhere").write_text(json.dumps(request_line([ROW], [0.9])) + "\n")
    assert open_segment(segment.path) is None and list(segment_lines(segment)) == []
    path.unlink()
    os.mkfifo(path)
    assert open_segment(segment.path) is None  # returns at once: O_NONBLOCK, then not a regular file


def test_a_segment_over_the_size_cap_is_not_read(tmp_path):
    path = write_segment(tmp_path, REQUESTS, [request_line([ROW], [0.5])] * 10, opened_ms=1)
    with open_segment(path, max_bytes=path.stat().st_size) as handle:
        assert handle.read() == path.read_bytes()
    assert open_segment(path, max_bytes=path.stat().st_size - 1) is None
    segment = closed_segments(tmp_path, REQUESTS)[0]
    lines = segment_lines(segment, max_bytes=segment.size)
    first = next(lines)  # opened and checked
    with open(path, "ab") as grows:  # a writer that kept the file open appends after that
        grows.write(b"{}\n" * 100)
    assert len([first, *lines]) == 10


def test_malformed_lines_are_skipped_and_keep_their_line_numbers(tmp_path):
    good = request_line([ROW, ROW], [0.1, 0.9])
    lines = ["not json", "[1, 2]", {"request_id": "r", "status": "200"}, good,
             request_line([ROW], [0.3, 0.4]),                # outputs do not match the rows: kept, outputs dropped
             {**request_line([ROW], [0.2]), "inputs": ["x"]}]  # a row that is not a record
    write_segment(tmp_path, REQUESTS, lines, opened_ms=1)
    read = list(read_requests(closed_segments(tmp_path, REQUESTS)[0]))
    assert [n for n, _ in read] == [0, 1, 2, 3, 4, 5]
    assert [r is None for _, r in read] == [True, True, True, False, False, True]
    assert read[3][1].request_id == good["request_id"] and read[3][1].outputs == [0.1, 0.9]
    assert read[4][1].outputs is None
    assert [n for n, _ in read_requests(closed_segments(tmp_path, REQUESTS)[0], start=4)] == [4, 5]


def test_feedback_joins_by_request_id_the_later_one_winning(tmp_path):
    a, b = request_line([ROW], [0.2]), request_line([ROW, ROW], [0.2, 0.7])
    write_segment(tmp_path, FEEDBACK, [feedback_line(a, ["no"]), "garbage", {"request_id": 3, "labels": [1]}],
                  opened_ms=1)
    write_segment(tmp_path, FEEDBACK, [feedback_line(a, ["yes"]), feedback_line(b, [0, 1])], opened_ms=2)
    assert read_feedback(tmp_path) == {a["request_id"]: ["yes"], b["request_id"]: [0, 1]}


def test_the_bound_deletes_the_oldest_closed_segments_of_every_alias_first(tmp_path):
    lines = [request_line([ROW], [0.5])] * 20
    old = write_segment(tmp_path / "production", REQUESTS, lines, opened_ms=1000)
    staging = write_segment(tmp_path / "staging", REQUESTS, lines, opened_ms=2000)
    feedback = write_segment(tmp_path / "production", FEEDBACK, lines, opened_ms=3000)
    new = write_segment(tmp_path / "production", REQUESTS, lines, opened_ms=4000)
    part = tmp_path / "production" / ".requests-1700000005000-7.jsonl.part"
    part.write_text("x" * 10_000)
    size = new.stat().st_size
    assert log_bytes(tmp_path) == 4 * size
    assert enforce_bound(tmp_path, 2 * size) == [old, staging]
    assert feedback.exists() and new.exists() and part.exists()
    assert enforce_bound(tmp_path, 2 * size) == []


def test_auc_matches_the_rank_definition_with_ties():
    rng = np.random.default_rng(3)
    labels, scores = rng.integers(0, 2, 300), np.round(rng.random(300), 1)
    pairs = [(s1 > s0) + 0.5 * (s1 == s0) for s1, y1 in zip(scores, labels) if y1 for s0, y0 in zip(scores, labels)
             if not y0]
    assert auc(labels, scores) == pytest.approx(np.mean(pairs))
    assert auc([1, 1], [0.2, 0.3]) is None


@pytest.mark.parametrize("task, predictions, labels, metric, value, rows", [
    ("classification", [0.9, 0.2, 0.6, 0.4], ["Yes", "No", "No", "Yes"], "auc", 0.75, 4),
    ("classification", [0.9, 0.2, None], [1, 0, 1], "auc", 1.0, 2),
    ("auto", ["Yes", "No", "No"], ["yes", "No", "Yes"], "accuracy", 2 / 3, 3),
    ("regression", [1.0, 3.0], [2.0, 3.0], "rmse", (0.5) ** 0.5, 2),
    ("auto", [1.0, 2.0, 3.0], [1.0, 2.5, 4.0], "rmse", ((0.25 + 1) / 3) ** 0.5, 3),
    ("classification", [0.3], [None], "auc", None, 0),
])
def test_the_live_metric_follows_the_task(task, predictions, labels, metric, value, rows):
    quality = live_quality(task, predictions, labels)
    assert (quality.metric, quality.labelled_rows) == (metric, rows)
    assert quality.value == (pytest.approx(value) if value is not None else None)


def test_a_positive_label_from_the_manifest_decides_which_class_is_one():
    assert binary_label("Churned", positive="churned") == 1 and binary_label("Stayed", positive="churned") == 0
    assert binary_label("Stayed") is None and binary_label(1.0) == 1 and binary_label(False) == 0


def test_totals_count_errors_and_latency_percentiles():
    found = totals([200] * 98 + [422, 413], [0.01] * 90 + [0.1] * 10)
    assert (found.requests, found.errors, found.error_rate) == (100, 2, 0.02)
    assert found.p50 == pytest.approx(0.01) and found.p99 == pytest.approx(0.1)
    assert totals([], []).p95 is None


def test_a_batch_file_types_columns_by_their_values(tmp_path):
    import duckdb

    from workbench.adapters.traffic_log import Request
    from workbench.services.serving_monitor import write_batch

    rows = [{"flag": 1, "price": 2.5, "big": 2**70, "plan": "basic", "mixed": 3, "extra": True},
            {"flag": 0.0, "price": 3, "big": 1, "plan": None, "mixed": "x", "extra": False}]
    request = Request("r1", "production", "champion", 1, 200, 0.01, 1.0, rows, [0.1, 0.2])
    path = tmp_path / "b.parquet"
    write_batch(path, [request], ["plan", "flag"], "churn", {"r1": ["Yes", "No"]})
    con = duckdb.connect()
    described = {name: kind for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()}
    assert list(described) == ["plan", "flag", "price", "big", "mixed", "extra", "churn"]
    assert described == {"plan": "VARCHAR", "flag": "BIGINT", "price": "DOUBLE", "big": "DOUBLE", "mixed": "VARCHAR",
                         "extra": "BOOLEAN", "churn": "VARCHAR"}
    assert con.execute(f"SELECT plan, flag, mixed, churn FROM '{path}'").fetchall() == [
        ("basic", 1, "3", "Yes"), (None, 0, "x", "No")]
    csv_path = tmp_path / "b.csv"
    write_batch(csv_path, [request], [], None, {})
    assert csv_path.read_text().splitlines()[:2] == ["flag,price,big,plan,mixed,extra", "1,2.5,1.1805916207174113e+21,basic,3,true"]

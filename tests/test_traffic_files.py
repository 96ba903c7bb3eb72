"""The host side of a serving container's traffic folder (adapters/traffic_files.py): what a
hostile predict function could plant there is never listed, and never opened."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workbench.adapters.traffic_files import closed_segments, open_segment
from workbench.core.errors import WorkbenchError
from workbench.runtime import wb_traffic

LINE = b'{"request_id": "r1"}\n'


@pytest.fixture
def planted(tmp_path):
    """A traffic folder holding two real segments (one written by wb_traffic itself) and the traps."""
    folder = tmp_path / "traffic"
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(b'{"secret": 1}\n')
    journal = wb_traffic.Journal(str(folder))
    assert journal.feedback([("r1", [1])]) == ""
    journal.close()
    (folder / "requests-1700000000000-7.jsonl").write_bytes(LINE)
    (folder / "requests-1700000000005-7.jsonl").symlink_to("/etc/passwd")
    (folder / "requests-1700000000006-7.jsonl").symlink_to("../outside.jsonl")
    os.mkfifo(folder / "requests-1700000000007-7.jsonl")
    (folder / "requests-1700000000008-7.jsonl").mkdir()
    (folder / "..requests-1700000000009-7.jsonl").write_bytes(LINE)
    (folder / "requests-1700000000010-7.jsonl\n").write_bytes(LINE)
    (folder / ".requests-1700000000011-7.jsonl.part").write_bytes(LINE)
    (folder / "requests-170000000001-7.jsonl").write_bytes(LINE)  # 12 digits
    with open(folder / "requests-1700000000012-7.jsonl", "wb") as huge:
        huge.truncate(2048)  # over the cap the test passes
    return folder


def test_closed_segments_lists_only_regular_files_with_exact_names_under_the_cap(planted):
    assert closed_segments(planted, "requests", max_bytes=1024) == [planted / "requests-1700000000000-7.jsonl"]
    [feedback] = closed_segments(planted, "feedback", max_bytes=1024)
    with open_segment(feedback) as fh:
        assert b'"labels":[1]' in fh.read()


def test_open_segment_never_reads_a_symlink_a_fifo_or_a_huge_file(planted):
    for name in ("requests-1700000000005-7.jsonl", "requests-1700000000006-7.jsonl"):
        with pytest.raises(WorkbenchError, match="symlink is never followed"):
            open_segment(planted / name)
    with pytest.raises(WorkbenchError, match="not a regular file"):
        open_segment(planted / "requests-1700000000007-7.jsonl")  # returns at once: O_NONBLOCK
    with pytest.raises(WorkbenchError, match="more than the 1024"):
        open_segment(planted / "requests-1700000000012-7.jsonl", max_bytes=1024)
    with open_segment(planted / "requests-1700000000000-7.jsonl") as fh:
        assert fh.read() == LINE


def test_a_traffic_folder_that_is_a_symlink_or_missing(tmp_path):
    assert closed_segments(tmp_path / "missing", "requests") == []
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(WorkbenchError, match="is not a folder"):
        closed_segments(tmp_path / "link", "requests")
    with pytest.raises(ValueError):
        closed_segments(tmp_path, "passwd")

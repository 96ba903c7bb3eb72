"""`[serving]` keys of the traffic log: log_requests, segment_rows, segment_seconds."""

from __future__ import annotations

import pytest

from workbench.core.errors import ManifestError
from workbench.core.manifest import parse_manifest

BASE = '[project]\nname = "p"\n[stages.train]\ncommand = "python train.py"\n'


def test_traffic_log_keys_default_and_read():
    serving = parse_manifest(BASE).serving
    assert (serving.log_requests, serving.segment_rows, serving.segment_seconds) == (True, 5000, 60.0)
    serving = parse_manifest(BASE + "[serving]\nlog_requests = false\nsegment_rows = 10\nsegment_seconds = 5\n").serving
    assert (serving.log_requests, serving.segment_rows, serving.segment_seconds) == (False, 10, 5.0)


@pytest.mark.parametrize("line, key, words", [
    ('log_requests = "yes"', "serving.log_requests", "must be"),
    ("segment_rows = 0", "serving.segment_rows", "between 1 and 1000000"),
    ("segment_rows = 2.5", "serving.segment_rows", "must be"),
    ("segment_seconds = 0.5", "serving.segment_seconds", "at least 1"),
    ("segment_seconds = 100000", "serving.segment_seconds", "at most 86400"),
])
def test_a_bad_traffic_log_key_names_the_key(line, key, words):
    with pytest.raises(ManifestError) as info:
        parse_manifest(BASE + f"[serving]\n{line}\n")
    assert key in str(info.value) and words in str(info.value)

"""`[serving] batch_rows, batch_minutes, log_max_mb`: when served traffic becomes a drift batch,
and the traffic log's bound (services/serving_monitor.py)."""

from __future__ import annotations

import pytest

from workbench.core.errors import ManifestError
from workbench.core.manifest import parse_manifest

BASE = '[project]\nname = "p"\n[stages.train]\ncommand = "python train.py"\n'


def test_the_defaults_and_set_values():
    spec = parse_manifest(BASE).serving
    assert (spec.batch_rows, spec.batch_minutes, spec.log_max_mb) == (10_000, 60.0, 256)
    spec = parse_manifest(BASE + "[serving]\nbatch_rows = 500\nbatch_minutes = 0.5\nlog_max_mb = 2\n").serving
    assert (spec.batch_rows, spec.batch_minutes, spec.log_max_mb) == (500, 0.5, 2)


@pytest.mark.parametrize("line, words", [
    ("batch_rows = 0", "serving.batch_rows"),
    ("batch_rows = 1.5", "serving.batch_rows"),
    ("batch_minutes = 0", "serving.batch_minutes"),
    ('batch_minutes = "1h"', "serving.batch_minutes"),
    ("log_max_mb = 0", "serving.log_max_mb"),
    ("log_max_mb = true", "serving.log_max_mb"),
])
def test_a_bad_value_names_its_key(line, words):
    with pytest.raises(ManifestError) as info:
        parse_manifest(BASE + f"[serving]\n{line}\n")
    assert words in str(info.value)

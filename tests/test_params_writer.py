"""A sweep trial's params copy (workbench.adapters.params_writer) reads back as the document it
was written from, in each format a params file may have."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from workbench.adapters.params_files import read_params_file
from workbench.adapters.params_writer import write_params
from workbench.core.errors import WorkbenchError

DOCUMENT = {
    "title": 'say "hi"\\ and \u00e9',
    "train": {"learning_rate": 0.03, "num_leaves": 15, "deterministic": True, "objective": "binary",
              "layers": [64, 32], "mixed": [1, "two", 3.5], "inline": [{"a": 1}, {"a": 2}],
              "nested": {"deep": {"x": -1e-7}}, "empty": {}},
    "split": {"seed": 42, "when": dt.date(2026, 12, 1)},
    "odd key": {"dotted.name": 1},
    "runs": [{"name": "first", "opts": {"k": 1}}, {"name": "second", "opts": {"k": 2}}],
}


@pytest.mark.parametrize("name", ["params.toml", "params.yaml", "params.yml", "params.json"])
def test_a_written_params_file_reads_back_the_same(tmp_path, name):
    document = DOCUMENT if name.endswith((".toml", ".yaml", ".yml")) else {
        **DOCUMENT, "split": {"seed": 42, "when": "2026-12-01"}}  # JSON has no dates
    write_params(document, tmp_path / name, name)
    assert read_params_file(tmp_path, name) == document


def test_toml_keeps_special_floats(tmp_path):
    write_params({"t": {"a": math.inf, "b": -math.inf}}, tmp_path / "p.toml", "p.toml")
    assert read_params_file(tmp_path, "p.toml") == {"t": {"a": math.inf, "b": -math.inf}}


def test_an_unknown_format_is_refused(tmp_path):
    with pytest.raises(WorkbenchError, match="not a TOML, YAML or JSON"):
        write_params({}, tmp_path / "p.ini", "p.ini")

"""The manifest keys of the evaluation the workbench computes (`predictions`, `[evaluation]`),
and data.target / data.sensitive checked against the data file's header when a manifest loads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workbench.core.errors import ManifestError
from workbench.core.manifest import parse_manifest
from workbench.services.workspace import load_manifest

BASE = """
[project]
name = "p"

[data]
paths = ["data/table.csv"]
target = "churn"
sensitive = ["female", "senior_citizen"]

[stages.evaluate]
command = "python evaluate.py"
predictions = "predictions.parquet"
"""


def test_predictions_and_evaluation_parse_with_defaults():
    manifest = parse_manifest(BASE + '\n[evaluation]\ntask = "classification"\nthreshold = 0.3\npositive = "Yes"\n')
    assert manifest.stages["evaluate"].predictions == "predictions.parquet"
    assert (manifest.evaluation.task, manifest.evaluation.threshold, manifest.evaluation.positive) == (
        "classification", 0.3, "Yes")
    default = parse_manifest(BASE).evaluation
    assert (default.task, default.threshold, default.positive) == ("auto", 0.5, None)


@pytest.mark.parametrize("extra, key, problem", [
    ('\n[evaluation]\nthreshold = 1.5\n', "evaluation.threshold", "at most 1"),
    ('\n[evaluation]\nthreshold = nan\n', "evaluation.threshold", "finite"),
    ('\n[evaluation]\ntask = "multiclass"\n', "evaluation.task", "must be one of auto, classification, regression"),
    ('\n[evaluation]\ntresh = 0.4\n', "evaluation.tresh", "unknown key"),
    ('\n[evaluation]\npositive = ""\n', "evaluation.positive", "must not be empty"),
])
def test_bad_evaluation_settings_name_their_key(extra, key, problem):
    with pytest.raises(ManifestError) as caught:
        parse_manifest(BASE + extra)
    assert caught.value.key == key and problem in caught.value.problem


@pytest.mark.parametrize("value, problem", [
    ("../predictions.parquet", "without '..'"),
    ("/tmp/predictions.parquet", "not an absolute path"),
    ("predictions.json", "must be a Parquet or CSV file"),
])
def test_a_bad_predictions_path_names_the_key(value, problem):
    with pytest.raises(ManifestError) as caught:
        parse_manifest(BASE.replace("predictions.parquet", value))
    assert caught.value.key == "stages.evaluate.predictions" and problem in caught.value.problem


def _project(root: Path, manifest: str, header: str = "churn,female,senior_citizen,tenure\n") -> Path:
    project = root / "p"
    (project / "data").mkdir(parents=True, exist_ok=True)
    (project / "workbench.toml").write_text(textwrap.dedent(manifest))
    (project / "evaluate.py").write_text("")
    if header is not None:
        (project / "data" / "table.csv").write_text(header + "Yes,1,0,3\n")
    return project


@pytest.mark.parametrize("typo, key, column, hint", [
    ('target = "chrun"', "data.target", "chrun", "did you mean 'churn'?"),
    ('target = "Churn"', "data.target", "Churn", "did you mean 'churn'?"),
    ('sensitive = ["female", "senior"]', "data.sensitive", "senior", "did you mean 'senior_citizen'?"),
])
def test_a_typo_in_target_or_sensitive_is_an_error_naming_column_and_closest_match(tmp_path, typo, key, column, hint):
    good = 'target = "churn"' if key == "data.target" else 'sensitive = ["female", "senior_citizen"]'
    _project(tmp_path, BASE.replace(good, typo))
    done = subprocess.run([sys.executable, "-m", "workbench", "-w", str(tmp_path), "run", "p", "--runner", "local"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert f"{key}: column {column!r} is not in data/table.csv; {hint}" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_header_of_a_parquet_data_file_is_checked(tmp_path):
    import pandas as pd

    project = _project(tmp_path, BASE.replace("data/table.csv", "data/*.parquet"), header=None)
    pd.DataFrame({"churn": [1], "female": [0], "senior": [1]}).to_parquet(project / "data" / "part-1.parquet")
    with pytest.raises(ManifestError, match=r"data.sensitive: column 'senior_citizen' is not in data/part-1.parquet"):
        load_manifest(project)


def test_no_data_file_yet_and_a_fifo_are_not_judged(tmp_path):
    project = _project(tmp_path, BASE, header=None)
    assert load_manifest(project)[0].data.target == "churn"
    os.mkfifo(project / "data" / "table.csv")  # opening it for reading would wait for a writer
    assert load_manifest(project)[0].data.target == "churn"

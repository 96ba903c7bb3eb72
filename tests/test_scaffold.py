"""`workbench init`: a first manifest from a folder's files. The pure survey and text, then the
command on a real folder, whose manifest then runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import wb
from workbench.core.manifest import parse_manifest
from workbench.core.scaffold import NothingToRun, manifest_text, project_name, survey


def test_stages_are_found_where_scripts_usually_live_and_chained_in_pipeline_order():
    files = ["src/evaluate.py", "src/train.py", "validate.py", "src/common.py", "data/train.csv",
             "data/raw/extra.parquet", "params.yaml", "requirements.txt", ".venv/lib/train.py",
             "notebooks/explore.ipynb", "stages/score.py"]
    found = survey("Churn Model!", files)
    assert found.name == "Churn-Model"
    assert found.stages == (("validate", "validate.py"), ("train", "src/train.py"),
                            ("evaluate", "src/evaluate.py"), ("score", "stages/score.py"))
    assert found.data == ("data/raw/extra.parquet", "data/train.csv")
    assert (found.params, found.requirements) == ("params.yaml", "requirements.txt")

    manifest = parse_manifest(manifest_text(found))
    assert manifest.stage_order() == ["validate", "train", "evaluate", "score"]
    train = manifest.stages["train"]
    assert train.command == "python src/train.py" and train.depends_on == ("validate",)
    assert list(train.inputs) == ["src/*.py", "data/raw/extra.parquet", "data/train.csv", "params.yaml"]
    assert list(manifest.stages["validate"].inputs)[0] == "*.py"
    assert manifest.environment.requirements == "requirements.txt" and manifest.data.target is None


def test_a_folder_without_stage_scripts_is_refused_with_what_was_looked_for():
    with pytest.raises(NothingToRun, match="looked for validate.py, train.py, evaluate.py"):
        survey("x", ["model.py", "data/a.csv", ".git/train.py"])


def test_odd_names_still_give_a_manifest_that_loads():
    assert project_name("...") == "project" and project_name("my model (v2)") == "my-model-v2"
    found = survey('we"ird', ["train.py", 'data/a "quoted" file.csv'])
    manifest = parse_manifest(manifest_text(found))
    assert manifest.name == "we-ird" and manifest.data.paths == ('data/a "quoted" file.csv',)


def test_init_writes_a_manifest_that_runs_and_never_overwrites_one(tmp_path: Path):
    project = tmp_path / "churn"
    (project / "src").mkdir(parents=True)
    (project / "data").mkdir()
    (project / "data" / "rows.csv").write_text("x,label\n1,0\n2,1\n3,1\n")
    (project / "src" / "train.py").write_text(
        "import csv, wb\nrows = list(csv.DictReader(open('data/rows.csv')))\n"
        "wb.log_metrics({'rows': len(rows)})\n")
    (project / "src" / "evaluate.py").write_text("import wb\nwb.log_metrics({'auc': 0.9})\n")

    done = wb(tmp_path, "init", "churn", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stages"] == ["train", "evaluate"]
    run = wb(tmp_path, "run", "churn", "--runner", "local", "--json")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["status"] == "succeeded" and [s["stage"] for s in record["stages"]] == ["train", "evaluate"]
    assert record["stages"][0]["metrics"] == {"rows": 3.0}

    written = (project / "workbench.toml").read_text()
    again = wb(tmp_path, "init", "churn")
    assert again.returncode == 3 and "exists already" in again.stderr and "--force" in again.stderr
    assert (project / "workbench.toml").read_text() == written
    assert wb(tmp_path, "init", "churn", "--force").returncode == 0

    (tmp_path / "empty").mkdir()
    nothing = wb(tmp_path, "init", "empty")
    assert nothing.returncode == 3 and nothing.stderr.startswith("error: ") and "no stage scripts" in nothing.stderr
    assert not (tmp_path / "empty" / "workbench.toml").exists()

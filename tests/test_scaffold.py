"""`workbench init`: a first manifest from a folder's files. The pure survey and text, then the
command on a real folder, whose manifest then runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import wb
from workbench.core.manifest import parse_manifest
from workbench.core.scaffold import NothingToRun, manifest_text, project_name, survey


STAGE = "import wb\nwb.log_metrics({'x': 1.0})\n"


def test_stages_are_found_where_scripts_usually_live_and_chained_in_pipeline_order():
    files = ["src/evaluate.py", "src/train.py", "validate.py", "src/common.py", "data/train.csv",
             "data/raw/extra.parquet", "params.yaml", "requirements.txt", ".venv/lib/train.py",
             "notebooks/explore.ipynb", "stages/score.py"]
    sources = {
        "validate.py": "import pandas as pd\npd.read_csv('data/train.csv').info()\n",
        "src/train.py": "from common import load\nimport wb\n\ndef main():\n    load()\n\n"
                        "if __name__ == '__main__':\n    main()\n",
        "src/common.py": "import pandas as pd\nDATA = 'data/train.csv'\nPARAMS = 'params.yaml'\n\n"
                         "def load():\n    return pd.read_csv(DATA)\n",
        "src/evaluate.py": "import sys, wb\npath = sys.argv[1]\n",
        "stages/score.py": "import glob\nfor f in glob.glob('data/raw/*.parquet'):\n    print(f)\n",
        ".venv/lib/train.py": "print(1)\n",
    }
    found = survey("Churn Model!", files, sources)
    assert found.name == "Churn-Model"
    assert [(s.name, s.script) for s in found.stages] == [
        ("validate", "validate.py"), ("train", "src/train.py"), ("evaluate", "src/evaluate.py"),
        ("score", "stages/score.py")]
    assert found.data == ("data/raw/extra.parquet", "data/train.csv")
    assert (found.params, found.requirements) == ("params.yaml", "requirements.txt")

    manifest = parse_manifest(manifest_text(found))
    assert manifest.stage_order() == ["validate", "train", "evaluate", "score"]
    train = manifest.stages["train"]
    assert train.command == "python src/train.py" and train.depends_on == ("validate",)
    # its script, the module it imports, and what that module names: not every *.py and every file
    assert list(train.inputs) == ["src/train.py", "src/common.py", "data/train.csv", "params.yaml"]
    assert list(manifest.stages["validate"].inputs) == ["validate.py", "data/train.csv"]
    assert list(manifest.stages["evaluate"].inputs) == ["src/evaluate.py"]
    assert list(manifest.stages["score"].inputs) == ["stages/score.py", "data/raw/extra.parquet"]
    assert manifest.environment.requirements == "requirements.txt" and manifest.data.target is None


HELPER = "import numpy as np\n\ndef add_ratio(df):\n    return df\n\nclass Encoder:\n    pass\n"
VERDICTS = [
    ("a module of functions, imported", HELPER, "from features import add_ratio\n", False, "imported by train.py"),
    ("a module of functions, not imported", HELPER, "", False, "only defines functions"),
    ("a module with a constant and a docstring", '"""Helpers."""\nCOLUMNS = ["a", "b"]\n', "", False,
     "only defines functions"),
    ("a main guard", HELPER + "\nif __name__ == '__main__':\n    add_ratio(None)\n", "", True, "__main__"),
    ("a main guard, also imported", HELPER + "\nif __name__ == \"__main__\":\n    pass\n",
     "import features\n", True, "__main__"),
    ("top-level calls", "import wb\nwb.log_metrics({'n': 1})\n", "", True, "top level"),
    ("a top-level loop", "for i in range(3):\n    pass\n", "", True, "top level"),
    ("a with block", "with open('out.txt', 'w') as f:\n    f.write('x')\n", "", True, "top level"),
    ("reads argv", "import sys\nOUT = sys.argv[1]\n", "", True, "top level"),
    ("imported, with top-level calls", "import logging\nlogging.basicConfig()\n\ndef f():\n    pass\n",
     "from .features import f\n", False, "imported by train.py"),
    ("does not parse", "def broken(:\n", "", False, "does not parse as Python (line 1)"),
]


@pytest.mark.parametrize("case,features,train_imports,is_stage,why", VERDICTS, ids=[v[0] for v in VERDICTS])
def test_only_scripts_that_do_their_work_when_run_become_stages(case, features, train_imports, is_stage, why):
    sources = {"features.py": features, "train.py": train_imports + STAGE}
    found = survey("p", ["features.py", "train.py"], sources)
    stages = {s.name: s for s in found.stages}
    assert ("features" in stages) is is_stage
    if is_stage:
        assert why in stages["features"].why
    else:
        assert found.not_stages == (("features.py", next(w for s, w in found.not_stages if s == "features.py")),)
        assert why in found.not_stages[0][1]
        assert f"#   features.py: {found.not_stages[0][1]}" in manifest_text(found)
    assert stages["train"].inputs[0] == "train.py"
    assert ("features.py" in stages["train"].inputs) is bool(train_imports)


def test_modules_are_followed_through_packages_and_relative_imports():
    files = ["train.py", "lib/__init__.py", "lib/prep.py", "lib/util.py", "other.py", "data/a.csv", "data/b.csv"]
    sources = {"train.py": "from lib.prep import clean\nclean()\n", "lib/__init__.py": "",
               "lib/prep.py": "from . import util\nfrom .util import PATH\n\ndef clean():\n    pass\n",
               "lib/util.py": "PATH = 'a.csv'\n", "other.py": "import json\nprint(json)\n"}
    (train,) = survey("p", files, sources).stages
    assert train.inputs == ("train.py", "lib/__init__.py", "lib/prep.py", "lib/util.py", "data/a.csv")


def test_a_folder_without_stage_scripts_is_refused_with_what_was_looked_for():
    with pytest.raises(NothingToRun, match="looked for validate.py, train.py, evaluate.py"):
        survey("x", ["model.py", "data/a.csv", ".git/train.py"], {"model.py": "print(1)\n"})
    with pytest.raises(NothingToRun, match="train.py is not one: it only defines functions"):
        survey("x", ["train.py"], {"train.py": "def fit():\n    pass\n"})


def test_odd_names_still_give_a_manifest_that_loads():
    assert project_name("...") == "project" and project_name("my model (v2)") == "my-model-v2"
    found = survey('we"ird', ["train.py", 'data/a "quoted" file.csv'],
                   {"train.py": "import pandas\npandas.read_csv('data/a \"quoted\" file.csv')\n"})
    manifest = parse_manifest(manifest_text(found))
    assert manifest.name == "we-ird" and manifest.data.paths == ('data/a "quoted" file.csv',)
    assert manifest.stages["train"].inputs == ("train.py", 'data/a "quoted" file.csv')


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
    assert json.loads(done.stdout)["contracts"] == ["data/rows.csv.contract.toml"]  # a first data contract
    run = wb(tmp_path, "run", "churn", "--runner", "local", "--json")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["status"] == "succeeded"
    assert [s["stage"] for s in record["stages"]] == ["contract", "train", "evaluate"]
    assert record["stages"][1]["metrics"] == {"rows": 3.0}

    written = (project / "workbench.toml").read_text()
    again = wb(tmp_path, "init", "churn")
    assert again.returncode == 3 and "exists already" in again.stderr and "--force" in again.stderr
    assert (project / "workbench.toml").read_text() == written
    assert wb(tmp_path, "init", "churn", "--force").returncode == 0

    (tmp_path / "empty").mkdir()
    nothing = wb(tmp_path, "init", "empty")
    assert nothing.returncode == 3 and nothing.stderr.startswith("error: ") and "no stage scripts" in nothing.stderr
    assert not (tmp_path / "empty" / "workbench.toml").exists()


def test_init_makes_no_stage_of_a_helper_module_and_gives_each_stage_its_own_inputs(tmp_path: Path):
    project = tmp_path / "credit"
    (project / "data").mkdir(parents=True)
    (project / "data" / "credit.csv").write_text("income,debt,default\n10,1,0\n20,9,1\n30,2,0\n")
    (project / "data" / "holdout.csv").write_text("income,debt,default\n15,3,0\n")
    (project / "params.toml").write_text("[train]\nscale = 2.0\n")
    (project / "features.py").write_text(
        '"""Feature helpers shared by the stages."""\nimport csv\n\n'
        "def ratios(path):\n    return [float(r['debt']) / float(r['income']) for r in csv.DictReader(open(path))]\n")
    (project / "train.py").write_text(
        "import json, wb\nfrom features import ratios\n\n"
        "def main():\n    params = wb.load_params('params.toml', 'train')\n"
        "    wb.log_metrics({'mean_ratio': params['scale'] * sum(ratios('data/credit.csv')) / 3})\n\n"
        "if __name__ == '__main__':\n    main()\n")
    (project / "evaluate.py").write_text(
        "import wb\nfrom features import ratios\nwb.log_metrics({'holdout_rows': len(ratios('data/holdout.csv'))})\n")

    done = wb(tmp_path, "init", "credit", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stages"] == ["train", "evaluate"]
    manifest = parse_manifest((project / "workbench.toml").read_text())
    assert "features" not in manifest.stages
    # train reads [train] of params.toml (wb.load_params): that key, not the whole file
    assert manifest.stages["train"].inputs == ("train.py", "features.py", "data/credit.csv")
    assert [ref.key for ref in manifest.stages["train"].params] == ["train"]
    assert manifest.stages["evaluate"].inputs == ("evaluate.py", "features.py", "data/holdout.csv")
    assert "#   features.py: a module imported by evaluate.py, train.py, not a script" in (
        project / "workbench.toml").read_text()

    run = wb(tmp_path, "run", "credit", "--runner", "local", "--json")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert [s["stage"] for s in record["stages"]] == ["contract", "train", "evaluate"]  # init's first contracts
    assert record["stages"][1]["metrics"] == {"mean_ratio": pytest.approx(2 * (0.1 + 0.45 + 2 / 30) / 3)}
    assert record["stages"][2]["metrics"] == {"holdout_rows": 1.0}
    # an edit of the holdout reruns evaluate alone: train does not read it
    (project / "data" / "holdout.csv").write_text("income,debt,default\n15,3,0\n16,4,1\n")
    again = json.loads(wb(tmp_path, "run", "credit", "--runner", "local", "--json").stdout)
    assert {s["stage"]: s["status"] for s in again["stages"]} == {"contract": "succeeded", "train": "reused",
                                                                  "evaluate": "succeeded"}


def test_scripts_in_a_stages_folder_become_stages_whatever_their_names_and_follow_what_they_read():
    """A new user's HMDA project: stages/check.py, fit.py and score_holdout.py, none with a usual
    name, were refused ("no stage scripts found"). A script in stages/ that does its work is a
    stage; `wb.upstream("fit", ...)` makes it follow fit; one that reads no other stage's
    outputs follows nothing, and the manifest says so for its reader to decide."""
    sources = {
        "stages/features.py": "import pandas as pd\ndef load():\n    return pd.read_csv('data/t.csv')\n",
        "stages/check.py": "import pandas as pd\ndf = pd.read_csv('data/t.csv')\nprint(len(df))\n",
        "stages/fit.py": "import wb\nfrom features import load\nload()\nprint('fit')\n",
        "stages/score_holdout.py": "import wb\nfrom features import load\nm = wb.upstream('fit', 'model.txt')\nprint(m)\n",
        "stages/_private.py": "print('not a stage: a leading underscore')\n",
    }
    files = [*sources, "data/t.csv"]
    scaffold = survey("hmda", files, sources)
    assert [(s.name, s.depends_on) for s in scaffold.stages] == [
        ("check", ()), ("fit", ()), ("score_holdout", ("fit",))]
    assert ("stages/features.py", "a module imported by stages/fit.py, stages/score_holdout.py, not a script") \
        in scaffold.not_stages
    text = manifest_text(scaffold)
    manifest = parse_manifest(text, "workbench.toml")
    assert manifest.stages["score_holdout"].depends_on == ("fit",)
    assert "# depends_on = [...]" in text.split("[stages.fit]")[1].split("[stages.")[0]


def test_a_usual_name_follows_the_stage_it_reads_before_the_usual_order():
    sources = {
        "stages/validate.py": "print('ok')\n",
        "stages/train.py": "print('train')\n",
        "stages/evaluate.py": "import wb\nwb.upstream('train', 'model.txt')\nwb.upstream('prep', 'x.parquet')\n",
        "stages/prep.py": "print('prep')\n",
    }
    scaffold = survey("p", list(sources), sources)
    order = [s.name for s in scaffold.stages]
    deps = {s.name: s.depends_on for s in scaffold.stages}
    assert deps == {"validate": (), "train": ("validate",), "evaluate": ("train", "prep"), "prep": ()}
    assert order.index("prep") < order.index("evaluate") and order.index("train") < order.index("evaluate")

"""A stage's command names the scripts it runs: the manifest keeps them inside the project, and a
typo (`python stages/trian.py`) fails the stage before it starts, naming the manifest key and the
missing file, on every runner (issue 11 item 13)."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import wb
from tests.test_pipeline_local import MANIFEST, write_project
from workbench.core.stage_command import command_scripts, missing_scripts

SCRIPTS = [
    ("python stages/train.py", ["stages/train.py"]),
    ("python3 -u ./train.py --rounds 10", ["train.py"]),
    ("FOO=1 exec python3.11 -W ignore x.py > log.txt 2>&1", ["x.py"]),
    ("/usr/bin/env python a.py && bash -e scripts/b.sh; ./run.sh", ["a.py", "scripts/b.sh", "run.sh"]),
    ("python prep.py | python fit.py", ["prep.py", "fit.py"]),
    ("python a.py>log 2>&1;python b.py", ["a.py", "b.py"]),
    ("cd src && python train.py", ["src/train.py"]),
    ("(cd src && python a.py); python b.py", ["src/a.py", "b.py"]),
    ("cd .. && python x.py", ["../x.py"]),
    ("cd $HOME && python x.py", []),
    ("python ./a/../b.py", ["b.py"]),
    ("Rscript model.R", ["model.R"]),
    ("node --require ./setup.js app.js", []),
    ("perl -I lib tool.pl", []),
    ("python --check-hash-based-pycs always x.py", []),
    ("python -m pkg.train", []),
    ("python -c 'import x'", []),
    ("python -uc 'import x'", []),
    ("sh -c 'python a.py'", []),
    ("python $SCRIPT", []),
    ("python stages/*.py", []),
    ("cat data.csv | python -", []),
    ("make train", []),
    ("echo 'unbalanced", []),
]


@pytest.mark.parametrize("command,scripts", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_the_scripts_a_command_runs(command, scripts):
    assert command_scripts(command) == scripts


FILES = ["stages/train.py", "stages/common.py", "data/churn.csv", "pkg/__main__.py"]
MISSING = [
    ("python stages/trian.py", [("stages/trian.py", "stages/train.py")]),
    ("python stages/train.py", []),
    ("python ./stages/train.py", []),
    ("python pkg", []),  # a folder with __main__.py runs
    ("python stages/train.py && python stages/evaluate.py", [("stages/evaluate.py", None)]),
    ("python /opt/tool.py", []),  # a program of the image, not of the project
    ("cd stages && python train.py", []),
    ("cd stage && python train.py", [("stage/train.py", "stages/train.py")]),
]


@pytest.mark.parametrize("command,missing", MISSING, ids=[m[0] for m in MISSING])
def test_missing_scripts_come_with_the_closest_name(command, missing):
    assert missing_scripts(command, FILES) == missing


def _typo_project(tmp_path):
    write_project(tmp_path, **{"workbench.toml": MANIFEST.replace('command = "python fit.py"',
                                                                  'command = "python fitt.py"')})
    return tmp_path


def _assert_named_before_it_ran(done, tmp_path):
    assert done.returncode == 1, done.stderr
    record = json.loads(done.stdout)
    prep, fit = record["stages"]
    assert prep["status"] == "succeeded", prep
    assert fit["status"] == "failed"
    assert fit["reason"] == ("workbench.toml: stages.fit.command runs fitt.py, which is not in the project "
                             "(did you mean fit.py?)")
    assert fit["started_at"] is None and fit["log_tail"] == []  # nothing ran
    assert "Traceback" not in done.stdout + done.stderr
    assert record["reason"] == f"stage fit failed: {fit['reason']}"


def test_a_typo_in_a_command_names_the_key_and_the_file_on_the_local_runner(tmp_path):
    done = wb(_typo_project(tmp_path), "run", "tiny", "--runner", "local", "--json")
    _assert_named_before_it_ran(done, tmp_path)
    human = wb(tmp_path, "run", "tiny", "--runner", "local")
    assert "stages.fit.command runs fitt.py, which is not in the project (did you mean fit.py?)" in human.stdout


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["warm", "cold"])
def test_a_typo_in_a_command_names_the_key_and_the_file_in_docker(tmp_path, docker_base_image, mode):
    ws = _typo_project(tmp_path)
    manifest = ws / "tiny" / "workbench.toml"
    manifest.write_text(manifest.read_text().replace(
        'primary_metric = "score"\n', f'primary_metric = "score"\n\n[environment]\nbase_image = "{docker_base_image}"\n'))
    done = wb(ws, "run", "tiny", "--runner", "docker", *(["--cold"] if mode == "cold" else []), "--json")
    _assert_named_before_it_ran(done, tmp_path)

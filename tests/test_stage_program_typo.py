"""A typo in a stage's interpreter (`pyhton fit.py`) fails the stage before it starts, naming the
manifest key and the likely program; a program the environment lacks (exit code 127, "not
found") fails it naming the key too. It said `exited with code 127: sh: 1: pyhton: not found`."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import wb
from tests.test_pipeline_local import MANIFEST, write_project
from workbench.core.stage_command import misspelt_programs

PROGRAMS = [
    ("pyhton stages/x.py", [("pyhton", "python")]),
    ("pyton3 -u x.py", [("pyton3", "python3")]),
    ("FOO=1 exec pythn x.py", [("pythn", "python")]),
    ("cd src && Rscrpt model.R", [("Rscrpt", "Rscript")]),
    ("bsah run.sh", [("bsah", "bash")]),
    ("python x.py && pyhton y.py", [("pyhton", "python")]),
    # Real programs near those names are not typos, nor is anything the project has or a path.
    ("python3.11 x.py", []), ("ipython x.py", []), ("cython x.pyx", []), ("make train", []),
    ("java -jar x.jar", []), ("pytest -q", []), ("./pyhton x.py", []), ("/usr/bin/python x.py", []),
    ("pyhton x.py", []),  # only when the project has a file of that name (listed below)
]


@pytest.mark.parametrize("command,found", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_programs_that_read_as_a_typo_of_an_interpreter(command, found):
    files = ["pyhton"] if command == "pyhton x.py" else ["x.py"]
    assert misspelt_programs(command, files) == found


def _run(tmp_path, command: str):
    write_project(tmp_path, **{"workbench.toml": MANIFEST.replace('command = "python fit.py"',
                                                                  f'command = "{command}"')})
    done = wb(tmp_path, "run", "tiny", "--runner", "local", "--json")
    assert done.returncode == 1, done.stderr
    prep, fit = json.loads(done.stdout)["stages"]
    assert prep["status"] == "succeeded" and fit["status"] == "failed", (prep, fit)
    return fit


def test_a_misspelt_interpreter_names_the_key_before_the_stage_runs(tmp_path):
    fit = _run(tmp_path, "pyhton fit.py")
    assert fit["reason"] == ("workbench.toml: stages.fit.command runs the program pyhton, which is no file of the "
                             "project (did you mean python?)")
    assert fit["started_at"] is None  # nothing ran


def test_a_program_the_environment_lacks_names_the_key(tmp_path):
    fit = _run(tmp_path, "fitter-tool fit.py")  # no near name: it runs, and the shell cannot find it
    assert fit["exit_code"] == 127
    assert fit["reason"].startswith("workbench.toml: stages.fit.command runs fitter-tool, a program the stage's "
                                    "environment does not have (exit code 127: "), fit["reason"]
    assert fit["reason"].endswith("not found)"), fit["reason"]

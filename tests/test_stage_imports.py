"""What a stage's `python stages/x.py` sees on sys.path, on every runner (issue 11 item 14).

The example's stages said a warm worker does not put the script's folder on sys.path and
inserted it by hand, yet a plain `from common import ...` worked warm, cold and local: every
runner starts a plain `python script.py` command as python does, script folder first. These
tests hold the runners to that, and the example to saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_STAGES = REPO / "projects" / "telco-churn" / "stages"

MANIFEST = """
[project]
name = "imports"

[stages.fit]
command = "python stages/fit.py"
inputs = ["stages/*.py"]
"""

FIT = """
import os, sys
from helper import answer          # stages/helper.py, beside this script: no sys.path edits
import wb
wb.log_metrics({"answer": answer(), "script_dir_first": sys.path[0] == os.path.dirname(os.path.abspath(__file__))})
"""

HELPER = """
def answer():
    return 42
"""


def _project(root: Path) -> Path:
    folder = root / "imports"
    (folder / "stages").mkdir(parents=True)
    (folder / "workbench.toml").write_text(MANIFEST)
    (folder / "stages" / "fit.py").write_text(FIT)
    (folder / "stages" / "helper.py").write_text(HELPER)
    return folder


def _run(root: Path, *options: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-m", "workbench", "-w", str(root), "run", "imports", "--json", *options],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def _check(root: Path, record: dict) -> None:
    fit = record["stages"][0]
    assert fit["status"] == "succeeded", fit["reason"]
    assert fit["metrics"] == {"answer": 42.0, "script_dir_first": 1.0}
    snapshot = root / ".workbench" / "snapshots" / record["snapshot_id"]
    assert not list(snapshot.rglob("__pycache__")), "importing a helper wrote bytecode into the snapshot"


def test_the_example_stages_do_not_patch_sys_path():
    """They import common.py beside them plainly, and their comments say why that works."""
    for script in sorted(EXAMPLE_STAGES.glob("*.py")):
        text = script.read_text()
        assert "sys.path.insert" not in text and "without putting its folder on sys.path" not in text, script.name


def test_a_helper_beside_the_script_imports_on_the_local_runner(tmp_path):
    _project(tmp_path)
    _check(tmp_path, _run(tmp_path, "--runner", "local"))


@pytest.mark.docker
@pytest.mark.slow
def test_a_helper_beside_the_script_imports_warm_and_cold(tmp_path, docker_engine, docker_base_image):
    _project(tmp_path)
    env = {"WORKBENCH_BASE_IMAGE": docker_base_image}
    warm = _run(tmp_path, "--runner", "docker", env=env)
    _check(tmp_path, warm)
    (tmp_path / "imports" / "stages" / "helper.py").write_text(HELPER + "\n# edited: run again\n")
    _check(tmp_path, _run(tmp_path, "--runner", "docker", "--cold", env=env))

"""A promotion writes, into the version's deploy release, the per-row rules of the data contract
its run was checked against (`contract.json`): the contract as it was in that run's snapshot,
not as it is in the project now, and still when `workbench gc` removed the snapshot folder (the
contract stage recorded the file's hash). No contract in the run: no file. Tiny project, local
runner, real DuckDB, the CLI as a subprocess."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.test_cli import wb
from tests.test_pipeline_local import write_project
from tests.test_serving_schema import MANIFEST_WITH_DATA, release

DATA = "age,plan,y\n30,basic,1\n41,pro,0\n"
CONTRACT = """[columns.age]
type = "integer"
nullable = false
max = 60

[columns.plan]
type = "string"
categories = ["basic", "pro"]

[columns.y]
type = "integer"
unique = true
"""


def test_the_release_keeps_the_contract_of_its_run_not_the_one_edited_since(tmp_path: Path):
    root = tmp_path / "ws"
    project = write_project(root, **{"workbench.toml": MANIFEST_WITH_DATA, "data.csv": DATA,
                                     "data.csv.contract.toml": CONTRACT})
    ran = wb(root, "run", "tiny", "--runner", "local")
    assert ran.returncode == 0, ran.stderr
    # edited after the run: version 1 was not trained under this one
    (project / "data.csv.contract.toml").write_text(CONTRACT.replace("max = 60", "max = 999"))

    assert wb(root, "promote", "tiny", "1", "--to", "staging", "--yes").returncode == 0
    served = json.loads((release(root, "staging") / "contract.json").read_text())
    assert served == {"source": "data.csv.contract.toml",
                      "columns": {"age": {"nullable": False, "severity": "error", "type": "integer", "max": 60},
                                  "plan": {"nullable": True, "severity": "error", "type": "string",
                                           "categories": ["basic", "pro"]}},
                      "left_out": []}  # y is the target: requests do not carry it

    # The snapshot folder gone (workbench gc): the contract stage's recorded input still says which.
    shutil.rmtree(root / ".workbench" / "snapshots")
    done = wb(root, "promote", "tiny", "1", "--to", "production", "--yes")
    assert done.returncode == 0, done.stderr
    assert release(root, "production") != release(root, "staging")  # a release of its own, written anew
    assert json.loads((release(root, "production") / "contract.json").read_text()) == served


def test_a_run_without_a_contract_gives_a_release_without_one(tmp_path: Path):
    root = tmp_path / "ws"
    project = write_project(root, **{"workbench.toml": MANIFEST_WITH_DATA, "data.csv": DATA})
    assert wb(root, "run", "tiny", "--runner", "local").returncode == 0
    (project / "data.csv.contract.toml").write_text(CONTRACT)  # written after the run: not version 1's
    assert wb(root, "promote", "tiny", "1", "--to", "staging", "--yes").returncode == 0
    assert (release(root, "staging") / "schema.json").is_file()
    assert not (release(root, "staging") / "contract.json").exists()

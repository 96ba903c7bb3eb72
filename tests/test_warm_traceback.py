"""A stage's traceback in the warm worker reads as `python script.py` prints it: the stage's own
frames, not the worker server's (`/wb/lib/wb_worker.py`, `run_child`) and runpy's four frames
above them, which a user took for a bug of the workbench."""

from __future__ import annotations

import pytest

from tests.test_warm_worker import project, run, runner  # noqa: F401  (runner is a fixture)
from workbench.core.model import StageStatus

pytestmark = pytest.mark.docker

COMMON = """
def load(path):
    raise ValueError(f"bad column in {path}")
"""

BOOM = """
from common import load
load("data.csv")
"""


def test_a_warm_stage_traceback_holds_only_the_stage_frames(tmp_path, runner):  # noqa: F811
    project(tmp_path, "trace", {"boom": "python stages/boom.py"})
    (tmp_path / "trace" / "stages").mkdir()
    (tmp_path / "trace" / "stages" / "common.py").write_text(COMMON)
    (tmp_path / "trace" / "stages" / "boom.py").write_text(BOOM)
    (boom,) = run(tmp_path, "trace", runner).stages
    assert boom.status is StageStatus.FAILED and boom.reason == "exited with code 1: ValueError: bad column in data.csv"
    tail = boom.log_tail
    assert tail[0] == "Traceback (most recent call last):", tail
    files = [line.strip() for line in tail if line.strip().startswith("File ")]
    assert len(files) == 2, tail
    assert "stages/boom.py" in files[0] and ", line 3, in <module>" in files[0], tail
    assert "stages/common.py" in files[1] and "in load" in files[1], tail
    assert not any("wb_worker" in line or "runpy" in line for line in tail), tail

"""Parallel stages on the real Docker engine, warm path: two independent stages run at the
same time, each in a warm worker of its own (one slot per worker: the isolation contract), and
the next run's parallel stages reuse those workers."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from workbench.adapters.docker_runner import DockerRunner
from workbench.core.events import StageFinished, StageStarted
from workbench.core.model import RunStatus
from workbench.services.pipeline import PipelineService
from workbench.services.workspace import Workspace

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MANIFEST = """
[project]
name = "pair"

[environment]
memory = "256m"
preload = ["decimal"]

[stages.left]
command = "python nap.py"
inputs = ["nap.py"]

[stages.right]
command = "python nap.py"
inputs = ["nap.py"]
"""

NAP = """
import os, time, wb
began = time.time()  # the host's clock: a container shares the kernel's
time.sleep(2.0)
# What the stage's container sees of the workspace: its own folders only.
wb.log_metrics({"project_files": len(os.listdir(os.environ["WB_PROJECT_DIR"])), "began": began,
                "ended": time.time()})
"""


@pytest.fixture
def runner(docker_engine, docker_base_image, monkeypatch):
    monkeypatch.setenv("WORKBENCH_BASE_IMAGE", docker_base_image)
    runner = DockerRunner(mode="warm")
    yield runner
    runner.close()


def run(root: Path, runner: DockerRunner):
    from workbench.adapters.duckdb_store import DuckDBLineageStore

    workspace = Workspace(root)
    store = DuckDBLineageStore(workspace.ensure_state_dir() / "lineage.duckdb")
    events: list = []
    times: dict[tuple[str, str], float] = {}

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, StageStarted):
            times[("start", event.stage)] = time.monotonic()
        elif isinstance(event, StageFinished):
            times[("end", event.result.stage)] = time.monotonic()

    record = PipelineService(workspace, store, runner).run(workspace.project("pair"), jobs=2, reuse=False,
                                                             on_event=on_event)
    return record, times


def assert_ran_at_once(left, right) -> None:
    """The stages' own clocks, inside their containers: StageStarted is sent before a stage
    waits for a worker, so the events alone would overlap even if the stages took turns."""
    began, ended = (left.metrics["began"], right.metrics["began"]), (left.metrics["ended"], right.metrics["ended"])
    assert max(began) < min(ended), f"the stages took turns: began {began}, ended {ended}"


def test_two_stages_run_at_once_in_warm_workers_of_their_own(tmp_path, runner, docker_engine):
    folder = tmp_path / "pair"
    folder.mkdir()
    (folder / "workbench.toml").write_text(MANIFEST)
    (folder / "nap.py").write_text(NAP)

    record, times = run(tmp_path, runner)
    assert record.status is RunStatus.SUCCEEDED, record.reason
    assert times[("start", "left")] < times[("end", "right")] and times[("start", "right")] < times[("end", "left")]
    left, right = record.stages
    assert_ran_at_once(left, right)
    assert left.metrics["project_files"] == right.metrics["project_files"] == 2  # the snapshot, nothing more
    workers = docker_engine.containers.list(filters={"label": ["workbench.role=worker", "workbench.project=pair"]})
    assert len(workers) == 2, "each running stage needs a worker (a slot) of its own"
    for worker in workers:
        mounts = {m["Destination"] for m in worker.attrs["Mounts"]}
        assert mounts == {"/wb/project", "/wb/upstream", "/wb/out", "/wb/ctl", "/wb/lib"}
    sources = {m["Source"] for w in workers for m in w.attrs["Mounts"] if m["Destination"] == "/wb/out"}
    assert len(sources) == 2, "two workers must never share a slot"

    # The next run's parallel stages take the two workers there are: no container is created.
    since = datetime.now(timezone.utc)
    record, times = run(tmp_path, runner)
    assert record.status is RunStatus.SUCCEEDED, record.reason
    assert times[("start", "left")] < times[("end", "right")] and times[("start", "right")] < times[("end", "left")]
    assert_ran_at_once(*record.stages)
    created = docker_engine.events(since=since, until=datetime.now(timezone.utc) + timedelta(seconds=1), decode=True,
                                   filters={"type": "container", "event": "create", "label": "workbench.project=pair"})
    assert list(created) == []

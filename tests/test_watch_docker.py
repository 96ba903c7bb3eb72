"""Watch mode on the real Docker engine: a change during a run stops the run's container and the
replacing run reflects the final file."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.test_watch import SLOW_PREP, Events, wait_until
from workbench.core.events import (
    ChangeDetected, RunFinished, RunStarted, RunSuperseded, StageLog, WatchStarted,
)
from workbench.core.model import RunStatus, Trigger
from workbench.services.session import WorkbenchSession
from workbench.services.watch import WatchService

pytestmark = pytest.mark.docker

MANIFEST = """
[project]
name = "watch-docker"

[environment]
memory = "256m"
cold = true          # a container per stage: the one a supersede must stop

[stages.prep]
command = "python prep.py"
inputs = ["prep.py", "data.txt"]
outputs = ["clean.txt"]

[watch]
debounce_ms = 150
"""


def containers_of(client, run_id: int) -> list:
    return client.containers.list(all=True, filters={"label": f"workbench.run_id={run_id}"})


def test_a_change_during_a_docker_run_stops_its_container_and_supersedes_it(
        tmp_path: Path, docker_engine, docker_base_image, monkeypatch):
    monkeypatch.setenv("WORKBENCH_BASE_IMAGE", docker_base_image)
    project = tmp_path / "watch-docker"
    project.mkdir()
    for name, text in {"workbench.toml": MANIFEST, "prep.py": SLOW_PREP, "data.txt": "a\n"}.items():
        (project / name).write_text(textwrap.dedent(text))
    session = WorkbenchSession(tmp_path, runner="docker")
    events = Events()
    service = WatchService(session, events)
    try:
        service.watch("watch-docker")
        events.wait_for(WatchStarted)

        (project / "data.txt").write_text("slow\n")
        first = events.wait_for(RunStarted, timeout=120)  # the first run may build the image
        assert first.runner == "docker" and first.trigger == "watch"
        events.wait_for(StageLog, lambda e: e.run_id == first.run_id and e.line == "sleeping", timeout=60)
        (running,) = containers_of(docker_engine, first.run_id)
        assert running.status == "running"

        tmp = project / ".data.txt.tmp"
        tmp.write_text("final\n")
        os.replace(tmp, project / "data.txt")
        link = events.wait_for(RunSuperseded, timeout=30)
        replacing = events.wait_for(RunFinished, lambda e: e.record.id == link.by_run_id, timeout=60).record

        superseded = session.get_run(first.run_id)
        assert superseded.status is RunStatus.SUPERSEDED and superseded.superseded_by == replacing.id
        assert superseded.stages[0].status == "cancelled"
        wait_until(lambda: all(c.status != "running" for c in containers_of(docker_engine, first.run_id)),
                   10, "the superseded run's container to stop")
        assert replacing.status is RunStatus.SUCCEEDED and replacing.trigger is Trigger.WATCH
        assert replacing.changed_paths == ["data.txt"]
        assert Path(replacing.stages[0].output_dir, "clean.txt").read_text() == "FINAL"
        assert len(events.of(ChangeDetected)) == 2
    finally:
        service.close()
    assert [r.status for r in session.runs()] == ["succeeded", "superseded"]

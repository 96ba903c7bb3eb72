"""The cluster everywhere a user meets it (issue 16): the scheduler from workspace.toml, the
environment or --scheduler; the cluster's cpus as the default parallelism; `workbench cluster
status` through the CLI; the cluster in the TUI's status line. Real processes: a `dask
scheduler` and two `dask worker`s declaring cpus=1 each, started by this module."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.conftest import skip_unless_ci
from tests.test_cluster_runner import _free_port
from tests.test_pipeline_local import write_project
from workbench.cli.main import main
from workbench.core.model import RunStatus
from workbench.core.ports import CancelToken
from workbench.services.session import WorkbenchSession

try:
    import distributed
except ImportError:  # pragma: no cover - scripts/setup.sh installs the extra
    skip_unless_ci("the cluster extra is not installed: pip install -e .[cluster]", module=True)
REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
DOWN = "tcp://127.0.0.1:9"
"""Nothing listens there (the discard port): a scheduler that is down."""

TWO_STAGES = """
[project]
name = "pair"
primary_metric = "a"

[stages.left]
command = "python stage.py left"
inputs = ["stage.py"]
cpus = 1

[stages.right]
command = "python stage.py right"
inputs = ["stage.py"]
cpus = 1
"""

STAGE = """
import sys, time, wb
time.sleep(float(open("seconds.txt").read()))
wb.log_metrics({"a" if sys.argv[1] == "left" else "b": 1.0})
"""


@contextlib.contextmanager
def start_cluster(root: Path, workers: int = 2, cpus: int = 1):
    """A scheduler and `workers` workers (w1, w2...) declaring `cpus` each, with their own cache
    folders; yields the scheduler's address. The processes see this checkout first."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    dask = [str(Path(sys.executable).parent / "dask")]
    procs = [subprocess.Popen(dask + ["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                      "--no-dashboard"],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(root / "scheduler.log", "w"))]
    for n in range(1, workers + 1):
        procs.append(subprocess.Popen(
            dask + ["worker", address, "--nthreads", str(cpus), "--resources", f"cpus={cpus}", "--no-dashboard",
                    "--name", f"w{n}"],
            env={**env, "WORKBENCH_WORKER_CACHE": str(root / f"w{n}")}, stdout=subprocess.DEVNULL,
            stderr=open(root / f"w{n}.log", "w")))
    try:
        client = distributed.Client(address, timeout=30)
        client.wait_for_workers(workers, timeout=60)
        client.close()
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> str:
    with start_cluster(tmp_path_factory.mktemp("cluster")) as address:
        yield address


@pytest.fixture(autouse=True)
def no_scheduler_variable(monkeypatch):
    monkeypatch.delenv("WORKBENCH_SCHEDULER", raising=False)


def write_pair(root: Path, seconds: float = 1.5) -> Path:
    project = root / "pair"
    project.mkdir(parents=True, exist_ok=True)
    for name, text in {"workbench.toml": TWO_STAGES, "stage.py": STAGE, "seconds.txt": str(seconds)}.items():
        (project / name).write_text(textwrap.dedent(text))
    return project


def write_config(root: Path, text: str) -> None:
    (root / "workspace.toml").write_text(textwrap.dedent(text))


def test_the_default_parallelism_is_the_clusters_cpus_not_this_machines(cluster, tmp_path, monkeypatch):
    """A one-core laptop driving a two-worker cluster: both independent stages run at once
    (the cluster holds cpus=2 in all), where the local CPU count would run them one by one."""
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    write_pair(tmp_path)
    write_config(tmp_path, f'[cluster]\nscheduler = "{cluster}"\nrunner = "cluster"\n')
    session = WorkbenchSession(tmp_path)  # no runner given: the workspace's
    assert session.stage_budget.total == 1  # what the laptop alone would allow
    record = session.run("pair")

    assert record.status is RunStatus.SUCCEEDED, record.reason
    assert record.runner == "cluster"
    left, right = sorted(record.stages, key=lambda s: s.stage)
    assert max(left.started_at, right.started_at) < min(left.finished_at, right.finished_at), \
        f"the stages ran one after the other: {left.started_at}-{left.finished_at}, {right.started_at}-{right.finished_at}"
    assert session.stage_budget.total == 2
    assert session.runner.capacity() == 2
    workers = {session.runner.ran_on[(record.id, s)][0] for s in ("left", "right")}
    assert len(workers) == 2  # cpus=1 each: the cluster's accounting put one stage on each

"""Warm workers on the real Docker engine: reuse of one container, clean children, the same
failure reporting as the cold path, stuck children (including the real OpenMP-after-fork hang),
cancellation, a worker that dies, and the lifecycle."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import docker
import pytest

from workbench.adapters.docker_runner import DockerRunner
from workbench.core.events import StageStarted
from workbench.core.model import RunStatus, StageStatus
from workbench.core.ports import CancelToken
from workbench.services.pipeline import PipelineService
from workbench.services.workspace import Workspace

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parent.parent

MANIFEST = """
[project]
name = "{name}"

[environment]
memory = "{memory}"
preload = [{preload}]

{stages}
"""

CHECK_WARM = """
import json, os, sys
import wb
warm = "decimal" in sys.modules          # preloaded by the worker, never imported here
leaked = os.environ.get("LEAK") or getattr(sys.modules["json"], "LEAK", None)
os.environ["LEAK"] = "yes"; sys.modules["json"].LEAK = "yes"
wb.log_metrics({"warm": warm, "leaked": leaked is not None, "pid": os.getpid()})
open(wb.output_path("cwd.txt"), "w").write(os.getcwd())
print("stage", os.environ["WB_STAGE"], "ran")
"""


def project(root: Path, name: str, stages: dict[str, str], files: dict[str, str] | None = None,
            memory: str = "256m", preload: tuple[str, ...] = ("decimal",)) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    blocks = []
    previous = None
    for stage, command in stages.items():
        dep = f'depends_on = ["{previous}"]\n' if previous else ""
        blocks.append(f'[stages.{stage}]\ncommand = """{command}"""\n{dep}')
        previous = stage
    (folder / "workbench.toml").write_text(MANIFEST.format(
        name=name, memory=memory, preload=", ".join(f'"{m}"' for m in preload), stages="\n".join(blocks)))
    for path, text in (files or {}).items():
        (folder / path).write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def runner(docker_engine, docker_base_image, monkeypatch):
    monkeypatch.setenv("WORKBENCH_BASE_IMAGE", docker_base_image)
    runner = DockerRunner(stall_s=2.0)
    yield runner
    runner.close()


def run(root: Path, name: str, runner: DockerRunner, **kwargs):
    from workbench.adapters.duckdb_store import DuckDBLineageStore

    workspace = Workspace(root)
    store = DuckDBLineageStore(workspace.ensure_state_dir() / "lineage.duckdb")
    return PipelineService(workspace, store, runner).run(workspace.project(name), **kwargs)


def workers(client, project_name: str) -> list:
    return client.containers.list(all=True, filters={"label": ["workbench.role=worker",
                                                              f"workbench.project={project_name}"]})


def test_stages_share_one_warm_worker_and_each_child_starts_clean(tmp_path, runner, docker_engine):
    project(tmp_path, "warm", {"one": "python check.py", "two": "python check.py"}, {"check.py": CHECK_WARM})
    since = datetime.now(timezone.utc)
    record = run(tmp_path, "warm", runner)
    assert record.status is RunStatus.SUCCEEDED, record.reason
    one, two = record.stages
    assert one.metrics["warm"] == 1.0 and two.metrics["warm"] == 1.0
    assert two.metrics["leaked"] == 0.0, "environment or module state leaked from one child to the next"
    assert one.metrics["pid"] != two.metrics["pid"]
    assert Path(one.output_dir, "cwd.txt").read_text() == "/wb/project", "the same paths as a cold container"
    created = docker_engine.events(since=since, until=datetime.now(timezone.utc) + timedelta(seconds=2), decode=True,
                                   filters={"type": "container", "event": "create", "label": "workbench.project=warm"})
    assert len(list(created)) == 1

    (container,) = workers(docker_engine, "warm")
    attrs = container.attrs
    mounts = {m["Destination"]: m["RW"] for m in attrs["Mounts"]}
    # Only the stage's own folders and a read-only control folder: nothing else of the workspace.
    assert mounts == {"/wb/project": False, "/wb/upstream": False, "/wb/out": True, "/wb/ctl": False,
                      "/wb/lib": False}
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
    assert host["Memory"] == 256 * 1024**2 and attrs["Config"]["User"] not in ("", "0", "root", "0:0")
    assert "OMP_NUM_THREADS=1" in attrs["Config"]["Env"], "OpenMP must size its pool to the 1-CPU limit"


def test_failures_are_reported_as_on_the_cold_path(tmp_path, runner):
    project(tmp_path, "bad", {"exits": "python fail.py"},
            {"fail.py": "import sys\nprint('about to fail')\nsys.exit(3)\n"})
    (exits,) = run(tmp_path, "bad", runner).stages
    assert exits.status is StageStatus.FAILED and exits.reason == "exited with code 3: about to fail"

    project(tmp_path, "raises", {"raises": "python boom.py"}, {"boom.py": "raise ValueError('bad column')\n"})
    (raises,) = run(tmp_path, "raises", runner).stages
    assert raises.reason == "exited with code 1: ValueError: bad column"
    assert raises.log_tail[0] == "Traceback (most recent call last):"

    project(tmp_path, "hog", {"hog": "python hog.py"}, {"hog.py": "x = bytearray(300 * 1024 * 1024)\n"}, memory="96m")
    (hog,) = run(tmp_path, "hog", runner).stages
    assert hog.status is StageStatus.FAILED and "exceeded its memory limit" in hog.reason


def test_a_stuck_child_is_killed_and_the_worker_stays_usable(tmp_path, runner, docker_engine):
    project(tmp_path, "stuck", {"hang": "python hang.py"}, {"hang.py": "import threading\nthreading.Event().wait()\n"})
    started = time.monotonic()
    (hang,) = run(tmp_path, "stuck", runner).stages
    assert hang.status is StageStatus.FAILED and hang.reason.startswith("stuck: no CPU time and no output")
    assert time.monotonic() - started < 30
    (worker,) = workers(docker_engine, "stuck")

    (tmp_path / "stuck" / "hang.py").write_text("print('fine now')\n")
    (fine,) = run(tmp_path, "stuck", runner).stages
    assert fine.status is StageStatus.SUCCEEDED and fine.log_tail == ["fine now"]
    assert [w.id for w in workers(docker_engine, "stuck")] == [worker.id]


def test_a_stage_that_stops_the_worker_server_still_ends_at_its_timeout(tmp_path, runner, docker_engine,
                                                                        monkeypatch):
    """A stage runs as the server's user, so it can SIGSTOP it; then only the host can end it."""
    from workbench.adapters import warm_worker

    monkeypatch.setattr(warm_worker, "CANCEL_GRACE_S", 1.0)
    folder = project(tmp_path, "frozen", {"freeze": "python freeze.py"},
                     {"freeze.py": "import os, signal, time\nos.kill(os.getppid(), signal.SIGSTOP)\ntime.sleep(60)\n"})
    manifest = (folder / "workbench.toml").read_text()
    (folder / "workbench.toml").write_text(manifest.replace('memory = "256m"', 'memory = "256m"\ntimeout_s = 1'))
    started = time.monotonic()
    (freeze,) = run(tmp_path, "frozen", runner).stages
    assert freeze.status is StageStatus.FAILED and freeze.reason == "timed out after 1 s"
    assert time.monotonic() - started < 15
    assert [w for w in workers(docker_engine, "frozen") if w.status == "running"] == [], "its container is removed"

    (folder / "freeze.py").write_text("print('thawed')\n")
    (again,) = run(tmp_path, "frozen", runner).stages
    assert again.status is StageStatus.SUCCEEDED and again.log_tail == ["thawed"]


POISON = """
import numpy as np, lightgbm as lgb
X = np.random.default_rng(0).random((2000, 10)); y = (X[:, 0] > 0.5).astype(int)
lgb.train({"objective": "binary", "num_threads": 2, "verbose": -1}, lgb.Dataset(X, y), 5)
"""
TRAIN_IN_CHILD = """
import numpy as np, lightgbm as lgb
X = np.random.default_rng(1).random((2000, 10)); y = (X[:, 0] > 0.5).astype(int)
lgb.train({"objective": "binary", "num_threads": 2, "verbose": -1}, lgb.Dataset(X, y), 5)
print("trained")
"""


def test_openmp_after_fork_hang_is_caught(tmp_path, runner, docker_engine):
    """The real hazard: a worker whose server process has run LightGBM's OpenMP pool forks a
    child that hangs in it. The workbench must kill the child and say why, not hang."""
    example = REPO / "projects" / "telco-churn"
    env = runner.prepare(str(example), _manifest(example).environment, lambda _l: None, project="telco-churn")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in {"Dockerfile": f"FROM {env.image_tag}\nCOPY poison.py /opt/wb-venv/lib/python3.11/"
                                         "site-packages/poison.py\n", "poison.py": POISON}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = docker_engine.images.build(fileobj=context, custom_context=True, tag="workbench-test/poisoned:1")
    try:
        folder = project(tmp_path, "poisoned", {"train": "python train.py"}, {"train.py": TRAIN_IN_CHILD},
                         memory="1g", preload=("poison",))
        manifest = (folder / "workbench.toml").read_text()
        (folder / "workbench.toml").write_text(manifest.replace('memory = "1g"', 'memory = "1g"\nbase_image = '
                                                                '"workbench-test/poisoned:1"'))
        (train,) = run(tmp_path, "poisoned", runner).stages
        assert train.status is StageStatus.FAILED and train.reason.startswith("stuck:")
        assert "--cold" in train.reason
        cold = DockerRunner(mode="cold")
        (train_cold,) = run(tmp_path, "poisoned", cold, stages=["train"]).stages
        assert train_cold.status is StageStatus.SUCCEEDED and train_cold.log_tail[-1] == "trained"
    finally:
        for container in workers(docker_engine, "poisoned"):
            container.remove(force=True)
        for img in docker_engine.images.list(filters={"label": "workbench.env=1"}):
            if any(t.startswith("workbench-env/poisoned") for t in img.tags):
                docker_engine.images.remove(img.id, force=True)
        docker_engine.images.remove(image.id, force=True)


def _manifest(folder: Path):
    from workbench.core.manifest import parse_manifest

    return parse_manifest((folder / "workbench.toml").read_text())


def test_cancel_kills_the_child_within_200_ms_and_keeps_the_worker(tmp_path, runner, docker_engine):
    project(tmp_path, "slow", {"sleep": "python sleep.py"},
            {"sleep.py": "import time\nprint('sleeping', flush=True)\nwhile True: time.sleep(0.01)\n"})
    cancel = CancelToken()
    marks: dict[str, float] = {}

    def on_event(event):
        if isinstance(event, StageStarted):
            def later():
                time.sleep(1.0)
                marks["cancel"] = time.monotonic()
                cancel.cancel("superseded by a newer change")
            threading.Thread(target=later, daemon=True).start()

    record = run(tmp_path, "slow", runner, cancel=cancel, on_event=on_event)
    (sleep,) = record.stages
    assert sleep.status is StageStatus.CANCELLED and sleep.reason == "superseded by a newer change"
    assert sleep.finished_at.timestamp() - (time.time() - (time.monotonic() - marks["cancel"])) < 0.2
    assert len(workers(docker_engine, "slow")) == 1 and workers(docker_engine, "slow")[0].status == "running"


def test_a_worker_that_dies_fails_the_stage_and_the_next_gets_a_fresh_one(tmp_path, runner, docker_engine):
    project(tmp_path, "dies", {"sleep": "python sleep.py"},
            {"sleep.py": "import time\nprint('sleeping', flush=True)\ntime.sleep(30)\n"})

    def kill_worker(event):
        if isinstance(event, StageStarted):
            threading.Timer(1.0, lambda: workers(docker_engine, "dies")[0].kill()).start()

    (sleep,) = run(tmp_path, "dies", runner, on_event=kill_worker).stages
    assert sleep.status is StageStatus.FAILED and "the warm worker" in sleep.reason
    (tmp_path / "dies" / "sleep.py").write_text("print('again')\n")
    (again,) = run(tmp_path, "dies", runner).stages
    assert again.status is StageStatus.SUCCEEDED and len(workers(docker_engine, "dies")) == 1


def test_workers_stop_with_the_workbench_and_orphans_are_cleaned(tmp_path, docker_engine, docker_base_image):
    project(tmp_path, "life", {"hello": "python -c print"})
    env = dict(os.environ, WORKBENCH_BASE_IMAGE=docker_base_image)
    code = textwrap.dedent(f"""
        import os, sys
        from workbench.services.session import WorkbenchSession
        record = WorkbenchSession({str(tmp_path)!r}, runner="docker").run("life")
        assert record.status == "succeeded", record.reason
        os._exit(0) if sys.argv[1] == "crash" else None
    """)
    subprocess.run([sys.executable, "-c", code, "exit"], env=env, check=True, timeout=120)
    assert workers(docker_engine, "life") == [], "a clean exit stops the warm worker"

    (tmp_path / "life" / "workbench.toml").write_text(
        (tmp_path / "life" / "workbench.toml").read_text().replace("python -c print", "python -c 'print(1)'"))
    subprocess.run([sys.executable, "-c", code, "crash"], env=env, check=True, timeout=120)
    assert len(workers(docker_engine, "life")) == 1, "os._exit skips clean-up, as a crash would"
    assert DockerRunner().cleanup_orphans(tmp_path / ".workbench") >= 1
    assert workers(docker_engine, "life") == []


def test_a_changed_environment_replaces_the_worker(tmp_path, runner, docker_engine):
    folder = project(tmp_path, "envchange", {"hello": "python hello.py"}, {"hello.py": "print('hi')\n"})
    run(tmp_path, "envchange", runner)
    (first,) = workers(docker_engine, "envchange")
    (folder / "requirements.txt").write_text("# no packages, but a new environment image\n")
    manifest = (folder / "workbench.toml").read_text()
    (folder / "workbench.toml").write_text(manifest.replace('memory = "256m"', 'memory = "256m"\nrequirements = "requirements.txt"'))
    record = run(tmp_path, "envchange", runner)
    assert record.stages[0].status is StageStatus.SUCCEEDED
    (second,) = workers(docker_engine, "envchange")
    assert second.id != first.id
    with pytest.raises(docker.errors.NotFound):
        docker_engine.containers.get(first.id)


def test_watching_starts_the_warm_worker_before_the_first_change(tmp_path, docker_engine, docker_base_image,
                                                                monkeypatch):
    from workbench.services.session import WorkbenchSession
    from workbench.services.watch import WatchService

    monkeypatch.setenv("WORKBENCH_BASE_IMAGE", docker_base_image)
    project(tmp_path, "ahead", {"hello": "python hello.py"}, {"hello.py": "print('hi')\n"})
    session = WorkbenchSession(tmp_path, runner="docker")
    service = WatchService(session, lambda _event: None)
    try:
        service.watch("ahead")
        deadline = time.monotonic() + 60
        while not [w for w in workers(docker_engine, "ahead") if w.status == "running"]:
            assert time.monotonic() < deadline, "no warm worker was started for the watched project"
            time.sleep(0.2)
        assert session.store.count_runs("ahead") == 0, "warming up runs nothing"
    finally:
        service.close()
        session.runner.close()
    assert workers(docker_engine, "ahead") == []

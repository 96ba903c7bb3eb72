"""The cluster runner against real processes: a `dask scheduler` and two `dask worker`s with
separate cache folders, started here. Stages run in the workers' Docker engine (this machine's,
shared by the workers here, with their own state folders and warm workers)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import skip_unless_ci
from tests.test_pipeline_local import MANIFEST, statuses, write_project
from workbench.adapters.cluster_cache import file_sha
from workbench.core.events import StageLog
from workbench.core.model import RunStatus
from workbench.core.ports import CancelToken
from workbench.services.session import WorkbenchSession

try:
    import distributed
except ImportError:  # pragma: no cover - scripts/setup.sh installs the extra
    skip_unless_ci("the cluster extra is not installed: pip install -e .[cluster]", module=True)
REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def start_cluster(root: Path, workers: int = 2, worker_env: dict[str, str] | None = None):
    """A scheduler and `workers` workers (named w1, w2...), each with its own cache folder under
    `root`; yields (address, {worker name: process}); the processes see this checkout first."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    dask = [str(Path(sys.executable).parent / "dask")]
    procs = {"scheduler": subprocess.Popen(
        dask + ["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(root / "scheduler.log", "w"))}
    for n in range(1, workers + 1):
        procs[f"w{n}"] = subprocess.Popen(
            dask + ["worker", address, "--nthreads", "2", "--resources", "cpus=2", "--no-dashboard", "--name", f"w{n}"],
            env={**env, "WORKBENCH_WORKER_CACHE": str(root / f"w{n}"), **(worker_env or {})}, stdout=subprocess.DEVNULL,
            stderr=open(root / f"w{n}.log", "w"))
    try:
        client = distributed.Client(address, timeout=30)
        client.wait_for_workers(workers, timeout=60)
        client.close()
        yield address, procs
    finally:
        for proc in reversed(procs.values()):
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, docker_base_image):
    """(scheduler address, [worker cache folders]) shared by the tests that kill nothing."""
    root = tmp_path_factory.mktemp("cluster")
    with start_cluster(root) as (address, _procs):
        yield address, [root / "w1", root / "w2"]


def test_a_run_on_the_cluster_matches_a_local_run_and_sends_no_object_twice(cluster, tmp_path):
    address, caches = cluster
    write_project(tmp_path / "local")
    write_project(tmp_path / "remote")
    local = WorkbenchSession(tmp_path / "local", runner="docker").run("tiny")
    session = WorkbenchSession(tmp_path / "remote", runner="cluster", scheduler=address)
    lines: list[str] = []
    remote = session.run("tiny", on_event=lambda e: lines.append(e.line) if isinstance(e, StageLog) else None)

    assert remote.status is RunStatus.SUCCEEDED, remote.reason
    assert remote.metrics == local.metrics == {"rows": 3.0, "score": 0.75}
    model = {r: next(s for s in rec.stages if s.stage == "fit").artifacts[0].path
             for r, rec in (("local", local), ("remote", remote))}
    assert Path(model["remote"]).read_bytes() == Path(model["local"]).read_bytes()
    runner = session.runner
    assert set(runner.ran_on) == {(remote.id, "prep"), (remote.id, "fit")}
    assert any(line.startswith("prep [workbench] ran on cluster worker tcp://") for line in lines)
    stored = WorkbenchSession(tmp_path / "remote", runner="local").get_run(remote.id)
    assert stored.runner == "cluster"
    # The lineage keeps which worker and host ran each stage, and the image there: the stage ran
    # in the worker's Docker engine, in the environment image it built (or found) there.
    import docker

    for stage in stored.stages:
        worker, host = runner.ran_on[(remote.id, stage.stage)]
        assert (stage.worker, stage.host) == (worker, host)
        assert stage.image_id == docker.from_env().images.get(stage.image_id).id
    assert local.image_id == stored.stages[0].image_id  # one engine here: the workers found the same image
    shown = subprocess.run(["workbench", "show", str(remote.id)], cwd=tmp_path / "remote", capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}, timeout=60)
    worker, host = runner.ran_on[(remote.id, "fit")]
    assert f"on {worker} ({host})" in shown.stdout, shown.stdout
    assert any(line.startswith("warm worker ready") for line in lines), lines  # the worker's own warm worker
    # Each worker's cache holds what it was sent (the worker caches are separate folders).
    assert any((cache / "objects").exists() for cache in caches)

    sent_first = len(runner.sent)
    assert sent_first >= 5  # workbench.toml, prep.py, fit.py, data.txt, params.toml at least
    (tmp_path / "remote" / "tiny" / "params.toml").write_text("[fit]\nscale = 0.5\n")
    second = session.run("tiny")
    assert statuses(second) == {"prep": "reused", "fit": "succeeded"}
    assert second.metrics["score"] == 0.25
    runner.close()
    twice = [pair for pair, n in Counter(runner.sent).items() if n > 1]
    assert twice == [], f"objects sent to the same worker twice: {twice}"
    # The edited params file travelled on the second run; the first sent the whole snapshot once.
    new_params = file_sha(tmp_path / "remote" / "tiny" / "params.toml")
    assert new_params in {sha for _worker, sha in runner.sent[sent_first:]}


def test_cancel_reaches_the_remote_stage_and_its_lines_stream_live(cluster, tmp_path):
    address, _caches = cluster
    write_project(tmp_path, **{"prep.py": "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"})
    cancel = CancelToken()
    seen: dict[str, float] = {}
    status: dict[str, subprocess.CompletedProcess] = {}
    cli_env = {**os.environ, "PYTHONPATH": str(REPO)}

    def on_event(event):
        # Cancel only once the stage's own line has come back from the worker: it is running there.
        if isinstance(event, StageLog) and event.line == "sleeping" and "line" not in seen:
            seen["line"] = time.monotonic()
            threading.Thread(target=status_then_cancel).start()

    def status_then_cancel():
        # While the stage runs, `workbench cluster status` shows it on the worker that runs it.
        status["out"] = subprocess.run(["workbench", "cluster", "status", "--scheduler", address, "--json"],
                                       capture_output=True, text=True, env=cli_env, timeout=60)
        seen["cancel"] = time.monotonic()
        cancel.cancel("superseded by run 9")

    session = WorkbenchSession(tmp_path, runner="cluster", scheduler=address)
    record = session.run("tiny", cancel=cancel, on_event=on_event)
    session.runner.close()
    elapsed = time.monotonic() - seen["cancel"]
    assert record.status is RunStatus.CANCELLED and record.reason == "superseded by run 9"
    assert statuses(record)["prep"] == "cancelled"
    # Well under the runner's grace period: the worker stopped the stage and reported back,
    # rather than the client giving up on the task.
    assert elapsed < 2.5
    assert status["out"].returncode == 0, status["out"].stderr
    workers = json.loads(status["out"].stdout)
    assert sorted(w["name"] for w in workers) == ["w1", "w2"]
    assert all(w["resources"] == {"cpus": 2.0} for w in workers)
    assert sorted(run for w in workers for run in w["running"]) == [f"tiny/prep (run {record.id})"]


def test_a_stage_no_worker_can_hold_fails_with_the_workers_resources(cluster, tmp_path):
    address, _caches = cluster
    write_project(tmp_path, **{"workbench.toml": MANIFEST.replace('outputs = ["clean.txt"]',
                                                                  'outputs = ["clean.txt"]\ncpus = 8')})
    session = WorkbenchSession(tmp_path, runner="cluster", scheduler=address)
    record = session.run("tiny")
    session.runner.close()
    assert record.status is RunStatus.FAILED
    assert "no worker of the cluster" in record.stages[0].reason and "cpus=8" in record.stages[0].reason


def test_a_stage_that_needs_gpus_waits_for_a_worker_that_declares_them(cluster, tmp_path):
    address, _caches = cluster
    write_project(tmp_path, **{"workbench.toml": MANIFEST.replace('outputs = ["clean.txt"]',
                                                                  'outputs = ["clean.txt"]\ngpus = 1')})
    session = WorkbenchSession(tmp_path, runner="cluster", scheduler=address)
    record = session.run("tiny")
    session.runner.close()
    assert record.status is RunStatus.FAILED
    assert "has cpus=1, gpus=1 (workers declare: [{'cpus': 2.0}, {'cpus': 2.0}]" in record.stages[0].reason


def test_a_worker_killed_mid_stage_is_retried_on_the_other(tmp_path, docker_base_image):
    write_project(tmp_path / "ws", **{"prep.py": "import time, wb\nprint('working', flush=True)\ntime.sleep(3)\n"
                                                 "open(wb.output_path('clean.txt'), 'w').write('X')\n"})
    with start_cluster(tmp_path) as (address, procs):
        session = WorkbenchSession(tmp_path / "ws", runner="cluster", scheduler=address)
        killed: list[str] = []
        names: dict[str, str] = {}

        def kill_the_busy_worker():
            from workbench.adapters.cluster_runner import cluster_status

            workers = cluster_status(address)
            names.update({w.address: w.name for w in workers})
            busy = [w.name for w in workers if w.running]
            killed.extend(busy)
            procs[busy[0]].kill()

        def on_event(event):
            if isinstance(event, StageLog) and event.line == "working" and not killed:
                kill_the_busy_worker()

        record = session.run("tiny", on_event=on_event)
        session.runner.close()
    assert len(killed) == 1
    assert record.status is RunStatus.SUCCEEDED, record.reason
    worker, _host = session.runner.ran_on[(record.id, "prep")]
    assert names[worker] != killed[0]  # the stage was run again, to the end, on the other worker
    assert len({w for w, _sha in session.runner.sent}) == 2  # the snapshot went to both, once each


def test_the_scheduler_killed_mid_run_fails_the_run_saying_so(tmp_path, docker_base_image):
    """Through the CLI, as a user sees it: one clear error, exit 1, the run recorded as failed."""
    write_project(tmp_path / "ws", **{"prep.py": "import time\nprint('working', flush=True)\ntime.sleep(60)\n"})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with start_cluster(tmp_path, workers=1) as (address, procs):
        run = subprocess.Popen(["workbench", "run", "tiny", "--runner", "cluster", "--scheduler", address],
                               cwd=tmp_path / "ws", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = []
        for line in run.stdout:
            out.append(line)
            if "working" in line:
                break
        killed = time.monotonic()
        procs["scheduler"].kill()
        out.append(run.stdout.read())
        code = run.wait(timeout=60)
        elapsed = time.monotonic() - killed
    text = "".join(out)
    assert code == 1, text
    assert f"the Dask scheduler at {address} was lost" in text and "Traceback" not in text, text
    assert elapsed < 20, f"the run took {elapsed:.0f} s to notice"
    shown = subprocess.run(["workbench", "show", "1", "--json"], cwd=tmp_path / "ws", env=env, capture_output=True,
                           text=True, timeout=60)
    record = json.loads(shown.stdout)
    assert record["status"] == "failed" and "was lost" in record["stages"][0]["reason"], shown.stdout


def _kill_busy_workers(address: str, procs: dict, times: int, killed: list[str]):
    """An on_event that kills the worker running the stage each time the stage says 'working'."""
    from workbench.adapters.cluster_runner import cluster_status

    def on_event(event):
        if isinstance(event, StageLog) and event.line == "working" and len(killed) < times:
            busy = [w.name for w in cluster_status(address) if w.running]
            killed.append(busy[0])
            procs[busy[0]].kill()
    return on_event


def test_a_stage_whose_workers_keep_dying_fails_naming_them_after_its_attempts(tmp_path, docker_base_image):
    write_project(tmp_path / "ws", **{"prep.py": "import time\nprint('working', flush=True)\ntime.sleep(60)\n"})
    with start_cluster(tmp_path, workers=3) as (address, procs):
        session = WorkbenchSession(tmp_path / "ws", runner="cluster", scheduler=address)
        session.runner.max_attempts = 2
        killed: list[str] = []
        record = session.run("tiny", on_event=_kill_busy_workers(address, procs, 2, killed))
        session.runner.close()
    assert len(killed) == 2 and record.status is RunStatus.FAILED
    reason = record.stages[0].reason
    assert reason.startswith("cluster worker tcp://") and "died running the stage, after 3 attempt(s)" in reason, reason
    assert "at most 2 attempts" in reason


def test_a_stage_whose_last_worker_died_fails_once_none_is_left(tmp_path, docker_base_image):
    write_project(tmp_path / "ws", **{"prep.py": "import time\nprint('working', flush=True)\ntime.sleep(60)\n"})
    with start_cluster(tmp_path, workers=1) as (address, procs):
        session = WorkbenchSession(tmp_path / "ws", runner="cluster", scheduler=address)
        session.runner.workerless_s = 2
        killed: list[str] = []
        started = time.monotonic()
        record = session.run("tiny", on_event=_kill_busy_workers(address, procs, 1, killed))
        session.runner.close()
    assert killed == ["w1"] and record.status is RunStatus.FAILED
    assert "no worker of the cluster" in record.stages[0].reason and "is left (it ran on tcp://" in record.stages[0].reason
    assert time.monotonic() - started < 30


def test_a_worker_without_a_docker_engine_says_so(tmp_path, docker_base_image):
    write_project(tmp_path / "ws")
    with start_cluster(tmp_path, workers=1, worker_env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"}) as (
            address, _procs):
        session = WorkbenchSession(tmp_path / "ws", runner="cluster", scheduler=address)
        record = session.run("tiny")
        session.runner.close()
    reason = record.stages[0].reason
    assert record.status is RunStatus.FAILED
    assert reason.startswith("cluster worker tcp://") and "cannot run the stage in Docker" in reason, reason


def test_a_worker_whose_environment_image_differs_says_so(tmp_path, docker_engine, docker_base_image):
    """Two workers build the environment from different base images (as two machines with other
    base images would): both stages run, each records its own image id, and the run says so."""
    import io

    variant = "wbtest/base-variant:1"
    docker_engine.images.build(fileobj=io.BytesIO(f"FROM {docker_base_image}\nLABEL wbtest=variant\n".encode()),
                               tag=variant, rm=True)
    pair = MANIFEST.split("[gates]")[0].replace('depends_on = ["prep"]', "") + "[environment]\njobs = 2\ncpus = 2\n"
    slow = "import time, wb\ntime.sleep(2)\nopen(wb.output_path('{out}'), 'w').write('x')\nwb.log_metrics({{'score': 1}})\n"
    write_project(tmp_path / "ws", **{"workbench.toml": pair, "prep.py": slow.format(out="clean.txt"),
                                      "fit.py": slow.format(out="model.json")})
    lines: list[str] = []
    try:
        with start_cluster(tmp_path, workers=2) as (address, procs):
            procs["w2"].terminate()
            procs["w2"].wait(timeout=30)
            env = {**os.environ, "PYTHONPATH": str(REPO), "WORKBENCH_WORKER_CACHE": str(tmp_path / "w2b"),
                   "WORKBENCH_BASE_IMAGE": variant}
            procs["w2"] = subprocess.Popen(
                [str(Path(sys.executable).parent / "dask"), "worker", address, "--nthreads", "2", "--resources",
                 "cpus=2", "--no-dashboard", "--name", "w2b"], env=env, stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / "w2b.log", "w"))
            client = distributed.Client(address, timeout=30)
            client.wait_for_workers(2, timeout=60)
            client.close()
            session = WorkbenchSession(tmp_path / "ws", runner="cluster", scheduler=address)
            record = session.run("tiny", on_event=lambda e: lines.append(e.line) if isinstance(e, StageLog) else None)
            session.runner.close()
    finally:
        docker_engine.images.remove(variant, force=True)
    assert record.status is RunStatus.SUCCEEDED, record.reason
    images = {stage.stage: stage.image_id for stage in record.stages}
    workers = {stage.stage: stage.worker for stage in record.stages}
    assert len(set(workers.values())) == 2 and len(set(images.values())) == 2, (workers, images)
    warnings = [line for line in lines if "environment image" in line and "differs from" in line]
    assert len(warnings) == 1 and "may not give the same results" in warnings[0], lines
    for image_id in images.values():  # the variant's environment image (the other is shared)
        if any(tag.startswith("workbench-env/tiny:") for tag in docker_engine.images.get(image_id).tags) and \
                docker_engine.images.get(image_id).labels.get("wbtest") == "variant":
            docker_engine.images.remove(image_id, force=True)


def test_a_worker_on_another_workbench_version_says_so(cluster):
    from workbench.adapters.cluster_task import PROTOCOL, run_remote_stage

    address, _caches = cluster
    with distributed.Client(address, timeout=30) as client:
        future = client.submit(run_remote_stage, {"protocol": PROTOCOL - 1}, pure=False)
        with pytest.raises(RuntimeError, match=rf"speaks stage protocol {PROTOCOL}, the client {PROTOCOL - 1}: "
                                               "install the same workbench version"):
            future.result(timeout=60)

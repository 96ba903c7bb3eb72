"""The cluster everywhere a user meets it (issue 16): the scheduler from workspace.toml, the
environment or --scheduler; the cluster's cpus as the default parallelism; `workbench cluster
status` through the CLI; the cluster in the TUI's status line. Real processes: a `dask
scheduler` and two `dask worker`s declaring cpus=1 each, started by this module."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import skip_unless_ci
from tests.test_cluster_runner import _free_port
from tests.test_pipeline_local import write_project
from tests.test_tui import RecordingApp, asyncio_test, finished_run, opened, private_config, shown  # noqa: F401
from workbench.cli.main import main
from workbench.core.model import RunStatus
from workbench.services.session import WorkbenchSession
from workbench.ui.config import load_config

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
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:  # a worker closing gracefully takes its time; nothing to keep
                proc.kill()
                proc.wait(timeout=10)


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


def workbench(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {name: value for name, value in os.environ.items() if name != "WORKBENCH_SCHEDULER"}
    full_env.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run([sys.executable, "-m", "workbench", *args], env=full_env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_cluster_status_reads_workspace_toml_and_its_json_is_stable(cluster, tmp_path):
    write_config(tmp_path, f'[cluster]\nscheduler = "{cluster}"\n\n[notify]\nchannel = "later"\n')
    done = workbench("-w", str(tmp_path), "cluster", "status", "--json")

    assert done.returncode == 0, done.stderr
    workers = json.loads(done.stdout)
    assert [w["name"] for w in sorted(workers, key=lambda w: w["name"])] == ["w1", "w2"]
    assert [w["address"] for w in workers] == sorted(w["address"] for w in workers)
    for worker in workers:
        assert list(worker) == ["address", "name", "host", "threads", "memory_limit", "resources", "running"]
        assert worker["resources"] == {"cpus": 1.0} and worker["threads"] == 1 and worker["running"] == []
    # The table names the scheduler it asked.
    table = workbench("-w", str(tmp_path), "cluster", "status")
    assert table.returncode == 0 and cluster in table.stdout and "cpus=1" in table.stdout


def test_the_flag_beats_the_variable_which_beats_workspace_toml(cluster, tmp_path):
    write_config(tmp_path, f'[cluster]\nscheduler = "{DOWN}"\n')
    by_variable = workbench("-w", str(tmp_path), "cluster", "status", "--json", env={"WORKBENCH_SCHEDULER": cluster})
    assert by_variable.returncode == 0, by_variable.stderr
    by_flag = workbench("-w", str(tmp_path), "cluster", "status", "--json", "--scheduler", cluster,
                        env={"WORKBENCH_SCHEDULER": DOWN})
    assert by_flag.returncode == 0, by_flag.stderr
    assert len(json.loads(by_variable.stdout)) == len(json.loads(by_flag.stdout)) == 2


def test_an_unreachable_scheduler_is_one_clear_error_with_exit_code_1(tmp_path, monkeypatch, capsys):
    from workbench.adapters import cluster_runner

    monkeypatch.setattr(cluster_runner, "CONNECT_TIMEOUT_S", 1)  # the real one is 10 s
    write_config(tmp_path, f'[cluster]\nscheduler = "{DOWN}"\n')
    code = main(["-w", str(tmp_path), "cluster", "status", "--json"])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"the Dask scheduler at {DOWN} is unreachable" in err
    assert f"from {tmp_path / 'workspace.toml'}" in err  # where the address came from


def test_no_scheduler_anywhere_names_the_three_places(tmp_path):
    write_project(tmp_path)
    done = workbench("-w", str(tmp_path), "run", "tiny", "--runner", "cluster")
    assert done.returncode == 3
    assert "--scheduler" in done.stderr and "$WORKBENCH_SCHEDULER" in done.stderr
    assert str(tmp_path / "workspace.toml") in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_workspace_toml_names_file_key_and_problem(tmp_path):
    write_project(tmp_path)
    write_config(tmp_path, '[cluster]\nscheduler = "tcp://sched:8786"\nrunnr = "cluster"\n')
    done = workbench("-w", str(tmp_path), "run", "tiny")
    assert done.returncode == 3
    assert f"{tmp_path / 'workspace.toml'}: cluster.runnr: unknown key" in done.stderr


def test_watch_runs_on_the_workspaces_cluster(cluster, tmp_path):
    """`workbench watch` with no --runner: workspace.toml makes the cluster its runner."""
    write_pair(tmp_path)
    write_config(tmp_path, f'[cluster]\nscheduler = "{cluster}"\nrunner = "cluster"\n')
    env = {name: value for name, value in os.environ.items() if name != "WORKBENCH_SCHEDULER"}
    watch = subprocess.Popen([sys.executable, "-m", "workbench", "-w", str(tmp_path), "watch", "pair"],
                             env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    lines: list[str] = []
    try:
        # The summary line and the watch's own `◉ watching pair` come from two threads, in either
        # order: read until the summary (startup done), then stop it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("· runner " in line for line in lines):
            line = watch.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            watch.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            watch.kill()
            watch.communicate()
            raise
    summary = next((line for line in lines if "· runner " in line), "")
    assert f"runner cluster {cluster}" in summary, lines


@pytest.mark.parametrize("command", [["run", "P"], ["watch"], ["tui"], ["sweep", "P"], ["reproduce", "1"],
                                     ["drift", "P"]])
def test_every_command_that_runs_stages_takes_runner_cluster_and_scheduler(command):
    from workbench.cli.main import build_parser

    args = build_parser().parse_args([*command, "--runner", "cluster", "--scheduler", "tcp://s:8786"])
    assert (args.runner, args.scheduler) == ("cluster", "tcp://s:8786")
    left_out = build_parser().parse_args(command)
    assert (left_out.runner, left_out.scheduler) == (None, None)  # None: the workspace's default


@asyncio_test
async def test_the_tui_status_line_shows_the_cluster_and_the_stages_it_runs(cluster, tmp_path):
    write_pair(tmp_path, seconds=4)
    write_config(tmp_path, f'[cluster]\nscheduler = "{cluster}"\nrunner = "cluster"\n')
    app = RecordingApp(tmp_path, config=load_config(), watch_on_start=False)  # `workbench tui`: the workspace's runner
    async with app.run_test(size=(120, 36)) as pilot:
        main = await opened(pilot)
        await shown(pilot, f"runner cluster {cluster.removeprefix('tcp://')} · 2 workers · 2 cpus · 0 stages running")
        await pilot.press("r")  # both stages at once, one on each worker
        await shown(pilot, "· 2 stages running", timeout=20)
        run = await finished_run(pilot, main, 1)
        assert run.status == "succeeded"
        await shown(pilot, "· 0 stages running")
    assert not [note for note in app.notes if note[0] == "error"], app.notes


@asyncio_test
async def test_an_unreachable_scheduler_shows_in_the_tui_status_line_not_as_a_crash(tmp_path, monkeypatch):
    from workbench.adapters import cluster_runner

    monkeypatch.setattr(cluster_runner, "CONNECT_TIMEOUT_S", 1)  # the real one is 10 s
    write_pair(tmp_path)
    session = WorkbenchSession(tmp_path, runner="cluster", scheduler=DOWN)  # `workbench tui --runner cluster --scheduler`
    app = RecordingApp(tmp_path, "cluster", session=session, config=load_config(), watch_on_start=False)
    async with app.run_test(size=(120, 36)) as pilot:
        main = await opened(pilot)
        await shown(pilot, "runner cluster 127.0.0.1:9 unreachable")
        assert "unreachable" in main.cluster_problem
        await pilot.press("r")  # a run meanwhile fails, recorded, with the reason
        run = await finished_run(pilot, main, 1)
        assert run.status == "failed"
        assert f"the Dask scheduler at {DOWN} is unreachable" in app.session.get_run(run.id).reason
        await shown(pilot, "runner cluster 127.0.0.1:9 unreachable")
    # The status line says it; no notification pops up every few seconds.
    assert not [note for note in app.notes if note[2] == "cluster"], app.notes


def test_doctor_checks_the_workspaces_cluster(cluster, tmp_path):
    write_pair(tmp_path)
    write_config(tmp_path, f'[cluster]\nscheduler = "{cluster}"\nrunner = "cluster"\n')
    done = workbench("-w", str(tmp_path), "doctor")
    line = next(line for line in done.stdout.splitlines() if "cluster" in line.split()[1:2])
    assert line.startswith("✓") and f"{cluster} (from {tmp_path / 'workspace.toml'}): 2 worker(s), 2 cpus" in line

    write_config(tmp_path, f'[cluster]\nscheduler = "{DOWN}"\nrunner = "cluster"\n')
    done = workbench("-w", str(tmp_path), "doctor")
    assert done.returncode == 3  # stages would go to a cluster that does not answer
    line = next(line for line in done.stdout.splitlines() if "cluster" in line.split()[1:2])
    assert line.startswith("✗") and f"the Dask scheduler at {DOWN} is unreachable" in line

"""The Docker runner against a real engine: streaming, limits, isolation, cancellation, image
reuse. One tiny environment image (the base image plus a venv, no pip install) serves them all."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import docker
import pytest

from workbench.adapters import docker_images
from workbench.adapters.base_image import bootstrap_base_image
from workbench.adapters.docker_images import BOOTSTRAP_BASE_IMAGE
from workbench.adapters.docker_runner import DockerRunner
from workbench.core.errors import EngineUnavailable, EnvironmentBuildError, RunCancelled
from workbench.core.manifest import EnvironmentSpec
from workbench.core.model import StageStatus
from workbench.core.ports import CancelToken, PreparedEnvironment, StageJob, StageOutcome

pytestmark = pytest.mark.docker
MiB = 1024**2


@pytest.fixture(scope="session")
def runner(docker_engine) -> DockerRunner:
    return DockerRunner(docker_engine)


@pytest.fixture(scope="session")
def env_project(tmp_path_factory) -> Path:
    # A name of its own, so each session really builds (and removes) its image.
    return tmp_path_factory.mktemp(f"wbtest-{uuid.uuid4().hex[:8]}", numbered=False)


@pytest.fixture(scope="session")
def tiny_env(runner, docker_engine, docker_base_image, env_project) -> PreparedEnvironment:
    env = runner.prepare(str(env_project), EnvironmentSpec(base_image=docker_base_image), lambda line: None)
    assert env.built and env.image_tag.startswith(f"workbench-env/{env_project.name}:")
    yield env
    docker_engine.images.remove(env.image_tag, force=True)


class Stage:
    """A project snapshot, an output folder, and a way to run one stage over them."""

    def __init__(self, runner: DockerRunner, env: PreparedEnvironment, root: Path):
        self.runner, self.env = runner, env
        self.project, self.output = root / "project", root / "out"
        self.project.mkdir()
        self.run_id = uuid.uuid4().int % 10**9  # labels the container, so a test can find it
        self.lines: list[str] = []

    def job(self, command: str, **overrides) -> StageJob:
        fields = dict(run_id=self.run_id, project="demo", stage="train", command=command,
                      project_dir=str(self.project), output_dir=str(self.output), upstream_dirs={},
                      environment=self.env, memory_bytes=256 * MiB, cpus=1.0, network=False, timeout_s=30.0)
        return StageJob(**{**fields, **overrides})

    def run(self, command: str, cancel: CancelToken | None = None, on_log=None, **overrides) -> StageOutcome:
        return self.runner.run_stage(self.job(command, **overrides), on_log or self.lines.append,
                                     cancel or CancelToken())


@pytest.fixture
def stage(runner, tiny_env, tmp_path) -> Stage:
    return Stage(runner, tiny_env, tmp_path)


def run_in_background(stage: Stage, command: str, cancel: CancelToken, ready_line: str, **overrides):
    """Start a stage on a thread; return once it printed `ready_line`, with a way to get its outcome."""
    ready, result = threading.Event(), {}

    def on_log(line: str) -> None:
        stage.lines.append(line)
        if line == ready_line:
            ready.set()

    thread = threading.Thread(target=lambda: result.update(outcome=stage.run(command, cancel, on_log, **overrides)))
    thread.start()
    assert ready.wait(15), f"the stage never printed {ready_line!r}: {stage.lines}"

    def outcome() -> StageOutcome:
        thread.join(15)
        return result["outcome"]

    return outcome


def containers_of(client, run_id: int) -> list:
    return client.containers.list(all=True, filters={"label": f"workbench.run_id={run_id}"})


# -- stages --------------------------------------------------------------------------------


def test_lines_stream_in_order_as_they_are_printed(stage):
    arrivals: list[tuple[float, str]] = []
    outcome = stage.run("for i in 1 2 3; do echo line $i; sleep 0.3; done; echo to stderr >&2; sleep 0.2; printf 'no newline'",
                        on_log=lambda line: arrivals.append((time.monotonic(), line)))
    assert [line for _, line in arrivals] == ["line 1", "line 2", "line 3", "to stderr", "no newline"]
    assert arrivals[2][0] - arrivals[0][0] > 0.4, "lines arrived together at the end, not as printed"
    assert outcome.status == StageStatus.SUCCEEDED and outcome.exit_code == 0 and outcome.reason == ""
    assert outcome.log_tail[-1] == "no newline"


def test_nonzero_exit_fails_with_code_and_last_lines(stage):
    outcome = stage.run("seq 1 30; echo 'ValueError: bad column' >&2; exit 1")
    assert outcome.status == StageStatus.FAILED and outcome.exit_code == 1
    assert outcome.reason == "exited with code 1: ValueError: bad column"
    # stdout and stderr reach the engine through separate pipes: their interleaving may vary,
    # but the error line is always kept in the tail.
    printed = [line for line in outcome.log_tail if line.isdigit()]
    assert len(outcome.log_tail) == 20 and "ValueError: bad column" in outcome.log_tail
    assert printed == [str(i) for i in range(31 - len(printed), 31)]


def test_memory_hog_is_killed_with_a_clear_reason(stage):
    outcome = stage.run("python -c 'b = bytearray(200 * 1024 * 1024); print(\"survived\")'", memory_bytes=64 * MiB)
    assert outcome.status == StageStatus.FAILED
    assert outcome.reason == "killed: exceeded its memory limit of 64 MiB"
    assert "survived" not in stage.lines


def test_no_network_unless_asked(stage):
    outcome = stage.run("ls /sys/class/net; python -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), 3)'")
    assert outcome.status == StageStatus.FAILED
    interfaces = stage.lines[:stage.lines.index("Traceback (most recent call last):")]
    assert interfaces == ["lo"], "a container without network has only the loopback interface"
    assert "Network is unreachable" in outcome.reason


def test_thread_pools_are_sized_to_the_cpu_limit(stage):
    # A CPU quota does not hide the host's cores from OpenMP or BLAS: without this, LightGBM
    # starts a thread per host core and the quota throttles them.
    stage.run("echo $OMP_NUM_THREADS $OPENBLAS_NUM_THREADS $MKL_NUM_THREADS", cpus=1.5)
    assert stage.lines == ["1 1 1"]
    stage.lines.clear()
    stage.run("echo $OMP_NUM_THREADS", cpus=2.0)
    assert stage.lines == ["2"]


def test_container_is_locked_down(stage, docker_engine, tmp_path):
    upstream = tmp_path / "prep-out"
    upstream.mkdir()
    cancel = CancelToken()
    outcome = run_in_background(stage, "echo ready; sleep 30", cancel, "ready", upstream_dirs={"prep": str(upstream)})
    try:
        [container] = containers_of(docker_engine, stage.run_id)
        attrs, host = container.attrs, container.attrs["HostConfig"]
        writable = {m["Destination"]: m["RW"] for m in attrs["Mounts"]}
        assert writable == {"/wb/project": False, "/wb/lib": False, "/wb/upstream/prep": False, "/wb/out": True}
        assert not any("docker.sock" in m["Source"] for m in attrs["Mounts"])
        assert attrs["Config"]["User"].split(":")[0] not in ("", "0", "root")
        assert host["ReadonlyRootfs"] is True and host["NetworkMode"] == "none"
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
        assert host["Memory"] == host["MemorySwap"] == 256 * MiB and host["PidsLimit"] == 512
        assert host["NanoCpus"] == 10**9
        assert container.labels["workbench.owner_pid"] == str(os.getpid())
        assert container.labels["workbench.role"] == "stage"
    finally:
        cancel.cancel()
        assert outcome().status == StageStatus.CANCELLED


def test_stage_reads_its_snapshot_and_writes_only_its_output(stage, tmp_path):
    upstream = tmp_path / "prep-out"
    upstream.mkdir()
    (upstream / "rows.txt").write_text("42 rows\n")
    (stage.project / "data.txt").write_text("churn data\n")
    (stage.project / "probe.py").write_text(
        "import os, wb\n"
        "print(open('data.txt').read().strip())\n"
        "print(open(wb.upstream('prep', 'rows.txt')).read().strip())\n"
        "for path in ('/wb/project/new.txt', '/wb/upstream/prep/new.txt', '/etc/new.txt'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.strerror)\n"
        "with open(os.path.join(os.environ['WB_OUTPUT_DIR'], 'hello.txt'), 'w') as fh:\n"
        "    fh.write('hi')\n"
        "wb.log_metrics({'auc': 0.75})\n"
    )
    outcome = stage.run("python probe.py", upstream_dirs={"prep": str(upstream)})
    assert outcome.status == StageStatus.SUCCEEDED, stage.lines
    assert stage.lines == [
        "churn data",
        "42 rows",
        "refused /wb/project/new.txt Read-only file system",
        "refused /wb/upstream/prep/new.txt Read-only file system",
        "refused /etc/new.txt Read-only file system",
    ]
    assert (stage.output / "hello.txt").read_text() == "hi"
    assert json.loads((stage.output / "metrics.json").read_text()) == {"auc": 0.75}
    assert not (stage.project / "new.txt").exists()


def test_timeout_kills_the_stage(stage):
    started = time.monotonic()
    outcome = stage.run("echo sleeping; sleep 30", timeout_s=1)
    assert outcome.status == StageStatus.FAILED and outcome.reason == "timed out after 1 s"
    assert time.monotonic() - started < 5
    assert stage.lines == ["sleeping"]


def test_cancel_kills_the_container_within_200_ms(stage, docker_engine):
    since = time.time()
    cancel = CancelToken()
    outcome = run_in_background(stage, "echo started; sleep 30", cancel, "started")
    time.sleep(0.2)
    cancelled_at = time.time()
    cancel.cancel("superseded by run 8")
    result = outcome()
    assert result.status == StageStatus.CANCELLED and result.reason == "superseded by run 8"
    assert containers_of(docker_engine, stage.run_id) == []
    # The engine's own record of the kill, which outlives the removed container.
    kills = list(docker_engine.events(since=int(since), until=f"{time.time():.3f}", decode=True,
                                      filters={"label": f"workbench.run_id={stage.run_id}", "event": "kill"}))
    assert kills, "the container was never killed"
    assert kills[0]["timeNano"] / 1e9 - cancelled_at < 0.2


def test_a_missing_environment_image_fails_the_stage_readably(stage):
    gone = PreparedEnvironment(image_id="sha256:0", image_tag="workbench-env/no-such-project:0")
    outcome = stage.run("true", environment=gone)
    assert outcome.status == StageStatus.FAILED
    assert outcome.reason == "environment image workbench-env/no-such-project:0 is missing; the next run rebuilds it"


# -- environment images --------------------------------------------------------------------


def test_environment_image_is_reused_until_requirements_change(runner, docker_engine, docker_base_image, tmp_path):
    project = tmp_path / f"reuse-{uuid.uuid4().hex[:8]}"
    project.mkdir()
    requirements = project / "requirements.txt"
    requirements.write_text("# nothing to install yet\n")  # pip runs, but downloads nothing
    spec = EnvironmentSpec(base_image=docker_base_image, requirements="requirements.txt")
    logs: list[str] = []
    first = runner.prepare(str(project), spec, logs.append)
    again = runner.prepare(str(project), spec, logs.append)
    requirements.write_text("# nothing to install yet\n# still nothing\n")
    changed = runner.prepare(str(project), spec, logs.append)
    try:
        assert first.built and not again.built
        assert (again.image_id, again.image_tag) == (first.image_id, first.image_tag)
        assert changed.built and changed.image_tag != first.image_tag and changed.image_id != first.image_id
        assert f"environment image {first.image_tag} is up to date" in logs
        assert docker_engine.images.get(first.image_tag).labels["workbench.env"] == "1"
    finally:
        for env in (first, changed):
            docker_engine.images.remove(env.image_tag, force=True)


def test_a_cancelled_run_stops_waiting_for_its_build_and_the_next_run_joins_it(
        runner, docker_engine, docker_base_image, tmp_path):
    project = tmp_path / f"cancel-{uuid.uuid4().hex[:8]}"
    project.mkdir()
    (project / "requirements.txt").write_text(f"# a build of its own: {uuid.uuid4()}\n")
    spec = EnvironmentSpec(base_image=docker_base_image, requirements="requirements.txt")
    cancel, first_logs = CancelToken(), []

    def on_log(line: str) -> None:
        first_logs.append(line)
        if line.startswith("building the environment image"):
            cancel.cancel("cancelled by the user")

    started = time.monotonic()
    with pytest.raises(RunCancelled) as error:
        runner.prepare(str(project), spec, on_log, cancel=cancel)
    assert time.monotonic() - started < 2.0, "the run waited for the build after it was cancelled"
    assert "cancelled by the user while the environment image" in str(error.value)

    # The build went on: a retry joins it (replaying its log so far) instead of starting over.
    retry_logs: list[str] = []
    env = runner.prepare(str(project), spec, retry_logs.append)
    try:
        assert env.built and docker_engine.images.get(env.image_tag).id == env.image_id
        assert retry_logs[0] == f"waiting for the build of the environment image {env.image_tag} already under way…"
        assert retry_logs[1].startswith("building the environment image")
        assert any(line.startswith("Successfully tagged") for line in retry_logs)
        assert retry_logs[1:1 + len(first_logs)] == first_logs, "the retry follows the same build"
        assert len([line for line in retry_logs if line.startswith("Step 1/")]) == 1, "one build, not two"
    finally:
        docker_engine.images.remove(env.image_tag, force=True)


def test_failed_build_names_the_failing_step(runner, docker_engine, docker_base_image, tmp_path):
    (tmp_path / "requirements.txt").write_text("--no-index\nno-such-package-anywhere\n")
    spec = EnvironmentSpec(base_image=docker_base_image, requirements="requirements.txt")
    logs: list[str] = []
    with pytest.raises(EnvironmentBuildError) as error:
        runner.prepare(str(tmp_path), spec, logs.append)
    # A failed build keeps its finished steps as cache, as `docker build` does; drop them here.
    finished_steps = [line.split()[-1] for line in logs if re.fullmatch(r" ---> [0-9a-f]{12}", line)]
    docker_engine.images.remove(finished_steps[-1])
    message = str(error.value)
    assert "returned a non-zero code" in message
    assert "No matching distribution found for no-such-package-anywhere" in message
    assert "Step 5/7 : RUN" in message and "\x1b" not in message and "Removing intermediate" not in message


def test_base_image_falls_back_to_the_offline_image(runner, docker_base_image, tiny_env, env_project, monkeypatch):
    if docker_base_image != BOOTSTRAP_BASE_IMAGE:
        pytest.skip(f"the session's environment is not built from {BOOTSTRAP_BASE_IMAGE}")
    monkeypatch.delenv("WORKBENCH_BASE_IMAGE", raising=False)
    monkeypatch.setattr(docker_images, "DEFAULT_BASE_IMAGE", "workbench-test/absent:0")
    monkeypatch.setattr(docker_images, "_base_choice_said", None)  # said once per process: as in a fresh one
    logs: list[str] = []
    env = runner.prepare(str(env_project), EnvironmentSpec(), logs.append)
    assert env.image_id == tiny_env.image_id and not env.built
    assert f"using the offline base image {BOOTSTRAP_BASE_IMAGE} (workbench-test/absent:0 is not present locally)" in logs
    assert not any("pull" in line for line in logs), "a local image needs no registry"

    monkeypatch.setattr(docker_images, "BOOTSTRAP_BASE_IMAGE", "workbench-test/absent-too:0")
    with pytest.raises(EnvironmentBuildError, match="run `workbench env bootstrap`"):
        runner.prepare(str(env_project), EnvironmentSpec(), logs.append)


def test_base_image_from_the_environment_variable_must_exist(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_BASE_IMAGE", "workbench-test/absent:0")
    with pytest.raises(EnvironmentBuildError, match=r"workbench-test/absent:0 \(from \$WORKBENCH_BASE_IMAGE\)"):
        runner.prepare(str(tmp_path), EnvironmentSpec(), lambda line: None)


def test_bootstrap_keeps_an_existing_base_image(docker_engine, docker_base_image):
    logs: list[str] = []
    image_id = bootstrap_base_image(tag=docker_base_image, on_log=logs.append, client=docker_engine)
    assert image_id == docker_engine.images.get(docker_base_image).id
    assert len(logs) == 1 and "already exists" in logs[0]


# -- engine --------------------------------------------------------------------------------


def test_cleanup_removes_only_containers_of_dead_workbenches(runner, docker_engine, tiny_env, tmp_path):
    from workbench.adapters.container_owner import owner_labels

    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
    created = {}
    for owner in (dead_pid, str(os.getpid())):  # same workspace, host and PID namespace (tests/test_signals.py)
        created[owner] = docker_engine.containers.create(
            tiny_env.image_tag, ["true"],
            labels={**owner_labels(tmp_path), "workbench.role": "stage", "workbench.owner_pid": owner})
    try:
        assert runner.cleanup_orphans(tmp_path) >= 1
        remaining = {c.id for c in docker_engine.containers.list(all=True)}
        assert created[dead_pid].id not in remaining and created[str(os.getpid())].id in remaining
    finally:
        created[str(os.getpid())].remove(force=True)


def test_engine_info_reports_version_and_base_images(runner, docker_base_image, monkeypatch):
    monkeypatch.delenv("WORKBENCH_BASE_IMAGE", raising=False)
    info = runner.engine_info()
    assert info["server_version"] and info["api_version"]
    assert info["base_images"][docker_base_image] is True and info["base_image"] is not None

    monkeypatch.setenv("WORKBENCH_BASE_IMAGE", "workbench-test/absent:0")
    info = runner.engine_info()
    assert info["base_images"]["workbench-test/absent:0"] is False and info["base_image"] is None


def test_unreachable_engine_is_a_clear_error(monkeypatch):
    bogus = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    with pytest.raises(EngineUnavailable) as error:
        DockerRunner(bogus)
    assert str(error.value) == ("no Docker engine is reachable at unix:///nonexistent.sock: "
                                "the socket does not exist; start it or use --runner local")

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    with pytest.raises(EngineUnavailable, match="at unix:///nonexistent.sock: the socket does not exist"):
        DockerRunner()


def test_a_stage_that_needs_gpus_asks_the_engine_for_them(stage):
    """`gpus = N` is a device request for N GPUs; this machine has none, so the engine refuses
    the container and the stage fails saying why, rather than running without its GPUs."""
    outcome = stage.run("echo ran", gpus=1)
    assert outcome.status is StageStatus.FAILED and "ran" not in stage.lines
    assert "gpu" in outcome.reason.lower(), outcome.reason

"""Signals and closed pipes end `workbench run` the way Ctrl-C does, and orphan cleanup touches
only this workspace's containers (issue 10 item 8).

Real processes and real signals: `workbench run` is started with subprocess.Popen on a project
whose first stage sleeps, the signal is sent once the stage has started, and the lineage is read
back through `workbench runs --json` and the containers through the engine, by their labels.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.test_pipeline_local import MANIFEST, write_project

REPO = Path(__file__).resolve().parent.parent
# The first stage says which process it is, then sleeps far longer than any test waits.
SLEEPY_PREP = """
import os, time
print("sleeping pid", os.getpid(), flush=True)
time.sleep(120)
"""


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "COLUMNS": "200",
            "WORKBENCH_MLFLOW_SYNC": "off", **extra}


def workbench(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workbench", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def runs_json(root: Path) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "workbench", "-w", str(root), "runs", "--json"],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Lines:
    """A stream read on a thread, so a test can wait for a line without blocking on the pipe."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in list(self.lines) if text in line), None)
            if found is not None:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} within {timeout} s: {''.join(self.lines)}")

    def text(self) -> str:
        self._thread.join(5)
        return "".join(self.lines)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: it runs nothing.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def processes_in(root: Path, settle_s: float = 5.0) -> list[int]:
    """Live processes whose working folder is under `root` (a local stage runs in its snapshot);
    waits up to `settle_s` for them to go."""
    deadline = time.monotonic() + settle_s
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and pid_alive(int(proc.name)) and \
                        os.readlink(proc / "cwd").startswith(str(root)):
                    found.append(int(proc.name))
            except OSError:
                pass
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


# -- local runner: the lineage and the stage's process ------------------------------------------


@pytest.fixture
def sleepy(tmp_path: Path) -> Path:
    write_project(tmp_path, **{"workbench.toml": MANIFEST, "prep.py": SLEEPY_PREP})
    return tmp_path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_cancels_the_run_records_it_and_stops_its_stage(sleepy, signum):
    proc = workbench("-w", str(sleepy), "run", "tiny", "--runner", "local", env=cli_env())
    out = Lines(proc.stdout)
    try:
        stage_pid = int(out.wait_for("sleeping pid", 30).split()[-1])
        sent = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(timeout=15)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    assert code == 128 + signum, (code, out.text(), stderr)
    assert took < 5, f"the run took {took:.1f} s to stop"
    assert "Traceback" not in stderr
    assert wait_gone(stage_pid), "the stage's process outlived the run"
    (run,) = runs_json(sleepy)
    # Recorded by the run itself ("cancelled"), not found later by a recovery ("interrupted").
    assert run["status"] == "cancelled", run
    assert signal.Signals(signum).name in run_reason(sleepy, run["id"])


def run_reason(root: Path, run_id: int) -> str:
    done = subprocess.run([sys.executable, "-m", "workbench", "-w", str(root), "show", str(run_id), "--json"],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout)["reason"]


def test_a_closed_pipe_cancels_the_run_quietly_with_141(sleepy):
    script = f"{sys.executable} -m workbench -w {sleepy} run tiny --runner local | head -1; " \
             'echo "codes ${PIPESTATUS[*]}" >&2'
    started = time.monotonic()
    done = subprocess.run(["bash", "-c", script], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=60)
    took = time.monotonic() - started
    assert done.stdout.startswith("▶ run 1 · tiny") and done.stdout.count("\n") == 1, done.stdout
    assert "codes 141 0" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "Broken pipe" not in done.stderr, done.stderr
    assert took < 30, f"the run went on for {took:.1f} s after its reader left"
    (run,) = runs_json(sleepy)
    assert run["status"] == "cancelled", run
    assert processes_in(sleepy) == [], "a process of the run outlived it"


# -- Docker: the run's containers, warm and cold -------------------------------------------------

DOCKER_MANIFEST = """
[project]
name = "{name}"

[environment]
preload = ["decimal"]
memory = "256m"

[stages.prep]
command = "python prep.py"
inputs = ["prep.py"]
"""


def docker_project(root: Path) -> str:
    name = f"sig-{uuid.uuid4().hex[:8]}"
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "workbench.toml").write_text(DOCKER_MANIFEST.format(name=name))
    (folder / "prep.py").write_text(SLEEPY_PREP)
    return name


def containers_of(client, project: str) -> list:
    return client.containers.list(all=True, filters={"label": f"workbench.project={project}"})


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("mode,signum", [("warm", signal.SIGTERM), ("cold", signal.SIGHUP)])
def test_a_signal_removes_the_runs_containers(tmp_path, docker_engine, docker_base_image, mode, signum):
    name = docker_project(tmp_path)
    args = ["-w", str(tmp_path), "run", name, "--runner", "docker"] + (["--cold"] if mode == "cold" else [])
    proc = workbench(*args, env=cli_env(WORKBENCH_BASE_IMAGE=docker_base_image))
    out = Lines(proc.stdout)
    try:
        out.wait_for("sleeping pid", 120)
        running = containers_of(docker_engine, name)
        assert running, "the stage runs in a container"
        proc.send_signal(signum)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.stderr.read()
    try:
        assert containers_of(docker_engine, name) == [], "the run's containers outlived it"
        assert code == 128 + signum, (code, out.text(), stderr)
        (run,) = runs_json(tmp_path)
        assert run["status"] == "cancelled", run
        workspace = (tmp_path / ".workbench" / "workspace-id").read_text().strip()
        for labels in (container.labels for container in running):
            assert labels["workbench.workspace"] == workspace and labels["workbench.owner_pid"] == str(proc.pid)
            assert labels["workbench.pid_ns"] == os.readlink("/proc/self/ns/pid")
            assert labels["workbench.host"] and labels["workbench.owner_start"]
    finally:
        for container in containers_of(docker_engine, name):
            container.remove(force=True)


def killed_mid_stage(root: Path, name: str, base_image: str) -> None:
    """Run `name` cold in `root` and SIGKILL the workbench while its stage sleeps, as a crash
    would: its stage container stays behind."""
    proc = workbench("-w", str(root), "run", name, "--runner", "docker", "--cold",
                     env=cli_env(WORKBENCH_BASE_IMAGE=base_image))
    try:
        Lines(proc.stdout).wait_for("sleeping pid", 120)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.docker
@pytest.mark.slow
def test_orphan_cleanup_removes_only_this_workspaces_containers_of_dead_owners(
        tmp_path, docker_engine, docker_base_image):
    """A crashed workbench of another workspace, or containers of ours from another PID
    namespace or host, survive our cleanup; ours with a dead owner is removed; ours with a live
    owner stays."""
    ours, other = tmp_path / "ours", tmp_path / "other"
    ours_name, other_name = docker_project(ours), docker_project(other)
    tag = uuid.uuid4().hex
    made = []
    try:
        killed_mid_stage(ours, ours_name, docker_base_image)
        killed_mid_stage(other, other_name, docker_base_image)
        left_ours, left_other = containers_of(docker_engine, ours_name), containers_of(docker_engine, other_name)
        assert len(left_ours) == 1, "the other workspace's workbench removed the container our crashed one left"
        assert len(left_other) == 1
        left_ours, left_other = left_ours[0], left_other[0]
        dead = left_ours.labels
        own_start = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]
        variants = {
            "ours from another PID namespace": {**dead, "workbench.pid_ns": "pid:[1]"},
            "ours on another host": {**dead, "workbench.host": "another-machine"},
            "ours, owner alive": {**dead, "workbench.owner_pid": str(os.getpid()), "workbench.owner_start": own_start},
        }
        made = {case: docker_engine.containers.create(docker_base_image, ["true"],
                                                      labels={**labels, "workbench.test": tag})
                for case, labels in variants.items()}
        (ours / ours_name / "prep.py").write_text("print('quick')\n")
        done = subprocess.run([sys.executable, "-m", "workbench", "-w", str(ours), "run", ours_name,
                               "--runner", "docker", "--cold"], cwd=REPO,
                              env=cli_env(WORKBENCH_BASE_IMAGE=docker_base_image),
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        remaining = {c.id for c in docker_engine.containers.list(all=True)}
        assert left_ours.id not in remaining, "our crashed workbench's container was not cleaned up"
        assert left_other.id in remaining, "the container of another workspace's workbench was removed"
        assert {case for case, c in made.items() if c.id in remaining} == set(variants)
        assert "removed 1 container(s) left by a workbench that stopped" in done.stderr, done.stderr
    finally:
        for name in (ours_name, other_name):
            for container in containers_of(docker_engine, name):
                container.remove(force=True)
        for container in docker_engine.containers.list(all=True, filters={"label": f"workbench.test={tag}"}):
            container.remove(force=True)


# -- the TUI: closing its terminal ----------------------------------------------------------------


@pytest.mark.slow
def test_closing_the_tuis_terminal_leaves_it_as_q_does(tmp_path, signum=signal.SIGHUP):
    """The TUI in a real pseudo-terminal, watching a project whose stage is asleep; the terminal
    closes (SIGHUP). SIGTERM takes the same path (workbench/ui/app.py)."""
    import pty

    from tests.test_watch import SLOW_PREP, WATCH_MANIFEST

    write_project(tmp_path, **{"workbench.toml": WATCH_MANIFEST,
                               "prep.py": SLOW_PREP.replace('print("sleeping"', 'print("sleeping", os.getpid()')
                               .replace("import time, wb", "import os, time, wb")})
    master, slave = pty.openpty()
    env = cli_env(TERM="xterm-256color", WORKBENCH_CONFIG=str(tmp_path / "no-config.toml"), COLUMNS="120",
                  LINES="35")
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "tui", str(tmp_path), "--runner", "local"], cwd=REPO,
                            env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    screen = bytearray()

    def drain() -> None:  # a terminal that nobody reads blocks the app's writes
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            screen.extend(chunk)

    threading.Thread(target=drain, daemon=True).start()
    closed = False
    try:
        deadline = time.monotonic() + 60
        running = []
        while not running:  # edit until the watcher (started with the app) runs the slow stage
            assert time.monotonic() < deadline, "the TUI never ran the change"
            (tmp_path / "tiny" / "data.txt").write_text(f"slow {time.monotonic()}\n")
            time.sleep(1.5)
            running = [r for r in runs_json(tmp_path) if r["status"] == "running"]
        assert processes_in(tmp_path), "the stage runs as a local process in the workspace"
        if signum == signal.SIGHUP:
            os.close(master)  # what the terminal emulator does; the kernel then sends SIGHUP
            closed = True
        proc.send_signal(signum)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        if not closed:
            os.close(master)
    assert code == 128 + signum, (code, bytes(screen[-2000:]).decode("utf-8", "replace"))
    runs = runs_json(tmp_path)
    assert runs and all(r["status"] in ("cancelled", "superseded", "succeeded") for r in runs), runs
    assert runs[0]["status"] == "cancelled", runs[0]
    assert processes_in(tmp_path) == [], "a process of the run outlived the TUI"

"""The isolation contract, one suite for every Docker runner (warm worker and cold container):
a stage reads only its own run's snapshot and its declared upstream outputs, writes only its own
output folder, leaves no process behind, and what it recorded cannot change after it ends.
Processes sharing a workspace never replace each other's warm workers.

The stage scripts are the probes: they look for everything they can reach (listing /wb, every
mount point, the parents of their own folders) and report what they could read and write.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from workbench.adapters.docker_runner import DockerRunner
from workbench.core.model import RunStatus, StageStatus


MANIFEST = """
[project]
name = "{name}"

[environment]
memory = "256m"
preload = ["json"]

{stages}
"""

BETA_TRAIN = """
import os
data = open("data/secret.csv").read()
open(os.path.join(os.environ["WB_OUTPUT_DIR"], "model.txt"), "w").write("token_beta_model\\n".upper())
"""

ALPHA_PREP = """
import os
open(os.path.join(os.environ["WB_OUTPUT_DIR"], "prep.txt"), "w").write(("token_alpha_prep_%s\\n" % os.environ["WB_RUN_ID"]).upper())
"""

# Everything this stage can reach, read and write outside its own output folder and /tmp.
ALPHA_PROBE = r"""
import json, os, re
out = os.path.realpath(os.environ["WB_OUTPUT_DIR"])
mine = os.path.realpath(os.environ["WB_PROJECT_DIR"])
upstream = os.path.realpath(os.environ["WB_UPSTREAM_DIR"])
token = re.compile("TOK" + "EN_[A-Z0-9_]+")
roots = {"/wb", os.path.dirname(out), os.path.dirname(mine), os.path.dirname(upstream), "/tmp"}
for line in open("/proc/self/mounts"):
    point = line.split()[1]
    if point != "/" and not point.startswith(("/proc", "/sys", "/dev")):
        roots.add(point)
found, writable, tampered = set(), [], []

def ours(path):
    return path == out or path.startswith(out + "/") or path == "/tmp" or path.startswith("/tmp/")

for root in sorted(roots):
    for folder, dirs, files in os.walk(root):
        real = os.path.realpath(folder)
        if ours(real):
            continue
        try:
            probe = os.path.join(folder, ".probe-%d" % os.getpid())
            open(probe, "w").close()
            os.unlink(probe)
            writable.append(folder)
        except OSError:
            pass
        for name in files:
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as fh:
                    found.update(token.findall(fh.read(1 << 16).decode("utf-8", "replace")))
            except OSError:
                continue
            try:
                with open(path, "r+b") as fh:  # opened for writing: one would be enough
                    writable.append(path)
                    if name == "model.txt":  # the issue's attack: rewrite a recorded model
                        fh.write(b"TAMPERED")
                        tampered.append(path)
            except OSError:
                pass
# Descriptors a stage inherited: a socket to the host would let it forge the end of the stage.
sockets = []
for fd in os.listdir("/proc/self/fd"):
    try:
        if os.readlink("/proc/self/fd/" + fd).startswith("socket:"):
            sockets.append(fd)
    except OSError:
        pass  # the descriptor listdir itself used
report = {"found": sorted(found), "writable": writable, "tampered": tampered, "sockets": sockets}
open(os.path.join(out, "probe.json"), "w").write(json.dumps(report))
print(json.dumps(report)[:2000])
"""

# Starts a double-forked daemon (as `daemon(3)` would) that rewrites the recorded output after
# the stage has ended, and leaves a file in /tmp for the next stage of the same worker.
DAEMON_SPAWN = r"""
import os, subprocess, sys, time
out = os.environ["WB_OUTPUT_DIR"]
open(os.path.join(out, "model.txt"), "w").write("original\n")
open("/tmp/left-behind", "w").write("from an earlier stage")
open("/dev/shm/left-behind", "w").write("from an earlier stage")
import ctypes
ctypes.CDLL(None).shmget(0, 4096, 0o1600)  # a System V segment outlives its process
later = '''
import os, sys, time
time.sleep(1.5)
open(sys.argv[2], "w").write("tampered by a daemon")
open("/tmp/daemon-was-here", "w").write("x")
time.sleep(60)
'''
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execv(sys.executable, [sys.executable, "-c", later, "MARKER", os.path.join(out, "model.txt")])
    os._exit(0)
# A plain background child keeps the stage's stdout open: the stage still ends with its main process.
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(8)", "MARKER"])
print("spawned a daemon")
"""

DAEMON_LATER = r"""
import json, os
left = sorted(os.listdir("/tmp")) + sorted("/dev/shm/" + name for name in os.listdir("/dev/shm"))
left += ["sysv " + row.split()[1] for row in open("/proc/sysvipc/shm").read().splitlines()[1:]]
open(os.path.join(os.environ["WB_OUTPUT_DIR"], "tmp.json"), "w").write(json.dumps(left))
"""

SHARED_HELLO = """
import os
open(os.path.join(os.environ["WB_OUTPUT_DIR"], "hello.txt"), "w").write("hello %s\\n")
"""


def write_project(root: Path, name: str, stages: dict[str, dict], files: dict[str, str]) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    blocks = []
    for stage, spec in stages.items():
        lines = [f"[stages.{stage}]", f'command = "{spec["command"]}"']
        if spec.get("inputs"):
            lines.append("inputs = [" + ", ".join(f'"{i}"' for i in spec["inputs"]) + "]")
        if spec.get("outputs"):
            lines.append("outputs = [" + ", ".join(f'"{o}"' for o in spec["outputs"]) + "]")
        if spec.get("depends_on"):
            lines.append("depends_on = [" + ", ".join(f'"{d}"' for d in spec["depends_on"]) + "]")
        blocks.append("\n".join(lines))
    (folder / "workbench.toml").write_text(MANIFEST.format(name=name, stages="\n\n".join(blocks)))
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(textwrap.dedent(text))
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", params=["warm", "cold"])
def suite(request, tmp_path_factory, docker_engine, docker_base_image):
    """One workspace and one runner per mode; the warm runner keeps one worker per project
    across the probes, as a watch session would."""
    root = tmp_path_factory.mktemp(f"isolation-{request.param}")
    marker = f"wb-isolation-daemon-{uuid.uuid4().hex[:10]}"
    write_project(root, "beta", {"train": {"command": "python train.py", "outputs": ["model.txt"]}},
                  {"train.py": BETA_TRAIN, "data/secret.csv": "TOKEN_BETA_SECRET\n"})
    write_project(root, "alpha", {"prep": {"command": "python prep.py"},
                                  "probe": {"command": "python probe.py", "depends_on": ["prep"]}},
                  {"prep.py": ALPHA_PREP, "probe.py": ALPHA_PROBE, "data/own.csv": "TOKEN_ALPHA_OWN\n"})
    write_project(root, "daemon", {"spawn": {"command": "python spawn.py", "outputs": ["model.txt"]},
                                   "later": {"command": "python later.py"}},
                  {"spawn.py": DAEMON_SPAWN.replace("MARKER", marker), "later.py": DAEMON_LATER})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_BASE_IMAGE", docker_base_image)
        runner = DockerRunner(mode=request.param)
        try:
            yield {"mode": request.param, "root": root, "runner": runner, "marker": marker,
                   "client": docker_engine}
        finally:
            runner.close()
            for pid in daemon_pids(marker):  # only if a probe failed: never leave one running
                os.kill(pid, signal.SIGKILL)


def run(suite: dict, name: str, **kwargs):
    from workbench.adapters.duckdb_store import DuckDBLineageStore
    from workbench.services.pipeline import PipelineService
    from workbench.services.workspace import Workspace

    workspace = Workspace(suite["root"])
    store = DuckDBLineageStore(workspace.ensure_state_dir() / "lineage.duckdb")
    return PipelineService(workspace, store, suite["runner"]).run(workspace.project(name), reuse=False, **kwargs)


def daemon_pids(marker: str) -> list[int]:
    """Host processes (any PID namespace) whose command line carries the probe's marker."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


@pytest.mark.docker
@pytest.mark.slow
def test_a_stage_reads_only_its_snapshot_and_upstream_and_writes_only_its_output(suite):
    beta = run(suite, "beta")
    assert beta.status is RunStatus.SUCCEEDED, beta.reason
    first_alpha = run(suite, "alpha")
    assert first_alpha.status is RunStatus.SUCCEEDED, first_alpha.reason
    alpha = run(suite, "alpha")
    assert alpha.status is RunStatus.SUCCEEDED, alpha.reason
    report = json.loads(Path(alpha.stages[1].output_dir, "probe.json").read_text())

    assert report["found"] == sorted(["TOKEN_ALPHA_OWN", f"TOKEN_ALPHA_PREP_{alpha.id}"]), \
        "a stage read more than its own snapshot and its declared upstream outputs"
    assert report["tampered"] == [] and report["writable"] == [], \
        "a stage could write outside its own output folder"
    assert report["sockets"] == [], "a stage inherited a socket (the worker's connection to the host?)"
    (model,) = [a for a in beta.stages[0].artifacts if a.name == "model.txt"]
    assert sha256(Path(model.path)) == model.sha256, "another project's recorded model changed"


@pytest.mark.docker
@pytest.mark.slow
def test_nothing_a_stage_starts_outlives_it_or_changes_what_it_recorded(suite):
    record = run(suite, "daemon", stages=["spawn"])
    assert record.status is RunStatus.SUCCEEDED, record.reason
    (spawn,) = record.stages
    assert spawn.duration_s < 5, "the stage waited for a background child that kept its stdout open"
    assert daemon_pids(suite["marker"]) == [], "a process the stage started is still running"
    if suite["mode"] == "warm":
        (container,) = [w for w in suite["client"].containers.list(
            filters={"label": ["workbench.role=worker", "workbench.project=daemon"]})
            if w.labels.get("workbench.owner_pid") == str(os.getpid())]
        processes = container.top()["Processes"]
        assert len(processes) == 2, f"only docker-init and the worker server may be left: {processes}"

    time.sleep(3.0)  # the daemon would have written after 1.5 s
    (model,) = [a for a in spawn.artifacts if a.name == "model.txt"]
    assert Path(model.path).read_text() == "original\n"
    assert sha256(Path(model.path)) == model.sha256

    later = run(suite, "daemon", stages=["later"])
    assert later.status is RunStatus.SUCCEEDED, later.reason
    left = json.loads(Path(later.stages[0].output_dir, "tmp.json").read_text())
    assert left == [], f"an earlier stage's scratch files or IPC objects reached a later stage: {left}"


def _worker_ids(client, owner: int) -> list[str]:
    return [w.id for w in client.containers.list(filters={"label": ["workbench.role=worker",
                                                                   "workbench.project=shared"]})
            if w.labels.get("workbench.owner_pid") == str(owner)]


def _runs(root: Path, env: dict) -> list[dict]:
    out = subprocess.run(["workbench", "-w", str(root), "runs", "shared", "--json"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.docker
@pytest.mark.slow
def test_a_cli_run_beside_a_watch_leaves_the_watchers_worker_alone(tmp_path, docker_engine, docker_base_image):
    folder = write_project(tmp_path, "shared", {"hello": {"command": "python hello.py", "inputs": ["hello.py"]}},
                           {"hello.py": SHARED_HELLO % "one"})
    env = dict(os.environ, WORKBENCH_BASE_IMAGE=docker_base_image)
    watch = subprocess.Popen(["workbench", "-w", str(tmp_path), "watch", "shared", "--runner", "docker", "-q"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not _worker_ids(docker_engine, watch.pid):
            assert watch.poll() is None, watch.stderr.read()
            assert time.monotonic() < deadline, "the watcher started no warm worker"
            time.sleep(0.2)
        (watcher_worker,) = _worker_ids(docker_engine, watch.pid)

        cli = subprocess.run(["workbench", "-w", str(tmp_path), "run", "shared", "--runner", "docker", "-q"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert _worker_ids(docker_engine, watch.pid) == [watcher_worker]

        (folder / "hello.py").write_text(textwrap.dedent(SHARED_HELLO % "two"))
        deadline = time.monotonic() + 60
        while not [r for r in _runs(tmp_path, env) if r["trigger"] == "watch" and r["status"] != "running"]:
            assert time.monotonic() < deadline, "the watcher did not run the change"
            assert watch.poll() is None, watch.stderr.read()
            time.sleep(0.5)
        (watched,) = [r for r in _runs(tmp_path, env) if r["trigger"] == "watch"]
        assert watched["status"] == "succeeded", watched
        assert _worker_ids(docker_engine, watch.pid) == [watcher_worker], "the watcher's worker was replaced"
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            watch.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watch.kill()
            watch.wait()


CONTROL_OWNER = """
import os, sys, time
from pathlib import Path
from workbench.adapters.worker_control import ControlFolder
folder = ControlFolder.create(Path(sys.argv[1]), "key")
print(folder.path, flush=True)
if sys.argv[2] == "crash":
    os._exit(0)  # no clean-up, as a killed workbench
time.sleep(60)
"""


def test_control_folders_are_per_process_and_only_a_dead_owners_is_removed(tmp_path):
    from workbench.adapters.worker_control import ControlFolder

    workers = tmp_path / "workers"
    crashed = subprocess.run([sys.executable, "-c", CONTROL_OWNER, str(workers), "crash"], capture_output=True,
                             text=True, check=True).stdout.strip()
    live = subprocess.Popen([sys.executable, "-c", CONTROL_OWNER, str(workers), "live"], stdout=subprocess.PIPE,
                            text=True)
    try:
        live_path = live.stdout.readline().strip()
        mine = ControlFolder.create(workers, "key")
        assert len({crashed, live_path, str(mine.path)}) == 3, "each process gets its own control folder"
        assert not Path(crashed).exists(), "the folder of a process that died is removed"
        assert Path(live_path, "owner.lock").exists(), "a live process's folder is never touched"
        mine.remove()
        assert not mine.path.exists() and Path(live_path).exists()
    finally:
        live.kill()
        live.wait()


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.lstat().st_ino for p in folder.rglob("*") if p.is_file()}


def test_a_slot_holds_exactly_the_snapshot_and_upstream_and_moves_outputs_without_following_links(tmp_path):
    from workbench.adapters.worker_slot import WorkerSlot

    first, second, upstream = tmp_path / "snap1", tmp_path / "snap2", tmp_path / "up-train"
    for folder in (first / "data", second / "data", upstream):
        folder.mkdir(parents=True)
    (first / "data" / "shared.csv").write_text("same")
    (first / "old.py").write_text("only in the first")
    os.link(first / "data" / "shared.csv", second / "data" / "shared.csv")  # one object, two snapshots
    (second / "new.py").write_text("only in the second")
    (upstream / "model.txt").write_text("model")
    os.symlink("/etc/hostname", upstream / "escape")  # never linked into a stage's view

    slot = WorkerSlot(tmp_path / "slot")
    slot.create()
    slot.fill(str(first), {"train": str(upstream)})
    assert _tree(slot.inputs) == _tree(first)
    slot.collect(str(tmp_path / "out1"))
    slot.fill(str(second), {"train": str(upstream)})
    assert _tree(slot.inputs) == _tree(second), "the second snapshot exactly, the first one's extra file gone"
    assert sorted(p.name for p in (slot.upstream / "train").iterdir()) == ["model.txt"]

    (slot.output / "model.txt").write_text("trained")
    os.symlink("/etc/shadow", slot.output / "link")
    slot.collect(str(tmp_path / "out2"))
    assert (tmp_path / "out2" / "model.txt").read_text() == "trained"
    assert os.readlink(tmp_path / "out2" / "link") == "/etc/shadow", "moved as a link, never followed"
    assert list(slot.output.iterdir()) == [] and list(slot.upstream.iterdir()) == []

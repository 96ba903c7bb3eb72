"""Warm workers: a long-lived container per project environment that has imported the heavy
libraries once and forks a clean child per stage run (see runtime/wb_worker.py); one more per
stage that runs at the same moment (parallel stages), since each runs one stage at a time.

The container has the cold path's settings (no network unless allowed, not root, read-only root
filesystem, no capabilities, memory/CPU/pid limits, never the Docker socket), and, like a cold
container, sees only the folders of the one stage it runs: a private slot (worker_slot.py) that
the host fills with hard links of the run's snapshot and the declared upstream outputs before
the stage, and empties after it, moving the outputs into the run's output folder. The server
reports a stage's end only once every process the stage started is gone, so nothing can change
its outputs once they are recorded. Each workbench process has its own workers and control
folders (worker_control.py): processes sharing a workspace never touch each other's workers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.types import Mount

from workbench.adapters.container_owner import owner_labels
from workbench.adapters.docker_limits import limits_named
from workbench.adapters.worker_control import SOCKET_NAME, ControlFolder
from workbench.core.errors import WorkbenchError
from workbench.core.model import StageStatus
from workbench.core.ports import CancelToken, LogSink, StageJob, StageOutcome, StatusLine
from workbench.runtime import RUNTIME_DIR

# The stage's folders are where a cold container has them (docker_runner.py), so a stage sees
# the same paths warm or cold.
PROJECT_MOUNT = "/wb/project"
OUTPUT_MOUNT = "/wb/out"
UPSTREAM_MOUNT = "/wb/upstream"
CTL_MOUNT = "/wb/ctl"
LIB_MOUNT = "/wb/lib"
START_TIMEOUT_S = 180.0
LOG_TAIL = 20
NOBODY = (65534, 65534)
ROLE_LABEL = "workbench.role"
OWNER_LABEL = "workbench.owner_pid"
# Requirement names whose import name differs.
IMPORT_NAMES = {"scikit-learn": "sklearn", "pyyaml": "yaml", "pillow": "PIL", "opencv-python": "cv2",
                "python-dateutil": "dateutil", "beautifulsoup4": "bs4"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def thread_limits(cpus: float) -> dict[str, str]:
    """Thread-pool sizes matching the container's CPU limit. OpenMP (LightGBM), OpenBLAS and MKL
    size their pools from the host's core count, which a CPU quota does not hide; more threads
    than the quota allows get throttled in turn, and the example's single-row predictions ran
    1.8 times slower for it. libgomp reads this once, when it is loaded, so it belongs in the
    container's environment, not the stage's."""
    threads = str(max(1, int(cpus)))
    return {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def preload_modules(requirements: bytes | None, declared: tuple[str, ...]) -> list[str]:
    """What the worker imports ahead of time: the manifest's `preload`, else every requirement."""
    if declared:
        return list(declared)
    modules = []
    for raw in (requirements or b"").decode("utf-8", "replace").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = line.split(";")[0]
        for sep in "=<>!~[ @":
            name = name.split(sep)[0]
        name = name.strip().lower()
        modules.append(IMPORT_NAMES.get(name, name.replace("-", "_")))
    return modules


@dataclass(frozen=True)
class WorkerKey:
    """Jobs that can share a worker: same project, image, limits and network setting."""

    project: str
    image_id: str
    image_tag: str
    state_dir: str
    memory_bytes: int
    cpus: float
    network: bool

    @property
    def short(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:12]


class WorkerDied(Exception):
    pass


DEFAULT_STALL_S = 120.0
"""A child with no CPU time and no output for this long is stuck and killed."""
CANCEL_GRACE_S = 5.0
"""How long the server may take to end a cancelled or timed-out stage (it kills the stage's
processes and empties the scratch folders) before the container is removed instead."""


class WarmWorker:
    """One warm worker container, reached over the single connection its server opened to us."""

    def __init__(self, container: Container, key: WorkerKey, control: ControlFolder, conn: socket.socket,
                 hello: dict, stall_s: float = DEFAULT_STALL_S, pending: bytes = b""):
        self.container, self.key, self.control, self.conn, self.hello = container, key, control, conn, hello
        self.stall_s = stall_s
        self._events = _read_events(conn, pending)
        self._job_ids = itertools.count(1)
        self._busy = threading.Lock()
        """One stage at a time: the slot holds one stage's folders."""

    def alive(self) -> bool:
        """Whether the server is still connected. Asked before every stage, so it looks at the
        connection (microseconds) rather than asking the engine (a few ms per inspect): a
        server that died closed its end, and the connection reads as ended."""
        try:
            readable, _, _ = select.select([self.conn], [], [], 0)
            return not readable or bool(self.conn.recv(1, socket.MSG_PEEK))
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass

    def death_reason(self) -> str:
        try:
            self.container.reload()
            state = self.container.attrs["State"]
        except (docker.errors.DockerException, requests.RequestException):
            return "the warm worker's container is gone"
        if state.get("OOMKilled"):
            return "the warm worker was killed: the stage exceeded its memory limit"
        return f"the warm worker stopped (container {state.get('Status')}, exit code {state.get('ExitCode')})"

    def run(self, job: StageJob, on_log: LogSink, cancel: CancelToken) -> StageOutcome:
        started = _now()
        while not self._busy.acquire(timeout=0.05):
            if cancel.cancelled:
                return StageOutcome(StageStatus.CANCELLED, None, cancel.reason or "cancelled", [], started, _now())
        try:
            try:
                self.control.slot.fill(job.project_dir, job.upstream_dirs)
            except WorkbenchError as exc:
                return StageOutcome(StageStatus.FAILED, None, str(exc), [], started, _now())
            try:
                outcome = self._run_filled(job, on_log, cancel, started)
            except WorkerDied:
                try:  # the container is gone, so nothing writes the slot: keep what the stage wrote
                    self.control.slot.collect(job.output_dir)
                except WorkbenchError:
                    pass
                raise
            try:
                self.control.slot.collect(job.output_dir)
            except WorkbenchError as exc:
                return StageOutcome(StageStatus.FAILED, outcome.exit_code, str(exc), outcome.log_tail, started, _now())
            return outcome
        finally:
            self._busy.release()

    def _run_filled(self, job: StageJob, on_log: LogSink, cancel: CancelToken, started: datetime) -> StageOutcome:
        """Run the stage whose folders are in the slot. Returns only when no process of the stage
        is left (the server says so, or the container is gone), so the outputs can be moved."""
        tail: deque[str] = deque(maxlen=LOG_TAIL)
        job_id = next(self._job_ids)
        request = {"op": "run", "job": job_id, "command": job.command, "cwd": PROJECT_MOUNT,
                   "env": self._environment(job), "stall_s": self.stall_s}
        try:
            self.conn.sendall((json.dumps(request) + "\n").encode())
        except OSError as exc:
            reason = f"{self.death_reason()} ({exc.strerror or exc})"
            self._stop_container()
            raise WorkerDied(reason) from None
        stop: dict[str, object] = {}
        finished = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(job_id, job, cancel, stop, finished), daemon=True)
        watcher.start()
        exit_event = None
        last_line = ""
        try:
            for event in self._events:
                if event.get("job") != job_id:
                    continue  # the answer to an earlier, abandoned request
                if event["event"] == "log":
                    line = event["line"]
                    tail.append(line)
                    on_log(line)
                    if line.strip():
                        last_line = line
                elif event["event"] == "exit":
                    exit_event = event
                    break
        finally:
            finished.set()
        if exit_event is None or exit_event.get("survivors"):
            # The server is gone, or could not stop everything the stage started: only removing
            # the container makes sure nothing of the stage writes its outputs any more.
            reason = self.death_reason() if exit_event is None else ""
            self._stop_container()
            if exit_event is None:
                if stop:
                    return StageOutcome(stop["status"], None, stop["reason"], list(tail), started, _now())
                raise WorkerDied(reason)
        return self._outcome(exit_event, stop, job, last_line, list(tail), started)

    def _stop_container(self) -> None:
        self.close()
        try:
            self.container.remove(force=True)
        except (docker.errors.DockerException, requests.RequestException):
            pass

    def _watch(self, job_id: int, job: StageJob, cancel: CancelToken, stop: dict, finished: threading.Event) -> None:
        deadline = time.monotonic() + job.timeout_s
        while not finished.is_set():
            if cancel.wait(0.02):
                stop.update(status=StageStatus.CANCELLED, reason=cancel.reason or "cancelled")
            elif time.monotonic() > deadline:
                # A child that hangs (e.g. OpenMP after fork) ends here, never hung forever.
                stop.update(status=StageStatus.FAILED, reason=f"timed out after {job.timeout_s:g} s")
            else:
                continue
            try:
                self.conn.sendall((json.dumps({"op": "cancel", "job": job_id}) + "\n").encode())
            except OSError:
                pass
            if not finished.wait(CANCEL_GRACE_S):
                # The server does not answer: the stage runs as its user and may have stopped
                # it (SIGSTOP). Ending the connection makes the stage's thread remove the
                # container, so a timeout or a cancel always ends the stage.
                try:
                    self.conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return

    @staticmethod
    def _outcome(event: dict, stop: dict, job: StageJob, last_line: str, tail: list[str],
                 started: datetime) -> StageOutcome:
        code = event["code"]
        if stop:
            return StageOutcome(stop["status"], code, stop["reason"], tail, started, _now())
        if event.get("stalled"):
            reason = ("stuck: no CPU time and no output, so it was killed (a library that is not fork-safe, "
                      "such as OpenMP after training, may have run in the warm worker; try --cold)")
            return StageOutcome(StageStatus.FAILED, code, reason, tail, started, _now())
        if event.get("oom"):
            reason = f"killed: exceeded its memory limit of {job.memory_bytes / 1024**2:g} MiB"
            return StageOutcome(StageStatus.FAILED, code, reason, tail, started, _now())
        if code != 0:
            reason = f"exited with code {code}"
            if event.get("signal"):
                import signal as _signal

                reason = f"killed by signal {_signal.Signals(event['signal']).name}"
            if last_line:
                reason += f": {last_line.strip()[:200]}"
            return StageOutcome(StageStatus.FAILED, code, reason, tail, started, _now())
        return StageOutcome(StageStatus.SUCCEEDED, 0, "", tail, started, _now())

    @staticmethod
    def _environment(job: StageJob) -> dict[str, str]:
        return {
            **job.env,
            "WB_PROJECT_DIR": PROJECT_MOUNT,
            "WB_OUTPUT_DIR": OUTPUT_MOUNT,
            "WB_UPSTREAM_DIR": UPSTREAM_MOUNT,
            "WB_STAGE": job.stage,
            "WB_RUN_ID": str(job.run_id),
            "WB_PROJECT": job.project,
            "PYTHONPATH": LIB_MOUNT,
            "HOME": "/tmp",
        }


def _read_events(conn: socket.socket, buffer: bytes = b""):
    """The server's events, one per JSON line, until the connection ends."""
    while True:
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line:
                yield json.loads(line)
        try:
            chunk = conn.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk


class WorkerPool:
    """The warm workers of this workbench process: for each WorkerKey, as many as stages of it
    ran at the same time. Each worker has one slot (the isolation contract: a container sees
    only the folders of the one stage it runs), so a stage takes a free worker for itself
    (`worker`) and gives it back (`release`); a second worker of a key starts only when a
    second stage needs one while the first is busy, and stays for the next parallel stages."""

    def __init__(self, client: docker.DockerClient, stall_s: float = DEFAULT_STALL_S):
        self.client = client
        self.stall_s = stall_s
        self._workers: dict[WorkerKey, list[WarmWorker]] = {}
        self._claimed: set[int] = set()
        """id() of the workers a stage holds now."""
        self._lock = threading.Condition()
        """Guards the lists; notified when a worker is started or given back."""
        self._warming: dict[WorkerKey, int] = {}
        """Workers being started for no stage (watch mode warms one up as it starts): a stage
        waits for such a one rather than start another."""
        self._starts = 0
        """Workers being started now, for any key: `stop_all` waits for them, so none is left."""

    @staticmethod
    def can_serve(job: StageJob, state_dir: Path) -> bool:
        """Warm workers keep their folders in the workspace's state folder (hard links of the
        snapshot and upstream outputs, a rename of the outputs): a job elsewhere goes cold."""
        state = state_dir.resolve()
        outputs = [job.output_dir, *job.upstream_dirs.values()]
        return _under(Path(job.project_dir).resolve(), state / "snapshots") and all(
            _under(Path(p).resolve(), state / "runs") for p in outputs)

    def worker(self, key: WorkerKey, preload: list[str], on_log: LogSink, claim: bool = True) -> WarmWorker:
        """A live worker of `key` that no other stage holds, now the caller's until `release`
        (`claim=False`: start or find one and leave it free, for a warm-up). Stages that need a
        worker at the same moment start theirs at the same time."""
        with self._lock:
            said = False
            while True:
                free = self._claim_free(key, claim)
                if free is not None:
                    return free
                if not self._warming.get(key):
                    break
                if not said:  # a run that waits for a warm-up says so rather than hang silently
                    on_log(StatusLine(f"waiting for the warm worker of {key.project}, which is starting…"))
                    said = True
                self._lock.wait(0.5)
            for other in [k for k in self._workers if k.project == key.project and k.image_id != key.image_id]:
                self._discard_key(other)  # the environment changed: its old workers are stale
            if not claim:
                self._warming[key] = self._warming.get(key, 0) + 1
            self._starts += 1
        worker = None
        try:
            with limits_named(key.cpus, key.memory_bytes):
                worker = self._start(key, preload, on_log)
        finally:
            with self._lock:
                if not claim:
                    self._warming[key] -= 1
                if worker is not None:  # listed before the count drops, so stop_all sees it
                    self._workers.setdefault(key, []).append(worker)
                    if claim:
                        self._claimed.add(id(worker))
                self._starts -= 1
                self._lock.notify_all()
        return worker

    def _claim_free(self, key: WorkerKey, claim: bool = True) -> WarmWorker | None:
        for worker in list(self._workers.get(key, [])):
            if id(worker) in self._claimed:
                continue
            if worker.alive():
                if claim:
                    self._claimed.add(id(worker))
                return worker
            self._discard_worker(worker)
        return None

    def release(self, worker: WarmWorker) -> None:
        """The stage is over: the worker may take the next one."""
        with self._lock:
            self._claimed.discard(id(worker))
            self._lock.notify_all()

    def discard(self, worker: WarmWorker) -> None:
        """A worker that died: the next stage gets a fresh one."""
        with self._lock:
            self._discard_worker(worker)

    def count(self, key: WorkerKey) -> int:
        with self._lock:
            return len(self._workers.get(key, []))

    def stop_all(self) -> None:
        """Stop every worker, those being started included (waiting for their start to end)."""
        with self._lock:
            while self._starts:
                self._lock.wait(0.1)
            for key in list(self._workers):
                self._discard_key(key)

    def _discard_key(self, key: WorkerKey) -> None:
        for worker in list(self._workers.get(key, [])):
            self._discard_worker(worker)

    def _discard_worker(self, worker: WarmWorker) -> None:
        workers = self._workers.get(worker.key, [])
        if worker in workers:
            workers.remove(worker)
        if not workers:
            self._workers.pop(worker.key, None)
        self._claimed.discard(id(worker))
        worker.close()
        try:
            worker.container.remove(force=True)
        except (docker.errors.DockerException, requests.RequestException):
            pass
        worker.control.remove()

    def _start(self, key: WorkerKey, preload: list[str], on_log: LogSink) -> WarmWorker:
        state = Path(key.state_dir)
        user = "%d:%d" % NOBODY if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"
        control = ControlFolder.create(state / "workers", key.short)
        try:
            listener = control.listen()
            # Nothing of the workspace but this worker's own folders: the slot at the paths a
            # cold container has, and the folder of the socket, read-only, so no stage can
            # replace it.
            slot = control.slot
            mounts = [
                Mount(PROJECT_MOUNT, str(slot.inputs), type="bind", read_only=True),
                Mount(UPSTREAM_MOUNT, str(slot.upstream), type="bind", read_only=True),
                Mount(OUTPUT_MOUNT, str(slot.output), type="bind", read_only=False),
                Mount(CTL_MOUNT, str(control.socket_dir), type="bind", read_only=True),
                Mount(LIB_MOUNT, str(RUNTIME_DIR), type="bind", read_only=True),
            ]
            on_log(StatusLine(f"starting a warm worker for {key.project} (preloading "
                              f"{', '.join(preload) or 'nothing'})…"))
            container = self._run_container(key, preload, mounts, user, state)
            try:
                conn, hello, pending = self._await_hello(container, listener)
            finally:
                control.stop_listening(listener)
        except BaseException:
            control.remove()
            raise
        worker = WarmWorker(container, key, control, conn, hello, self.stall_s, pending)
        if hello.get("failed"):
            on_log(f"warm worker could not preload: {hello['failed']}")
        on_log(f"warm worker ready: imported {', '.join(hello.get('preloaded', [])) or 'nothing'} "
               f"in {hello.get('import_seconds', 0):.2f} s")
        return worker

    def _run_container(self, key: WorkerKey, preload: list[str], mounts: list[Mount], user: str,
                       state: Path) -> Container:
        return self.client.containers.run(
            key.image_tag,
            ["python", f"{LIB_MOUNT}/wb_worker.py", "--connect", f"{CTL_MOUNT}/{SOCKET_NAME}",
             "--preload", ",".join(preload)],
            detach=True,
            working_dir="/tmp",
            environment={"PYTHONPATH": LIB_MOUNT, "HOME": "/tmp", "PYTHONUNBUFFERED": "1",
                         **thread_limits(key.cpus)},
            mounts=mounts,
            network_mode="bridge" if key.network else "none",
            mem_limit=key.memory_bytes,
            memswap_limit=key.memory_bytes,
            nano_cpus=int(key.cpus * 1e9),
            pids_limit=512,
            user=user,
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,noexec"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=True,
            labels={"workbench.project": key.project, "workbench.image_id": key.image_id,
                    **owner_labels(state), ROLE_LABEL: "worker"},
        )

    @staticmethod
    def _await_hello(container: Container, listener: socket.socket) -> tuple[socket.socket, dict, bytes]:
        """The worker's connection and its hello line (sent once its preload is done)."""
        deadline = time.monotonic() + START_TIMEOUT_S

        def still_starting() -> bool:
            try:
                container.reload()
            except (docker.errors.DockerException, requests.RequestException):
                return False
            return container.status in ("created", "running") and time.monotonic() < deadline

        listener.settimeout(0.25)
        conn = None
        try:
            while conn is None:
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    if not still_starting():
                        break
            buffer = b""
            if conn is not None:
                conn.settimeout(0.25)
                while b"\n" not in buffer:
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        if still_starting():
                            continue
                        chunk = b""
                    if not chunk:
                        break
                    buffer += chunk
            if conn is not None and b"\n" in buffer:
                line, pending = buffer.split(b"\n", 1)
                hello = json.loads(line)
                conn.settimeout(None)
                return conn, hello, pending
        except (OSError, ValueError):
            pass
        if conn is not None:
            conn.close()
        try:
            logs = container.logs(tail=10).decode("utf-8", "replace")
            container.remove(force=True)
        except (docker.errors.DockerException, requests.RequestException):
            logs = ""
        raise WorkbenchError(f"the warm worker did not start: {logs.strip() or 'no output'}")


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False

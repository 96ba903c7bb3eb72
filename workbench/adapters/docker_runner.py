"""Stages in Docker containers: the project's environment is an image built once from a base
image plus its requirements (docker_images.py); each stage runs in the project's warm worker
(warm_worker.py) or in a fresh, locked-down container that sees the run's snapshot read-only
and can write only its output folder."""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, TypedDict

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.types import Mount

from workbench.adapters.container_owner import (OWNER_LABEL, WORKSPACE_LABEL, is_orphan, owner_labels,
                                                workspace_id)
from workbench.adapters.docker_engine import LineBuffer, connect_engine, engine_calls, engine_unavailable, explain
from workbench.adapters.docker_images import (BASE_IMAGE_VARIABLE, BOOTSTRAP_BASE_IMAGE, DEFAULT_BASE_IMAGE,
                                              EnvironmentImages, read_requirements)
from workbench.core.errors import WorkbenchError
from workbench.core.manifest import EnvironmentSpec
from workbench.core.model import StageStatus
from workbench.core.ports import CancelToken, LogSink, PreparedEnvironment, StageJob, StageOutcome
from workbench.adapters.docker_limits import ResourceLimitError, limits_problem
from workbench.adapters.warm_worker import (DEFAULT_STALL_S, WorkerDied, WorkerKey, WorkerPool, preload_modules,
                                            thread_limits)
from workbench.runtime import RUNTIME_DIR

PROJECT_MOUNT = "/wb/project"
OUTPUT_MOUNT = "/wb/out"
UPSTREAM_MOUNT = "/wb/upstream"
LIB_MOUNT = "/wb/lib"

LOG_TAIL = 20
PIDS_LIMIT = 512
NOBODY = (65534, 65534)
CANCEL_POLL_S = 0.05
ROLE_LABEL = "workbench.role"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class EngineInfo(TypedDict):
    """What `workbench doctor` reports about the engine."""

    server_version: str
    api_version: str
    base_images: dict[str, bool]
    """Each base image the runner may use, and whether it is present locally."""
    base_image: str | None
    """The one a project without `environment.base_image` gets offline; None: there is none."""


class DockerRunner:
    name = "docker"

    def __init__(self, client: docker.DockerClient | None = None, mode: str = "warm",
                 stall_s: float = DEFAULT_STALL_S, state_dir: Path | None = None):
        if mode not in ("warm", "cold"):
            raise ValueError("mode must be 'warm' or 'cold'")
        self.client = connect_engine(client)
        self.mode = mode
        self.state_dir = state_dir
        """The workspace's state folder: its id labels our containers (container_owner.py)."""
        self.images = EnvironmentImages(self.client)
        self._workers = WorkerPool(self.client, stall_s)
        self._warm_settings: dict[str, tuple[bool, list[str]]] = {}
        """Per environment image: (the manifest requires cold runs, modules to preload)."""
        atexit.register(self.close)

    def close(self) -> None:
        """Stop this process's warm workers (also run at interpreter exit)."""
        self._workers.stop_all()

    # -- environment ------------------------------------------------------------------------

    def prepare(self, project_dir: str, env: EnvironmentSpec, on_log: LogSink,
                project: str | None = None, cancel: CancelToken | None = None) -> PreparedEnvironment:
        prepared = self.images.ensure(project_dir, env, on_log, project, cancel)
        preload = preload_modules(read_requirements(project_dir, env), env.preload)
        self._warm_settings[prepared.image_tag] = (env.cold, preload)
        return prepared

    # -- stages -----------------------------------------------------------------------------

    def run_stage(self, job: StageJob, on_log: LogSink, cancel: CancelToken) -> StageOutcome:
        """In the project's warm worker when it can be (see warm_worker.py), else in a fresh
        container (cold mode, a manifest that requires it, or a job outside the workspace)."""
        cold_required, preload = self._warm_settings.get(job.environment.image_tag, (False, []))
        parents = Path(job.output_dir).parents  # <state>/runs/<run id>/<stage>
        state_dir = parents[2] if len(parents) > 2 else Path("/")
        # A warm worker has no GPUs: a stage that needs them gets a container with its devices.
        if self.mode == "cold" or cold_required or job.gpus or not self._workers.can_serve(job, state_dir):
            return self._run_cold(job, on_log, cancel)
        key = WorkerKey(job.project, job.environment.image_id, job.environment.image_tag, str(state_dir),
                        job.memory_bytes, job.cpus, job.network)
        started = _now()
        try:
            worker = self._workers.worker(key, preload, on_log)
        except ResourceLimitError as exc:  # a fresh container would be refused the same limit
            return StageOutcome(StageStatus.FAILED, None, str(exc), [], started, _now())
        except (WorkbenchError, docker.errors.DockerException, requests.RequestException) as exc:
            on_log(f"no warm worker ({exc}); running this stage in a fresh container")
            return self._run_cold(job, on_log, cancel)
        try:
            return worker.run(job, on_log, cancel)
        except WorkerDied as exc:
            # The next stage gets a fresh worker; this one is recorded as failed, with why.
            self._workers.discard(worker)
            return StageOutcome(StageStatus.FAILED, None, str(exc), [], started, _now())
        finally:
            self._workers.release(worker)  # no-op after a discard

    def warm_up(self, project: str, project_dir: str, env: EnvironmentSpec, state_dir: str,
                on_log: LogSink) -> None:
        """Build the environment if needed and start the project's warm worker now (watch mode
        does this when it starts, so the first change does not pay for it)."""
        if self.mode == "cold" or env.cold:
            return
        prepared = self.prepare(project_dir, env, on_log, project=project)
        _cold, preload = self._warm_settings.get(prepared.image_tag, (False, []))
        key = WorkerKey(project, prepared.image_id, prepared.image_tag, state_dir, env.memory_bytes, env.cpus,
                        env.network)
        with engine_calls(self.client, WorkbenchError, "starting the warm worker"):
            self._workers.worker(key, preload, on_log, claim=False)

    def _run_cold(self, job: StageJob, on_log: LogSink, cancel: CancelToken) -> StageOutcome:
        started = _now()
        tail: deque[str] = deque(maxlen=LOG_TAIL)
        if cancel.cancelled:
            return StageOutcome(StageStatus.CANCELLED, None, cancel.reason, [], started, _now())
        container: Container | None = None
        stop = _Stop()
        try:
            container = self._create_container(job)
            # Attached before the start so that no output of a quick stage is lost.
            output = self.client.api.attach(container.id, stdout=True, stderr=True, stream=True, demux=True)
            container.start()
            threading.Thread(target=self._watch, args=(container, job, cancel, stop), daemon=True).start()
            last_line = _stream_lines(output, on_log, tail)
            container.wait()
            stop.finished.set()  # over: a cancel from now on must not relabel a finished stage
            container.reload()
            return _outcome(container.attrs["State"], stop, job, last_line, list(tail), started)
        except requests.ConnectionError as exc:
            raise engine_unavailable(self.client, exc) from None
        except docker.errors.ImageNotFound:
            reason = f"environment image {job.environment.image_tag} is missing; the next run rebuilds it"
            return StageOutcome(StageStatus.FAILED, None, reason, list(tail), started, _now())
        except (docker.errors.DockerException, requests.RequestException) as exc:
            reason = (limits_problem(exc, job.cpus, job.memory_bytes)
                      or f"Docker could not run the stage: {explain(exc)}")
            return StageOutcome(StageStatus.FAILED, None, reason, list(tail), started, _now())
        finally:
            stop.finished.set()
            if container is not None:
                _remove_quietly(container)

    def _create_container(self, job: StageJob) -> Container:
        os.makedirs(job.output_dir, exist_ok=True)
        if os.getuid() == 0:
            # Never run a stage as root; the unprivileged user needs its output folder.
            os.chown(job.output_dir, *NOBODY)
            user = "%d:%d" % NOBODY
        else:
            user = f"{os.getuid()}:{os.getgid()}"
        mounts = [
            Mount(PROJECT_MOUNT, os.path.abspath(job.project_dir), type="bind", read_only=True),
            Mount(OUTPUT_MOUNT, os.path.abspath(job.output_dir), type="bind", read_only=False),
            Mount(LIB_MOUNT, str(RUNTIME_DIR), type="bind", read_only=True),
        ] + [
            Mount(f"{UPSTREAM_MOUNT}/{name}", os.path.abspath(path), type="bind", read_only=True)
            for name, path in job.upstream_dirs.items()
        ]
        environment = {
            **thread_limits(job.cpus),
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
        return self.client.containers.create(
            job.environment.image_tag,
            ["sh", "-c", job.command],
            working_dir=PROJECT_MOUNT,
            environment=environment,
            mounts=mounts,
            network_mode="bridge" if job.network else "none",
            mem_limit=job.memory_bytes,
            memswap_limit=job.memory_bytes,  # equal limits: no swap, so a hog is killed, not slowed
            nano_cpus=int(job.cpus * 1e9),
            device_requests=[docker.types.DeviceRequest(count=job.gpus, capabilities=[["gpu"]])] if job.gpus else None,
            pids_limit=PIDS_LIMIT,
            user=user,
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,noexec"},  # the only writable place besides /wb/out
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=True,  # reaps the zombies of stages that fork workers (joblib, lightgbm)
            labels={
                "workbench.run_id": str(job.run_id),
                "workbench.stage": job.stage,
                "workbench.project": job.project,
                **owner_labels(self.state_dir),
                ROLE_LABEL: "stage",
            },
        )

    @staticmethod
    def _watch(container: Container, job: StageJob, cancel: CancelToken, stop: _Stop) -> None:
        """Kill the container on cancel or timeout. Waiting on the token's event (not sleeping)
        makes a cancel reach the engine within milliseconds."""
        deadline = time.monotonic() + job.timeout_s
        while not stop.finished.is_set():
            if cancel.wait(CANCEL_POLL_S):
                stop.status, stop.reason = StageStatus.CANCELLED, cancel.reason
            elif time.monotonic() > deadline:
                stop.status, stop.reason = StageStatus.FAILED, f"timed out after {job.timeout_s:g} s"
            else:
                continue
            try:
                container.kill()
            except (docker.errors.DockerException, requests.RequestException):
                pass  # it exited on its own meanwhile, or the engine is gone: the main thread sees that
            return

    # -- housekeeping -----------------------------------------------------------------------

    def cleanup_orphans(self, state_dir: Path | None = None) -> int:
        """Remove stage and warm-worker containers that a workbench of this workspace, on this
        host and in this PID namespace, left behind when it died (container_owner.py); the
        containers of any other workbench on the engine are not touched."""
        state_dir = state_dir if state_dir is not None else self.state_dir
        ours = workspace_id(state_dir) if state_dir is not None else ""
        removed = 0
        with engine_calls(self.client, WorkbenchError, "removing leftover stage containers"):
            containers = self.client.containers.list(
                all=True, filters={"label": [OWNER_LABEL, f"{WORKSPACE_LABEL}={ours}"]}, ignore_removed=True)
            for container in containers:
                if is_orphan(container.labels, state_dir):
                    _remove_quietly(container)
                    removed += 1
        return removed

    def engine_info(self) -> EngineInfo:
        with engine_calls(self.client, WorkbenchError, "asking the Docker engine for its version"):
            version = self.client.version()
            chosen = os.environ.get(BASE_IMAGE_VARIABLE)
            names = [name for name in (chosen, DEFAULT_BASE_IMAGE, BOOTSTRAP_BASE_IMAGE) if name]
            present = {name: self.images.local_image(name) is not None for name in names}
        # As in prepare: a base image named in the environment variable has no fallback.
        usable = next((name for name in ([chosen] if chosen else names) if present[name]), None)
        return EngineInfo(server_version=version.get("Version", "?"), api_version=version.get("ApiVersion", "?"),
                          base_images=present, base_image=usable)


class _Stop:
    """Why the watcher killed the container, and the signal that it need not any more."""

    def __init__(self) -> None:
        self.finished = threading.Event()
        self.status: StageStatus | None = None
        self.reason = ""


def _stream_lines(output: Iterator[tuple[bytes | None, bytes | None]], on_log: LogSink,
                  tail: deque[str]) -> str:
    """Pass each line to `on_log` as the stage prints it; return the line that best explains
    a failure (the last one on stderr, else on stdout)."""
    buffers = {"out": LineBuffer(), "err": LineBuffer()}
    last = {"out": "", "err": ""}

    def emit(stream: str, lines: list[str]) -> None:
        for line in lines:
            tail.append(line)
            on_log(line)
            if line.strip():
                last[stream] = line

    for out, err in output:
        if out:
            emit("out", buffers["out"].feed(out))
        if err:
            emit("err", buffers["err"].feed(err))
    for stream, buffer in buffers.items():
        emit(stream, buffer.flush())
    # The two streams reach us through separate pipes, so a chatty stdout can push the
    # error out of the tail; the line that explains a failure must stay in it.
    if last["err"] and last["err"] not in tail:
        tail.append(last["err"])
    return last["err"] or last["out"]


def _outcome(state: dict, stop: _Stop, job: StageJob, last_line: str, tail: list[str],
             started: datetime) -> StageOutcome:
    code = state.get("ExitCode")
    if stop.status is not None:
        status, reason = stop.status, stop.reason
    elif state.get("OOMKilled"):
        status, reason = StageStatus.FAILED, f"killed: exceeded its memory limit of {_size(job.memory_bytes)}"
    elif code != 0:
        status, reason = StageStatus.FAILED, f"exited with code {code}"
        if code > 128 and (code - 128) in signal.valid_signals():
            reason += f" ({signal.Signals(code - 128).name})"
        if last_line:
            reason += f": {last_line.strip()[:200]}"
    else:
        status, reason = StageStatus.SUCCEEDED, ""
    return StageOutcome(status, code, reason, tail, started, _now())


def _remove_quietly(container: Container) -> None:
    try:
        container.remove(force=True)
    except (docker.errors.DockerException, requests.RequestException):
        pass  # already gone; or the engine is, and `cleanup_orphans` removes it next start


def _size(n_bytes: int) -> str:
    if n_bytes >= 1024**3:
        return f"{n_bytes / 1024**3:g} GiB"
    return f"{n_bytes / 1024**2:g} MiB"

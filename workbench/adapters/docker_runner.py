"""Stages in Docker containers: the project's environment is an image built once from a base
image plus its requirements; each stage runs in a fresh, locked-down container that sees the
run's snapshot read-only and can write only its output folder."""

from __future__ import annotations

import atexit
import codecs
import hashlib
import os
import re
import shutil
import signal
import ssl
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, TypedDict

import certifi
import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.models.images import Image
from docker.types import Mount

from workbench.core.errors import EngineUnavailable, EnvironmentBuildError, RunCancelled, WorkbenchError
from workbench.core.manifest import EnvironmentSpec
from workbench.core.model import StageStatus
from workbench.core.ports import CancelToken, LogSink, PreparedEnvironment, StageJob, StageOutcome
from workbench.adapters.warm_worker import (DEFAULT_STALL_S, WorkerDied, WorkerKey, WorkerPool, preload_modules,
                                            thread_limits)
from workbench.runtime import RUNTIME_DIR

DEFAULT_BASE_IMAGE = "python:3.11-slim"
BOOTSTRAP_BASE_IMAGE = "workbench/python-base:bookworm"
"""Made offline by `workbench env bootstrap` (see base_image.py) where no registry is reachable."""
BASE_IMAGE_VARIABLE = "WORKBENCH_BASE_IMAGE"

PROJECT_MOUNT = "/wb/project"
OUTPUT_MOUNT = "/wb/out"
UPSTREAM_MOUNT = "/wb/upstream"
LIB_MOUNT = "/wb/lib"

LOG_TAIL = 20
MAX_LINE_CHARS = 64 * 1024
"""A stage that prints without newlines (progress bars) must not grow one line without bound."""
PIDS_LIMIT = 512
NOBODY = (65534, 65534)
CANCEL_POLL_S = 0.05
ROLE_LABEL = "workbench.role"
OWNER_LABEL = "workbench.owner_pid"

# The base image may carry no ENV at all (a `docker import`ed rootfs), so PATH is spelled out
# rather than extended. The host's CA bundle replaces the image's: pip and stages then trust
# what the host trusts, which matters behind a TLS-inspecting proxy.
DOCKERFILE = """\
FROM {base_image}
RUN python3 -m venv /opt/wb-venv
COPY host-ca-bundle.crt /etc/ssl/certs/ca-certificates.crt
{install}ENV PATH=/opt/wb-venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONUNBUFFERED=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    HOME=/tmp
"""
INSTALL_REQUIREMENTS = """\
COPY requirements.txt /opt/wb-requirements.txt
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/wb-venv/bin/pip install \\
    --no-cache-dir --disable-pip-version-check -r /opt/wb-requirements.txt
"""

ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
"""The classic builder paints a step's stderr red; logs and error messages want plain text."""
BUILDER_BOOKKEEPING = re.compile(r"^ ---> |^Removing intermediate container ")


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


def connect_engine(client: docker.DockerClient | None = None) -> docker.DockerClient:
    """The given client, or one configured from the environment ($DOCKER_HOST), once the
    engine has answered."""
    try:
        client = client or docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise _engine_unavailable(client, exc) from None
    return client


class DockerRunner:
    name = "docker"

    def __init__(self, client: docker.DockerClient | None = None, mode: str = "warm",
                 stall_s: float = DEFAULT_STALL_S):
        if mode not in ("warm", "cold"):
            raise ValueError("mode must be 'warm' or 'cold'")
        self.client = connect_engine(client)
        self.mode = mode
        self._unpullable: set[str] = set()
        """Images a pull already failed for: offline, every prepare would otherwise retry."""
        self._workers = WorkerPool(self.client, stall_s)
        self._builds: dict[str, _Build] = {}
        """Image builds under way, by tag: a second run needing the same image waits for it."""
        self._builds_lock = threading.Lock()
        self._warm_settings: dict[str, tuple[bool, list[str]]] = {}
        """Per environment image: (the manifest requires cold runs, modules to preload)."""
        atexit.register(self.close)

    def close(self) -> None:
        """Stop this process's warm workers (also run at interpreter exit)."""
        self._workers.stop_all()

    # -- environment ------------------------------------------------------------------------

    def prepare(self, project_dir: str, env: EnvironmentSpec, on_log: LogSink,
                project: str | None = None, cancel: CancelToken | None = None) -> PreparedEnvironment:
        with self._engine_calls(EnvironmentBuildError, "preparing the environment image"):
            base_name, base = self._resolve_base_image(env, on_log)
            requirements = _read_requirements(project_dir, env)
            preload = preload_modules(requirements, env.preload)
            dockerfile = DOCKERFILE.format(
                base_image=base_name, install=INSTALL_REQUIREMENTS if requirements is not None else "")
            digest = hashlib.sha256()
            for part in (base.id.encode(), requirements or b"", dockerfile.encode()):
                digest.update(part + b"\0")
            name = _repository_name(project or Path(project_dir).resolve().name)
            tag = f"workbench-env/{name}:{digest.hexdigest()[:16]}"
            self._warm_settings[tag] = (env.cold, preload)
            existing = self._local_image(tag)
            if existing is not None:
                on_log(f"environment image {tag} is up to date")
                return PreparedEnvironment(image_id=existing.id, image_tag=tag, built=False)
        image_id = self._await_build(tag, dockerfile, requirements, on_log, cancel)
        return PreparedEnvironment(image_id=image_id, image_tag=tag, built=True)

    def _await_build(self, tag: str, dockerfile: str, requirements: bytes | None, on_log: LogSink,
                     cancel: CancelToken | None) -> str:
        """Build the image on a thread of its own and wait for it. A cancelled run stops waiting
        at once, but the build goes on: the next run (the one that superseded it, or the user's
        retry) joins it instead of starting a pip install of several minutes over."""
        with self._builds_lock:
            build = self._builds.get(tag)
            if build is None:
                build = self._builds[tag] = _Build()
                threading.Thread(target=self._run_build, args=(build, tag, dockerfile, requirements),
                                 name=f"build {tag}", daemon=True).start()
            else:
                on_log(f"joining the build of {tag} already under way")
        build.follow(on_log)
        try:
            while not build.done.wait(0.1):
                if cancel is not None and cancel.cancelled:
                    raise RunCancelled(f"{cancel.reason or 'cancelled'} while the environment image {tag} was "
                                       "being built (the build goes on, for the next run)")
        finally:
            build.unfollow(on_log)
        if build.error is not None:
            raise build.error
        assert build.image_id is not None
        return build.image_id

    def _run_build(self, build: _Build, tag: str, dockerfile: str, requirements: bytes | None) -> None:
        try:
            with self._engine_calls(EnvironmentBuildError, f"building the environment image {tag}"):
                build.image_id = self._build(tag, dockerfile, requirements, build.log)
        except WorkbenchError as exc:
            build.error = exc
        except Exception as exc:  # a bug must reach the waiting run, not die with this thread
            build.error = EnvironmentBuildError(f"building the environment image {tag}: internal error {exc!r}")
        finally:
            with self._builds_lock:
                self._builds.pop(tag, None)
            build.done.set()

    def _resolve_base_image(self, env: EnvironmentSpec, on_log: LogSink) -> tuple[str, Image]:
        chosen, origin = env.base_image, "environment.base_image"
        if not chosen and os.environ.get(BASE_IMAGE_VARIABLE):
            chosen, origin = os.environ[BASE_IMAGE_VARIABLE], f"${BASE_IMAGE_VARIABLE}"
        if chosen:
            image = self._local_or_pulled(chosen, on_log)
            if image is None:
                raise EnvironmentBuildError(
                    f"base image {chosen} (from {origin}) is not present locally and could not be pulled")
            return chosen, image
        image = self._local_or_pulled(DEFAULT_BASE_IMAGE, on_log)
        if image is not None:
            return DEFAULT_BASE_IMAGE, image
        image = self._local_image(BOOTSTRAP_BASE_IMAGE)
        if image is not None:
            on_log(f"using the offline base image {BOOTSTRAP_BASE_IMAGE} ({DEFAULT_BASE_IMAGE} is not available)")
            return BOOTSTRAP_BASE_IMAGE, image
        raise EnvironmentBuildError(
            f"no base image: {DEFAULT_BASE_IMAGE} is not present locally and could not be pulled, and "
            f"{BOOTSTRAP_BASE_IMAGE} does not exist; run `workbench env bootstrap` to build it offline, "
            f"or set environment.base_image (or ${BASE_IMAGE_VARIABLE}) to an image you have")

    def _local_image(self, name: str) -> Image | None:
        try:
            return self.client.images.get(name)
        except docker.errors.ImageNotFound:
            return None

    def _local_or_pulled(self, name: str, on_log: LogSink) -> Image | None:
        image = self._local_image(name)
        if image is not None or name in self._unpullable:
            return image
        on_log(f"pulling {name}")
        try:
            return self.client.images.pull(name)
        except docker.errors.APIError as exc:
            self._unpullable.add(name)
            on_log(f"could not pull {name}: {_explain(exc)}")
            return None

    def _build(self, tag: str, dockerfile: str, requirements: bytes | None, on_log: LogSink) -> str:
        # A context of its own: sending the project (data files included) to the daemon would
        # be slow, and the image must not depend on anything but its declared inputs.
        with tempfile.TemporaryDirectory(prefix="wb-build-") as context:
            Path(context, "Dockerfile").write_text(dockerfile)
            shutil.copyfile(_host_ca_bundle(), Path(context, "host-ca-bundle.crt"))
            if requirements is not None:
                Path(context, "requirements.txt").write_bytes(requirements)
            on_log(f"building environment image {tag}")
            lines, step_lines = _LineBuffer(), deque(maxlen=12)
            chunks = self.client.api.build(
                path=context, tag=tag, rm=True, forcerm=True, pull=False, network_mode="host",
                labels={"workbench.env": "1"}, decode=True)
            for chunk in chunks:
                if "error" in chunk:
                    raise EnvironmentBuildError(
                        f"building the environment image {tag} failed: {chunk['error'].strip()}"
                        + "".join(f"\n  {line}" for line in step_lines))
                for line in lines.feed(ANSI_COLOUR.sub("", chunk.get("stream", ""))):
                    on_log(line)
                    if line.startswith("Step "):
                        step_lines.clear()  # a failure is explained by its own step's output
                    if not BUILDER_BOOKKEEPING.match(line):
                        step_lines.append(line)
        return self.client.images.get(tag).id

    # -- stages -----------------------------------------------------------------------------

    def run_stage(self, job: StageJob, on_log: LogSink, cancel: CancelToken) -> StageOutcome:
        """In the project's warm worker when it can be (see warm_worker.py), else in a fresh
        container (cold mode, a manifest that requires it, or a job outside the workspace)."""
        cold_required, preload = self._warm_settings.get(job.environment.image_tag, (False, []))
        parents = Path(job.output_dir).parents  # <state>/runs/<run id>/<stage>
        state_dir = parents[2] if len(parents) > 2 else Path("/")
        if self.mode == "cold" or cold_required or not self._workers.can_serve(job, state_dir):
            return self._run_cold(job, on_log, cancel)
        key = WorkerKey(job.project, job.environment.image_id, job.environment.image_tag, str(state_dir),
                        job.memory_bytes, job.cpus, job.network)
        started = _now()
        try:
            worker = self._workers.worker(key, preload, on_log)
        except (WorkbenchError, docker.errors.DockerException, requests.RequestException) as exc:
            on_log(f"no warm worker ({exc}); running this stage in a fresh container")
            return self._run_cold(job, on_log, cancel)
        try:
            return worker.run(job, on_log, cancel)
        except WorkerDied as exc:
            # The next stage gets a fresh worker; this one is recorded as failed, with why.
            self._workers.discard(key)
            return StageOutcome(StageStatus.FAILED, None, str(exc), [], started, _now())

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
        with self._engine_calls(WorkbenchError, "starting the warm worker"):
            self._workers.worker(key, preload, on_log)

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
            raise _engine_unavailable(self.client, exc) from None
        except docker.errors.ImageNotFound:
            reason = f"environment image {job.environment.image_tag} is missing; the next run rebuilds it"
            return StageOutcome(StageStatus.FAILED, None, reason, list(tail), started, _now())
        except (docker.errors.DockerException, requests.RequestException) as exc:
            reason = f"Docker could not run the stage: {_explain(exc)}"
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
                OWNER_LABEL: str(os.getpid()),
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

    def cleanup_orphans(self) -> int:
        """Remove stage and warm-worker containers whose workbench process is gone (it crashed
        or was killed)."""
        removed = 0
        with self._engine_calls(WorkbenchError, "removing leftover stage containers"):
            containers = self.client.containers.list(
                all=True, filters={"label": OWNER_LABEL}, ignore_removed=True)
            for container in containers:
                if not _is_live_pid(container.labels.get(OWNER_LABEL, "")):
                    _remove_quietly(container)
                    removed += 1
        return removed

    def engine_info(self) -> EngineInfo:
        with self._engine_calls(WorkbenchError, "asking the Docker engine for its version"):
            version = self.client.version()
            chosen = os.environ.get(BASE_IMAGE_VARIABLE)
            names = [name for name in (chosen, DEFAULT_BASE_IMAGE, BOOTSTRAP_BASE_IMAGE) if name]
            present = {name: self._local_image(name) is not None for name in names}
        # As in prepare: a base image named in the environment variable has no fallback.
        usable = next((name for name in ([chosen] if chosen else names) if present[name]), None)
        return EngineInfo(server_version=version.get("Version", "?"), api_version=version.get("ApiVersion", "?"),
                          base_images=present, base_image=usable)

    @contextmanager
    def _engine_calls(self, failure: type[WorkbenchError], doing: str) -> Iterator[None]:
        """Turn the SDK's exceptions into ours: the user sees what failed, never a traceback."""
        try:
            yield
        except requests.ConnectionError as exc:
            raise _engine_unavailable(self.client, exc) from None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise failure(f"{doing} failed: {_explain(exc)}") from None


class _Build:
    """An image build under way: its log so far, replayed to whoever follows it later."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.image_id: str | None = None
        self.error: WorkbenchError | None = None
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._sinks: list[LogSink] = []

    def follow(self, on_log: LogSink) -> None:
        with self._lock:  # replay and subscribe at once, so no line is missed or repeated
            for line in self._lines:
                on_log(line)
            self._sinks.append(on_log)

    def unfollow(self, on_log: LogSink) -> None:
        with self._lock:
            self._sinks.remove(on_log)

    def log(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            for sink in self._sinks:
                sink(line)


class _Stop:
    """Why the watcher killed the container, and the signal that it need not any more."""

    def __init__(self) -> None:
        self.finished = threading.Event()
        self.status: StageStatus | None = None
        self.reason = ""


class _LineBuffer:
    """Reassembles lines from chunks that cut them anywhere, even inside a UTF-8 character."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, data: bytes | str) -> list[str]:
        text = data if isinstance(data, str) else self._decoder.decode(data)
        *lines, self._partial = (self._partial + text).split("\n")
        if len(self._partial) > MAX_LINE_CHARS:
            lines.append(self._partial)
            self._partial = ""
        return [line.rstrip("\r") for line in lines]

    def flush(self) -> list[str]:
        rest, self._partial = self._partial + self._decoder.decode(b"", final=True), ""
        return [rest.rstrip("\r")] if rest else []


def _stream_lines(output: Iterator[tuple[bytes | None, bytes | None]], on_log: LogSink,
                  tail: deque[str]) -> str:
    """Pass each line to `on_log` as the stage prints it; return the line that best explains
    a failure (the last one on stderr, else on stdout)."""
    buffers = {"out": _LineBuffer(), "err": _LineBuffer()}
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


def _is_live_pid(text: str) -> bool:
    if not text.isdigit() or int(text) == 0:
        return False
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _read_requirements(project_dir: str, env: EnvironmentSpec) -> bytes | None:
    if not env.requirements:
        return None
    path = Path(project_dir, env.requirements)
    if not path.is_file():
        raise EnvironmentBuildError(f"requirements file {env.requirements} not found in {project_dir}")
    return path.read_bytes()


def _host_ca_bundle() -> str:
    candidates = [os.environ.get("SSL_CERT_FILE"), ssl.get_default_verify_paths().cafile, certifi.where()]
    return next(path for path in candidates if path and os.path.isfile(path))


def _repository_name(folder: str) -> str:
    """Docker repository names allow lower-case letters, digits and single separators."""
    name = re.sub(r"[^a-z0-9]+", "-", folder.lower()).strip("-")
    return name or "project"


def _size(n_bytes: int) -> str:
    if n_bytes >= 1024**3:
        return f"{n_bytes / 1024**3:g} GiB"
    return f"{n_bytes / 1024**2:g} MiB"


def _explain(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc)


def _engine_url(client: docker.DockerClient | None) -> str:
    if client is None:
        return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    # The SDK rewrites unix:// addresses to http+docker://localhost; the adapter keeps the path.
    adapter = client.api.get_adapter(client.api.base_url)
    socket_path = getattr(adapter, "socket_path", None)
    return f"unix://{socket_path}" if socket_path else client.api.base_url


def _engine_unavailable(client: docker.DockerClient | None, exc: Exception) -> EngineUnavailable:
    return EngineUnavailable(
        f"no Docker engine is reachable at {_engine_url(client)}: {_connection_problem(exc)}; "
        "start it or use --runner local")


def _connection_problem(exc: BaseException) -> str:
    """The useful part is an OSError buried in requests' and urllib3's wrappers."""
    known = {
        FileNotFoundError: "the socket does not exist",
        PermissionError: "permission denied (is your user in the docker group?)",
        ConnectionRefusedError: "connection refused",
    }
    pending, seen = [exc], set()
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if type(error) in known:
            return known[type(error)]
        pending += [arg for arg in error.args if isinstance(arg, BaseException)]
        pending += [e for e in (error.__cause__, error.__context__) if e is not None]
    return str(exc)

"""Serving containers: one per served alias, running runtime/wb_serve.py in the serving image.

Locked down like a stage container (docker_runner.py, warm_worker.py): not root, read-only root
filesystem, no capabilities, no new privileges, the manifest's memory and CPU limits, a pid
limit, /tmp the only writable place. It sees only what it serves, all read-only:

    /wb/lib      the workbench runtime (this package's runtime/ folder)
    /wb/deploy   the project's deploy folder (.workbench/deploy/<project>), so the server can
                 follow its alias's pointer (hot swap) without the host telling it
    /wb/project  the project's folder, only when `[serving] predict` names a function in it
    /wb/schema   the training data's columns (schema.json, written by the host)

and one folder read-write, unless `[serving] log_requests = false`:

    /wb/traffic  .workbench/serving/<project>/traffic/<alias>/ (mode 0700, owned by the
                 container's user): the traffic log and feedback segments (runtime/wb_traffic.py).
                 The project's predict function can write anything there, so the host reads it
                 only through adapters/traffic_files.py.

A server is stopped with SIGTERM before it is removed, so it closes its open traffic segments.

It has a network (a published port needs one) but its port is published on 127.0.0.1 unless
the user names another address. Labelled like every workbench container (container_owner.py):
its owner is the `workbench serve` process, which stays in the foreground, so a serving
container whose workbench died is an orphan that the next workbench's cleanup removes.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests
from docker.models.containers import Container
from docker.types import Mount

from workbench.adapters.container_owner import WORKSPACE_LABEL, owner_labels, workspace_id
from workbench.adapters.docker_limits import limits_named
from workbench.adapters.warm_worker import NOBODY, ROLE_LABEL, thread_limits
from workbench.core.errors import WorkbenchError
from workbench.runtime import RUNTIME_DIR

SERVER_ROLE = "server"
PROJECT_LABEL = "workbench.project"
ALIAS_LABEL = "workbench.alias"
SINCE_LABEL = "workbench.since"
CONTAINER_PORT = 8080
LIB, DEPLOY, PROJECT, SCHEMA = "/wb/lib", "/wb/deploy", "/wb/project", "/wb/schema"
TRAFFIC = "/wb/traffic"
STOP_TIMEOUT_S = 10
"""How long a server has after SIGTERM to finish its requests and close its traffic segments."""


@dataclass(frozen=True)
class ServerSpec:
    project: str
    alias: str
    image: str
    deploy_dir: Path
    schema_dir: Path
    project_dir: Path | None
    predict: str | None
    memory_bytes: int
    cpus: float
    host: str
    port: int
    """0: the engine picks a free port."""
    since: str
    poll_s: float = 1.0
    challenger: str | None = None
    """Another alias (staging) whose model answers `canary` of the traffic and/or shadows it."""
    canary: float = 0.0
    shadow: bool = False
    traffic_dir: Path | None = None
    """The host folder of the traffic log (made by prepare_traffic_dir), None: no log."""
    segment_rows: int = 5_000
    segment_s: float = 60.0
    contract: str = "report"
    """`[serving] contract`: a request breaking the data contract is answered and reported, or refused."""


@dataclass(frozen=True)
class RunningServer:
    project: str
    alias: str
    container: str
    host: str
    port: int | None
    since: str
    status: str


def server_name(spec: ServerSpec) -> str:
    """`wb-serve-telco-churn-production-3f9a1c`: a name `docker ps` and `serve status` readers can
    place (project names are already valid container names: core/manifest.py NAME_RE)."""
    return f"wb-serve-{spec.project[:60]}-{spec.alias}-{secrets.token_hex(3)}"
def container_user() -> tuple[int, int]:
    """Who a serving container runs as: nobody when the workbench is root, else the user."""
    return NOBODY if os.getuid() == 0 else (os.getuid(), os.getgid())


def prepare_traffic_dir(folder: Path) -> Path:
    """The traffic folder of one server, made (or kept) a real folder owned by the container's
    user, mode 0700: the container writes it, no one else on the host reads it."""
    import stat

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                raise WorkbenchError(f"the traffic folder {folder} is not a folder (a symlink or a file): "
                                     "move it away and serve again") from None
        uid, gid = container_user()
        if os.getuid() == 0:
            os.chown(folder, uid, gid, follow_symlinks=False)
        os.chmod(folder, 0o700, follow_symlinks=False)
    except OSError as exc:
        raise WorkbenchError(f"cannot prepare the traffic folder {folder}: {exc.strerror or exc}") from None
    return folder


def start_server(client: docker.DockerClient, spec: ServerSpec, state_dir: Path) -> Container:
    user = "%d:%d" % container_user()
    mounts = [Mount(LIB, str(RUNTIME_DIR), type="bind", read_only=True),
              Mount(DEPLOY, str(spec.deploy_dir), type="bind", read_only=True),
              # the file alone: its folder also holds the traffic folders, which are not for every server
              Mount(f"{SCHEMA}/schema.json", str(spec.schema_dir / "schema.json"), type="bind", read_only=True)]
    command = ["python", f"{LIB}/wb_serve.py", "--deploy", DEPLOY, "--alias", spec.alias,
               "--port", str(CONTAINER_PORT), "--poll-s", str(spec.poll_s),
               "--schema", f"{SCHEMA}/schema.json", "--contract", spec.contract]
    if spec.predict and spec.project_dir is not None:
        mounts.append(Mount(PROJECT, str(spec.project_dir), type="bind", read_only=True))
        command += ["--project", PROJECT, "--predict", spec.predict]
    if spec.challenger:
        command += ["--challenger", spec.challenger, "--canary", repr(spec.canary)]
        command += ["--shadow"] if spec.shadow else []
    if spec.traffic_dir is not None:
        mounts.append(Mount(TRAFFIC, str(spec.traffic_dir), type="bind", read_only=False))
        command += ["--traffic", TRAFFIC, "--segment-rows", str(spec.segment_rows), "--segment-s", str(spec.segment_s)]
    try:
        with limits_named(spec.cpus, spec.memory_bytes):
            return client.containers.run(
                spec.image, command, name=server_name(spec), detach=True, working_dir="/tmp",
                environment={"PYTHONPATH": LIB, "HOME": "/tmp", "PYTHONUNBUFFERED": "1",
                             **thread_limits(spec.cpus)},
                mounts=mounts, ports={f"{CONTAINER_PORT}/tcp": (spec.host, spec.port or None)},
                mem_limit=spec.memory_bytes, memswap_limit=spec.memory_bytes,
                nano_cpus=int(spec.cpus * 1e9), pids_limit=256, user=user, read_only=True,
                tmpfs={"/tmp": "rw,nosuid,nodev,noexec"}, cap_drop=["ALL"],
                security_opt=["no-new-privileges"], init=True,
                labels={PROJECT_LABEL: spec.project, ALIAS_LABEL: spec.alias, SINCE_LABEL: spec.since,
                        ROLE_LABEL: SERVER_ROLE, **owner_labels(state_dir)},
            )
    except docker.errors.APIError as exc:
        explanation = getattr(exc, "explanation", None) or str(exc)
        if "port is already allocated" in explanation or "address already in use" in explanation:
            raise WorkbenchError(f"cannot serve {spec.project} ({spec.alias}) on {spec.host}:{spec.port}: "
                                 f"the port is taken; choose another with --port") from None
        raise WorkbenchError(f"cannot start the {spec.alias} server of {spec.project}: {explanation}") from None


def published_port(container: Container) -> tuple[str, int | None]:
    bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{CONTAINER_PORT}/tcp") or []
    for binding in bindings:
        if binding.get("HostPort"):
            return binding.get("HostIp") or "127.0.0.1", int(binding["HostPort"])
    return "", None


def servers(client: docker.DockerClient, state_dir: Path, project: str | None = None) -> list[RunningServer]:
    """This workspace's serving containers (any owner), optionally of one project."""
    filters = {"label": [f"{ROLE_LABEL}={SERVER_ROLE}", f"{WORKSPACE_LABEL}={workspace_id(state_dir)}"]}
    if project:
        filters["label"].append(f"{PROJECT_LABEL}={project}")
    found = []
    try:
        for container in client.containers.list(all=True, filters=filters, ignore_removed=True):
            host, port = published_port(container)
            labels = container.labels
            found.append(RunningServer(labels.get(PROJECT_LABEL, ""), labels.get(ALIAS_LABEL, ""),
                                       container.name, host, port, labels.get(SINCE_LABEL, ""), container.status))
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise WorkbenchError(f"cannot list the serving containers: {exc}") from None
    return sorted(found, key=lambda s: (s.project, s.alias))


def remove(client: docker.DockerClient, name: str) -> bool:
    """Stop a server (SIGTERM: it closes its traffic segments) and remove it."""
    try:
        container = client.containers.get(name)
        try:
            # renamed first, so the foreground `workbench serve` (which restarts a server of its
            # own that exited) sees it gone, not dead, while it shuts down
            container.rename(f"{name}-stopping")
        except docker.errors.APIError:
            pass
        try:
            container.stop(timeout=STOP_TIMEOUT_S)
        except docker.errors.APIError:
            pass  # not running: nothing to close
        container.remove(force=True)
        return True
    except docker.errors.NotFound:
        return False
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise WorkbenchError(f"cannot remove the serving container {name}: {exc}") from None


def logs_tail(client: docker.DockerClient, name: str, lines: int = 15) -> str:
    try:
        return client.containers.get(name).logs(tail=lines).decode("utf-8", "replace").strip()
    except (docker.errors.DockerException, requests.RequestException):
        return ""

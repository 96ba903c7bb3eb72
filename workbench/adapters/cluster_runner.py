"""Stages on a Dask cluster: `--runner cluster --scheduler tcp://host:8786`.

Each stage becomes one Dask task (cluster_task.run_remote_stage) that asks for the Dask
resources the manifest gives it (`cpus`, and `memory` when the cluster's workers declare a
`memory` resource), so the scheduler puts it on a worker with room and never oversubscribes
one. Folders travel as manifests of hashes; the worker says which objects its own cache lacks
and only those are sent (bytes through the scheduler, in a Dask queue: right for source files,
params and models of megabytes; a shared object storage is the path for gigabytes, see
docs/cluster.md). Outputs come back the same way: the worker sends the manifest, the client
asks for the hashes the workspace's object store lacks, and the task returns their bytes.

On the worker the stage runs in that machine's Docker engine through the DockerRunner
(cluster_task.py), so isolation is the same as on a laptop.

This side runs on the workbench's thread for the stage: it relays the worker's log lines to
`on_log` as they arrive, turns the run's cancel token into the task's cancel event (the worker
stops the stage) and then `future.cancel()`, follows the attempts (a worker that dies mid-stage:
Dask runs the task again elsewhere, at most `max_attempts` times in all), and turns a lost
scheduler into one failed stage that says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from workbench.adapters.cluster_cache import ObjectCache, folder_manifest
from workbench.core.errors import WorkbenchError
from workbench.core.manifest import EnvironmentSpec
from workbench.core.model import StageStatus
from workbench.core.ports import (CancelToken, DetailLine, LogSink, PreparedEnvironment, StageJob, StageOutcome,
                                  StatusLine)

SCHEDULER_VARIABLE = "WORKBENCH_SCHEDULER"
CONNECT_TIMEOUT_S = 10
WAIT_S = 0.1
"""How long the client blocks for a message from the task before it looks at the cancel token."""
CANCEL_GRACE_S = 5.0
"""How long a cancelled stage may take to report back before its task is dropped."""
MAX_ATTEMPTS = 3
"""A stage whose worker died is run again on another one, up to this many attempts in all."""
WORKERLESS_S = 60.0
"""How long a stage waits once no worker of the cluster could hold it (they all left) before it fails."""
SCHEDULER_LOST_S = 5.0
"""How long the scheduler may not answer before the stage is failed as lost."""


class SchedulerUnavailable(WorkbenchError):
    """The Dask scheduler could not be reached."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ClusterRunner:
    name = "cluster"

    def __init__(self, scheduler: str | None = None, mode: str = "warm", max_attempts: int = MAX_ATTEMPTS):
        self.address = scheduler or os.environ.get(SCHEDULER_VARIABLE, "")
        if not self.address:
            raise SchedulerUnavailable(
                f"--runner cluster needs the scheduler's address: --scheduler tcp://HOST:8786 or ${SCHEDULER_VARIABLE}")
        self.mode = mode
        """The workers' DockerRunner mode: "warm" (a warm worker per project) or "cold"."""
        self.max_attempts = max_attempts
        self.workerless_s = WORKERLESS_S
        self._client = None
        self._lock = threading.Lock()
        self._environments: dict[str, EnvironmentSpec] = {}
        """Project -> its manifest's environment, which each worker builds its image from."""
        self._images: dict[str, tuple[str, str]] = {}
        """Environment identity -> (worker, image id) of the first stage that reported one: a
        worker whose build differs is said to differ."""
        self._differs: set[tuple[str, str, str]] = set()
        self._hashes: dict[tuple[int, int, int, int], str] = {}
        """(device, inode, size, mtime) -> sha256 of the snapshot and output files already sent
        or described: they are hard links to read-only objects, so they are hashed once."""
        self.sent: list[tuple[str, str]] = []
        """(worker address, sha256) of every object this runner sent: what the tests count."""
        self.sent_bytes = 0
        """Bytes of snapshot and upstream objects sent to workers (benchmarks/bench_cluster.py)."""
        self.ran_on: dict[tuple[int, str], tuple[str, str]] = {}
        """(run id, stage) -> (worker address, host name) that ran it."""

    @property
    def client(self):
        with self._lock:
            if self._client is not None and self._client.status in ("closed", "closing"):
                self._client = None  # it lost its scheduler for good: connect anew (it may be back)
            if self._client is None:
                self._client = connect(self.address)
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def capacity(self) -> float:
        """The cpus the cluster's workers declare in all: how much of a run may run at once
        (services/pipeline.py sizes default jobs and the CPU budget by it, not the local CPUs)."""
        from workbench.adapters.cluster_info import total_cpus

        return self._asking(total_cpus)

    def summary(self):
        """Workers, cpus and workbench stages running (cluster_info.ClusterSummary): the TUI's status line."""
        from workbench.adapters.cluster_info import summarize

        return self._asking(summarize)

    def _asking(self, read):
        client = self.client
        try:
            return read(client, self.address)
        except SchedulerUnavailable:
            # A client that lost its scheduler closes itself for good: the next call connects
            # anew, so a scheduler that comes back is found again.
            with self._lock:
                if self._client is client and client.status in ("closed", "closing"):
                    self._client = None
            raise

    def prepare(self, project_dir: str, env: EnvironmentSpec, on_log: LogSink,
                project: str | None = None, cancel: CancelToken | None = None) -> PreparedEnvironment:
        """Each worker builds the environment image in its own engine (or finds it built), so the
        run's identity is what the image is built from: the base image named, the requirements'
        bytes and the Dockerfile. Each stage's lineage keeps the image id its worker used."""
        self.client  # noqa: B018 -- an unreachable scheduler is one clear error before any stage
        from workbench.adapters.docker_images import DOCKERFILE, INSTALL_REQUIREMENTS, read_requirements

        requirements = read_requirements(project_dir, env)
        digest = hashlib.sha256()
        for part in (env.base_image or "(the workers' default base image)", DOCKERFILE, INSTALL_REQUIREMENTS):
            digest.update(part.encode() + b"\0")
        digest.update(requirements or b"")
        self._environments[project or Path(project_dir).resolve().name] = env
        return PreparedEnvironment(f"cluster:{digest.hexdigest()[:16]}",
                                   f"built on each worker of {self.address} from "
                                   f"{env.base_image or 'its default base image'}"
                                   f"{' + ' + env.requirements if requirements is not None else ''}")

    def run_stage(self, job: StageJob, on_log: LogSink, cancel: CancelToken) -> StageOutcome:
        from distributed import Event, Queue

        from workbench.adapters.cluster_task import PROTOCOL, run_remote_stage

        started = _now()
        if cancel.cancelled:
            return StageOutcome(StageStatus.CANCELLED, None, cancel.reason, [], started, _now())
        env = self._environments.get(job.project)
        if env is None:
            raise WorkbenchError(f"the cluster runner was not prepared for {job.project}")
        client = self.client
        resources = self._resources(job)
        if isinstance(resources, str):
            return StageOutcome(StageStatus.FAILED, None, resources, [], started, _now())
        key = stage_key(job)
        project = folder_manifest(Path(job.project_dir), self._hashes)
        upstream = {name: folder_manifest(Path(path), self._hashes) for name, path in job.upstream_dirs.items()}
        sources = _sources(Path(job.project_dir), project)
        for name, path in job.upstream_dirs.items():
            sources.update(_sources(Path(path), upstream[name]))
        store = ObjectCache(_state_dir(job) / "objects")
        up = Queue(f"{key}-up", client=client)
        cancel_event = Event(f"{key}-cancel", client=client)
        request = {"protocol": PROTOCOL, "key": key, "job": job, "env": env, "mode": self.mode, "project": project,
                   "upstream": upstream}
        future = client.submit(run_remote_stage, request, key=key, pure=False, resources=resources)
        on_log(StatusLine(f"waiting for a cluster worker with {_describe(resources)}"))
        attempts: list[tuple[str, str]] = []
        """(attempt id, worker) in the order the workers took the stage."""
        cancelled_at: float | None = None
        unanswered_since: float | None = None
        workers_checked, workerless_since = time.monotonic(), None
        try:
            while True:
                try:
                    kind, payload = up.get(timeout=WAIT_S)
                    unanswered_since = None
                except OSError as exc:  # Dask's comm errors (CommClosedError too) are OSErrors
                    if isinstance(exc, TimeoutError):
                        kind, payload = "", None
                    else:
                        return self._lost(future, started, exc)
                    if not self._scheduler_answers():
                        unanswered_since = unanswered_since or time.monotonic()
                        if time.monotonic() - unanswered_since > SCHEDULER_LOST_S:
                            return self._lost(future, started)
                if kind == "need":
                    if attempts:  # the worker of the attempt before died mid-stage
                        on_log(StatusLine(f"cluster worker {attempts[-1][1]} was lost running {job.stage}; "
                                          f"attempt {len(attempts) + 1} of {self.max_attempts} on {payload['worker']}"))
                    attempts.append((payload["attempt"], payload["worker"]))
                    if len(attempts) > self.max_attempts:
                        future.cancel()
                        return self._gave_up(attempts, started)
                    self._send(key, payload, sources, client, on_log)
                elif kind == "log":
                    on_log(payload)
                elif kind == "outs":
                    Queue(f"{key}-{payload['attempt']}-want", client=client).put(
                        sorted(store.missing(set(payload["outputs"].values()))))
                elif kind == "end" or (not kind and future.done()):  # done without "end": it raised
                    break
                if not kind and time.monotonic() - workers_checked > 1.0:
                    workers_checked = time.monotonic()
                    if isinstance(self._resources(job), str):  # every worker that could hold it left
                        workerless_since = workerless_since or workers_checked
                        if workers_checked - workerless_since > self.workerless_s:
                            future.cancel()
                            return self._workerless(attempts, resources, started)
                    else:
                        workerless_since = None
                if cancel.cancelled and cancelled_at is None:
                    cancel_event.set()
                    cancelled_at = time.monotonic()
                if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_S:
                    future.cancel()
                    return StageOutcome(StageStatus.CANCELLED, None, cancel.reason, [], started, _now())
            result = future.result()
        except WorkbenchError:
            raise
        except Exception as exc:  # the worker died too often, the scheduler went away, the task raised
            future.cancel()
            if type(exc).__name__ == "KilledWorker":
                return self._gave_up(attempts, started, exc)
            if not self._scheduler_answers():
                return self._lost(future, started, exc)
            reason = f"the cluster could not run the stage: {exc}"
            if isinstance(exc, TypeError) and "run_remote_stage()" in str(exc):
                # A worker from before the request had a protocol field: its arguments differ.
                reason = (f"a cluster worker runs another workbench version (its stage task takes other "
                          f"arguments: {exc}); install the same workbench version on the workers as here")
            return StageOutcome(StageStatus.FAILED, None, reason, [], started, _now())
        return self._finish(job, result, store, on_log, cancel)

    def _send(self, key: str, need: dict, sources: dict[str, Path], client, on_log: LogSink) -> None:
        """Exactly the objects this attempt's worker lacks, on the attempt's own queue."""
        from distributed import Queue

        lacking = need["lacking"]
        sending = {sha: sources[sha].read_bytes() for sha in lacking}
        Queue(f"{key}-{need['attempt']}-objs", client=client).put(sending)
        size = sum(map(len, sending.values()))
        with self._lock:
            self.sent.extend((need["worker"], sha) for sha in lacking)
            self.sent_bytes += size
        on_log(DetailLine(f"sent {len(lacking)} of {len(sources)} objects ({size:,} bytes) to {need['worker']}"))

    def _scheduler_answers(self) -> bool:
        client = self._client
        return client is not None and client.status == "running"

    def _lost(self, future, started: datetime, exc: Exception | None = None) -> StageOutcome:
        with contextlib.suppress(Exception):
            future.cancel()
        why = f" ({type(exc).__name__})" if exc else ""
        reason = (f"the Dask scheduler at {self.address} was lost while the stage ran{why}; "
                  f"the stage's result could not come back")
        return StageOutcome(StageStatus.FAILED, None, reason, [], started, _now())

    def _workerless(self, attempts: list[tuple[str, str]], resources: dict[str, float],
                    started: datetime) -> StageOutcome:
        lost = f" (it ran on {', '.join(w for _a, w in attempts)}, lost mid-stage)" if attempts else ""
        reason = (f"no worker of the cluster at {self.address} with {_describe(resources)} is left{lost}; "
                  f"waited {self.workerless_s:g} s for one to join")
        return StageOutcome(StageStatus.FAILED, None, reason, [], started, _now())

    def _gave_up(self, attempts: list[tuple[str, str]], started: datetime,
                 exc: Exception | None = None) -> StageOutcome:
        workers = [worker for _attempt, worker in attempts]
        last = workers[-1] if workers else "?"
        reason = (f"cluster worker {last} died running the stage, after {len(workers)} attempt(s) on "
                  f"{', '.join(workers) or 'no worker that reported'}; gave up "
                  f"({'Dask: ' + str(exc).splitlines()[0] if exc else f'at most {self.max_attempts} attempts'})")
        return StageOutcome(StageStatus.FAILED, None, reason, [], started, _now())

    def _finish(self, job: StageJob, result: dict, store: ObjectCache, on_log: LogSink,
                cancel: CancelToken) -> StageOutcome:
        for sha, data in result["objects"].items():
            store.put(sha, data)
        output_dir = Path(job.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        for rel, sha in result["outputs"].items():
            (output_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(store.path(sha), output_dir / rel)
        worker, host, image_id = result["worker"], result["host"], result["image_id"]
        self.ran_on[(job.run_id, job.stage)] = (worker, host)
        on_log(DetailLine(f"{job.stage} {ran_on_line(worker, host)}, image {image_id[:19]}"))
        self._compare_image(job, worker, image_id, on_log)
        status = StageStatus(result["status"])
        # The worker knows only that it was cancelled; why (superseded by run N...) is ours.
        reason = cancel.reason if status is StageStatus.CANCELLED and cancel.cancelled else result["reason"]
        return StageOutcome(status, result["exit_code"], reason, result["log_tail"], result["started_at"],
                            result["finished_at"], worker=worker, host=host, image_id=image_id)

    def _compare_image(self, job: StageJob, worker: str, image_id: str, on_log: LogSink) -> None:
        """Workers build the environment each in its own engine: one whose image is another than
        the first worker's (another base image, another build) is said so, once per worker."""
        if not image_id:
            return
        identity = job.environment.image_id
        with self._lock:
            first = self._images.setdefault(identity, (worker, image_id))
            if first[1] == image_id or (identity, worker, image_id) in self._differs:
                return
            self._differs.add((identity, worker, image_id))
        on_log(f"warning: cluster worker {worker}'s environment image {image_id[:19]} differs from "
               f"{first[0]}'s {first[1][:19]} (built from another base image, or built separately): "
               f"stages on the two may not give the same results")

    def _resources(self, job: StageJob) -> dict[str, float] | str:
        """The Dask resources the stage asks for, or why no worker of the cluster could run it."""
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        declared = [w.get("resources", {}) for w in workers]
        resources = {"cpus": float(job.cpus)}
        if any("memory" in r for r in declared):
            resources["memory"] = float(job.memory_bytes)
        if job.gpus:
            resources["gpus"] = float(job.gpus)
        if not any(all(r.get(name, 0) >= need for name, need in resources.items()) for r in declared):
            return (f"no worker of the cluster at {self.address} has {_describe(resources)} "
                    f"(workers declare: {declared or 'none connected'}; start them with --resources \"cpus=N\")")
        return resources


def ran_on_line(worker: str, host: str) -> str:
    return f"[workbench] ran on cluster worker {worker} (host {host})"


def connect(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerUnavailable("--runner cluster needs Dask: pip install 'workbench[cluster]'") from None
    _reachable(address)
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnavailable(f"the Dask scheduler at {address} is unreachable: {exc}") from None


def _reachable(address: str) -> None:
    """A refused or unknown address says so at once: Dask's client would retry it for its whole
    timeout first."""
    host_port = address.split("://", 1)[-1]
    if address.split("://", 1)[0] not in ("tcp", host_port) or ":" not in host_port:
        return  # tls://, inproc:// ...: Dask checks those itself
    host, port = host_port.rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        raise SchedulerUnavailable(f"the Dask scheduler at {address} is unreachable: {exc}") from None


def _sources(folder: Path, manifest: dict[str, str]) -> dict[str, Path]:
    return {sha: folder / rel for rel, sha in manifest.items()}


def _state_dir(job: StageJob) -> Path:
    parents = Path(job.output_dir).parents  # <state>/runs/<run id>/<stage>
    return parents[2] if len(parents) > 2 else Path(job.output_dir).parent


def _describe(resources: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:g}" for name, value in resources.items())


@dataclass(frozen=True)
class WorkerStatus:
    """One worker of the cluster, as `workbench cluster status` shows it."""

    address: str
    name: str
    host: str
    threads: int
    memory_limit: int
    resources: dict[str, float]
    running: list[str]
    """The workbench stages it runs or holds (project/stage/run), from the task keys."""


def cluster_status(address: str) -> list[WorkerStatus]:
    client = connect(address)
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        processing = client.processing()
    finally:
        client.close()
    return [WorkerStatus(addr, str(info.get("name", addr)), info.get("host", ""), info.get("nthreads", 0),
                         info.get("memory_limit", 0), dict(info.get("resources", {})),
                         [_stage_of(key) for key in processing.get(addr, ())])
            for addr, info in sorted(workers.items())]


def stage_key(job: StageJob) -> str:
    """The Dask key of a stage's task: project, stage and run readable back by cluster_status."""
    return f"wb|{job.project}|{job.stage}|{job.run_id}|{uuid.uuid4().hex[:8]}"


def _stage_of(key) -> str:
    parts = str(key).split("|")
    if len(parts) == 5 and parts[0] == "wb":
        return f"{parts[1]}/{parts[2]} (run {parts[3]})"
    return str(key)  # another client's task on the same cluster

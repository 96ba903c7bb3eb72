"""Stages on a Dask cluster: `--runner cluster --scheduler tcp://host:8786`.

Each stage becomes one Dask task (cluster_task.run_remote_stage) that asks for the Dask
resources the manifest gives it (`cpus`, and `memory` when the cluster's workers declare a
`memory` resource), so the scheduler puts it on a worker with room and never oversubscribes
one. Folders travel as manifests of hashes; the worker says which objects its own cache lacks
and only those are sent (bytes through the scheduler, in a Dask queue: right for source files,
params and models of megabytes; a shared object storage is the path for gigabytes, see
docs/cluster.md). Outputs come back the same way: the worker sends the manifest, the client
asks for the hashes the workspace's object store lacks, and the task returns their bytes.

This side runs on the workbench's thread for the stage: it relays the worker's log lines to
`on_log` as they arrive, and turns the run's cancel token into the task's cancel event (the
worker stops the stage) and then `future.cancel()`.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from workbench.adapters.cluster_cache import ObjectCache, folder_manifest
from workbench.adapters.local_runner import LocalRunner
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


class SchedulerUnavailable(WorkbenchError):
    """The Dask scheduler could not be reached."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ClusterRunner:
    name = "cluster"

    def __init__(self, scheduler: str | None = None):
        self.address = scheduler or os.environ.get(SCHEDULER_VARIABLE, "")
        if not self.address:
            raise SchedulerUnavailable(
                f"--runner cluster needs the scheduler's address: --scheduler tcp://HOST:8786 or ${SCHEDULER_VARIABLE}")
        self._client = None
        self._lock = threading.Lock()
        self.sent: list[tuple[str, str]] = []
        """(worker address, sha256) of every object this runner sent: what the tests count."""
        self.sent_bytes = 0
        """Bytes of snapshot and upstream objects sent to workers (benchmarks/bench_cluster.py)."""
        self.ran_on: dict[tuple[int, str], tuple[str, str]] = {}
        """(run id, stage) -> (worker address, host name) that ran it."""

    @property
    def client(self):
        with self._lock:
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
        """The stages run with the workers' Python (the local runner's code on the worker), so
        the identity is the client's Python and requirements, as for --runner local; workers
        are expected to share the client's environment until stages run in Docker there."""
        self.client  # noqa: B018 -- an unreachable scheduler is one clear error before any stage
        prepared = LocalRunner().prepare(project_dir, env, on_log, project, cancel)
        return PreparedEnvironment(prepared.image_id, f"cluster {self.address}: {prepared.image_tag}")

    def run_stage(self, job: StageJob, on_log: LogSink, cancel: CancelToken) -> StageOutcome:
        from distributed import Event, Queue

        from workbench.adapters.cluster_task import run_remote_stage

        started = _now()
        if cancel.cancelled:
            return StageOutcome(StageStatus.CANCELLED, None, cancel.reason, [], started, _now())
        client = self.client
        resources = self._resources(job)
        if isinstance(resources, str):
            return StageOutcome(StageStatus.FAILED, None, resources, [], started, _now())
        key = stage_key(job)
        project = folder_manifest(Path(job.project_dir))
        upstream = {name: folder_manifest(Path(path)) for name, path in job.upstream_dirs.items()}
        sources = _sources(Path(job.project_dir), project)
        for name, path in job.upstream_dirs.items():
            sources.update(_sources(Path(path), upstream[name]))
        store = ObjectCache(_state_dir(job) / "objects")
        up = Queue(f"{key}-up", client=client)
        objs, want = Queue(f"{key}-objs", client=client), Queue(f"{key}-want", client=client)
        cancel_event = Event(f"{key}-cancel", client=client)
        future = client.submit(run_remote_stage, key, job, project, upstream, key=key, pure=False,
                               resources=resources)
        on_log(StatusLine(f"waiting for a cluster worker with {_describe(resources)}"))
        cancelled_at: float | None = None
        try:
            while True:
                try:
                    kind, payload = up.get(timeout=WAIT_S)
                except TimeoutError:
                    kind, payload = "", None
                if kind == "need":
                    lacking = payload["lacking"]
                    sending = {sha: sources[sha].read_bytes() for sha in lacking}
                    objs.put(sending)
                    size = sum(map(len, sending.values()))
                    with self._lock:
                        self.sent.extend((payload["worker"], sha) for sha in lacking)
                        self.sent_bytes += size
                    on_log(DetailLine(f"sent {len(lacking)} of {len(sources)} objects ({size:,} bytes) "
                                      f"to {payload['worker']}"))
                elif kind == "log":
                    on_log(payload)
                elif kind == "outs":
                    want.put(sorted(store.missing(set(payload.values()))))
                elif kind == "end" or (not kind and future.done()):  # done without "end": it raised
                    break
                if cancel.cancelled and cancelled_at is None:
                    cancel_event.set()
                    cancelled_at = time.monotonic()
                if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_S:
                    future.cancel()
                    return StageOutcome(StageStatus.CANCELLED, None, cancel.reason, [], started, _now())
            result = future.result()
        except WorkbenchError:
            raise
        except Exception as exc:  # the worker died, the scheduler went away, the task raised
            future.cancel()
            return StageOutcome(StageStatus.FAILED, None, f"the cluster could not run the stage: {exc}", [],
                                started, _now())
        return self._finish(job, result, store, on_log, cancel)

    def _finish(self, job: StageJob, result: dict, store: ObjectCache, on_log: LogSink,
                cancel: CancelToken) -> StageOutcome:
        for sha, data in result["objects"].items():
            store.put(sha, data)
        output_dir = Path(job.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        for rel, sha in result["outputs"].items():
            (output_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(store.path(sha), output_dir / rel)
        self.ran_on[(job.run_id, job.stage)] = (result["worker"], result["host"])
        ran_on = ran_on_line(result["worker"], result["host"])
        on_log(DetailLine(f"{job.stage} {ran_on}"))
        status = StageStatus(result["status"])
        # The worker knows only that it was cancelled; why (superseded by run N...) is ours.
        reason = cancel.reason if status is StageStatus.CANCELLED and cancel.cancelled else result["reason"]
        # The tail is what the lineage keeps of a stage's output: until stage rows have worker and
        # host columns (docs/cluster.md), the first line of the kept tail says where it ran.
        return StageOutcome(status, result["exit_code"], reason, [ran_on, *result["log_tail"]], result["started_at"],
                            result["finished_at"])

    def _resources(self, job: StageJob) -> dict[str, float] | str:
        """The Dask resources the stage asks for, or why no worker of the cluster could run it."""
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        declared = [w.get("resources", {}) for w in workers]
        resources = {"cpus": float(job.cpus)}
        if any("memory" in r for r in declared):
            resources["memory"] = float(job.memory_bytes)
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
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
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

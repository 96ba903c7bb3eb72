"""What runs on a Dask worker for one stage (the other half of cluster_runner.py).

The stage runs in the worker machine's own Docker engine through the same DockerRunner as on a
laptop (its warm worker, or a fresh container in cold mode), so a stage's isolation is the same
everywhere: no network unless the manifest says so, a read-only snapshot, not root, the
manifest's limits. The worker builds the project's environment image in its engine when it lacks
it (from the snapshot's requirements, like `workbench run` does) and reports the image id it
used, which the lineage keeps.

The conversation with the client goes through named Dask queues (through the scheduler), so the
task needs nothing but the scheduler to reach the client. Each attempt of a stage (Dask runs the
task again on another worker when one dies mid-stage) has an attempt id, and the queues the
client answers on are the attempt's own, so a dead attempt's unread answer never reaches the next:
  <key>-up            : worker -> client, (kind, payload) messages in order:
                        ("need", {attempt, worker, host, lacking}) the hashes its cache lacks,
                        ("log", line) the stage's lines as it prints them,
                        ("outs", {attempt, outputs}) the outputs' manifest, ("end", attempt)
  <key>-<attempt>-objs : client -> worker, {sha: bytes} for exactly the lacking hashes
  <key>-<attempt>-want : client -> worker, the output hashes the workspace lacks (sent in the result)
and a Dask Event <key>-cancel that the client sets to stop the stage. One upward queue that the
client blocks on (rather than one per kind, polled) keeps the round trips per stage few.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from workbench.adapters.cluster_cache import CACHE_VARIABLE, Manifest, ObjectCache, cache_limit_bytes, folder_manifest
from workbench.core.errors import WorkbenchError
from workbench.core.manifest import EnvironmentSpec
from workbench.core.model import StageStatus
from workbench.core.ports import CancelToken, StageJob, StageOutcome

PROTOCOL = 2
"""The version of the conversation below. The task runs the worker's own installed workbench,
so a worker on another version says so rather than fail on a changed signature."""
HANDSHAKE_TIMEOUT_S = 120
CANCEL_POLL_S = 0.1

_runners: dict[tuple[str, str], object] = {}
"""One DockerRunner per (worker state folder, mode) in this worker process: its warm workers
outlive a stage, as they do in a workbench session."""
_runners_lock = threading.Lock()
_prepared: dict[tuple, object] = {}
"""(state, mode, run id, project, environment) -> the PreparedEnvironment: a worker prepares a
run's environment once, as `workbench run` does on a laptop, not once per stage (the engine
calls that find the image cost tens of milliseconds a stage)."""


def worker_state() -> Path:
    """The worker's own folder: its object cache, the stages' folders, its warm workers' control
    folders. One per worker process (two workers sharing one would remove each other's containers
    as orphans when they start)."""
    from distributed import get_worker

    root = os.environ.get(CACHE_VARIABLE) or os.path.join(get_worker().local_directory, "workbench-cache")
    return Path(root).resolve()


def worker_cache() -> ObjectCache:
    return ObjectCache(worker_state() / "objects")


def docker_runner(state: Path, mode: str):
    """This worker's DockerRunner (created on its first stage: containers an earlier, killed
    worker process left with this state folder are removed then)."""
    from workbench.adapters.docker_runner import DockerRunner

    with _runners_lock:
        runner = _runners.get((str(state), mode))
        if runner is None:
            runner = DockerRunner(mode=mode, state_dir=state)
            runner.cleanup_orphans(state)
            _runners[(str(state), mode)] = runner
        return runner


def run_remote_stage(request: dict) -> dict:
    """Fetch what the cache lacks, run the stage in this machine's Docker engine, return its
    outcome and the outputs the client asked for. `request`: protocol, key, job, env, mode,
    project and upstream manifests (one dict, so versions can be told apart)."""
    from distributed import get_worker

    worker, host = get_worker().address, socket.gethostname()
    if request.get("protocol") != PROTOCOL:
        raise RuntimeError(f"cluster worker {worker} (host {host}) runs a workbench that speaks stage protocol "
                           f"{PROTOCOL}, the client {request.get('protocol')}: install the same workbench "
                           f"version on the workers as on the client")
    return _run(request["key"], request["job"], request["env"], request["mode"], request["project"],
                request["upstream"], worker, host)


def _run(key: str, job: StageJob, env: EnvironmentSpec, mode: str, project: Manifest, upstream: dict[str, Manifest],
         worker: str, host: str) -> dict:
    from distributed import Event, Queue

    try:
        cache_limit = cache_limit_bytes()
    except ValueError as exc:  # before the stage runs, naming the worker
        raise ValueError(f"cluster worker {worker} (host {host}): {exc}") from None
    attempt = uuid.uuid4().hex[:8]
    state = worker_state()
    cache = ObjectCache(state / "objects")
    wanted = set(project.values()).union(*(set(m.values()) for m in upstream.values()))
    lacking = sorted(cache.missing(wanted))
    up = Queue(f"{key}-up")
    up.put(("need", {"attempt": attempt, "worker": worker, "host": host, "lacking": lacking}))
    if lacking:
        for sha, data in Queue(f"{key}-{attempt}-objs").get(timeout=HANDSHAKE_TIMEOUT_S).items():
            cache.put(sha, data)

    # Folders where the Docker runner's warm workers accept them: <state>/snapshots and
    # <state>/runs/<x>/<stage> (warm_worker.WorkerPool.can_serve), named per attempt.
    folder = f"{job.project}-{job.run_id}-{job.stage}-{attempt}"
    snapshot, runs = state / "snapshots" / folder, state / "runs" / folder
    cancel = CancelToken()
    finished = threading.Event()
    try:
        cache.materialize(project, snapshot)
        upstream_dirs = {}
        for name, manifest in upstream.items():
            cache.materialize(manifest, runs / "upstream" / name)
            upstream_dirs[name] = str(runs / "upstream" / name)
        output_dir = runs / job.stage
        output_dir.mkdir(parents=True)

        def on_log(line: str) -> None:
            try:
                up.put(("log", line))
            except Exception:  # the scheduler is gone: nobody will take this stage's result
                cancel.cancel("the Dask scheduler was lost")

        threading.Thread(target=_follow_cancel, args=(Event(f"{key}-cancel"), cancel, finished),
                         daemon=True).start()
        outcome, image_id = _run_in_docker(job, env, mode, state, snapshot, output_dir, upstream_dirs, on_log,
                                           cancel, worker, host)
        finished.set()
        outputs = {rel: cache.put_file(output_dir / rel) for rel in folder_manifest(output_dir)}
        up.put(("outs", {"attempt": attempt, "outputs": outputs}))
        send = set(Queue(f"{key}-{attempt}-want").get(timeout=HANDSHAKE_TIMEOUT_S))
    finally:
        finished.set()
        shutil.rmtree(snapshot, ignore_errors=True)
        shutil.rmtree(runs, ignore_errors=True)
    up.put(("end", attempt))
    result_objects = {sha: cache.read(sha) for sha in send}
    cache.trim(cache_limit)
    return {
        "status": str(outcome.status), "exit_code": outcome.exit_code, "reason": outcome.reason,
        "log_tail": outcome.log_tail, "started_at": outcome.started_at, "finished_at": outcome.finished_at,
        "outputs": outputs, "objects": result_objects,
        "worker": worker, "host": host, "image_id": image_id, "attempt": attempt, "received": lacking,
    }


def _run_in_docker(job: StageJob, env: EnvironmentSpec, mode: str, state: Path, snapshot: Path, output_dir: Path,
                   upstream_dirs: dict[str, str], on_log, cancel: CancelToken, worker: str,
                   host: str) -> tuple[StageOutcome, str]:
    """The stage's outcome and the image id it ran in; an engine or image this worker cannot
    provide is a failed stage whose reason names the worker."""
    started = datetime.now(timezone.utc)
    try:
        runner = docker_runner(state, mode)
        key = (str(state), mode, job.run_id, job.project, env, job.environment.image_id)
        prepared = _prepared.get(key)
        if prepared is None:
            prepared = runner.prepare(str(snapshot), env, on_log, project=job.project, cancel=cancel)
            with _runners_lock:
                if len(_prepared) > 256:  # runs long gone
                    _prepared.clear()
                _prepared[key] = prepared
    except WorkbenchError as exc:
        reason = f"cluster worker {worker} (host {host}) cannot run the stage in Docker: {exc}"
        return StageOutcome(StageStatus.FAILED, None, reason, [], started, datetime.now(timezone.utc)), ""
    local = replace(job, project_dir=str(snapshot), output_dir=str(output_dir), upstream_dirs=upstream_dirs,
                    environment=prepared)
    return runner.run_stage(local, on_log, cancel), prepared.image_id


def _follow_cancel(event, cancel: CancelToken, finished: threading.Event) -> None:
    """The client's cancel reaches the stage's own token within CANCEL_POLL_S; a scheduler that
    is gone stops the stage too (its result could reach no one)."""
    failures = 0
    while not finished.is_set():
        try:
            if event.wait(timeout=CANCEL_POLL_S):
                cancel.cancel("cancelled from the client")
                return
            failures = 0
        except Exception:
            failures += 1
            if failures >= 20:  # about two seconds of a scheduler that does not answer
                cancel.cancel("the Dask scheduler was lost")
                return
            if finished.wait(CANCEL_POLL_S):
                return

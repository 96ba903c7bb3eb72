"""What runs on a Dask worker for one stage (the other half of cluster_runner.py).

The conversation with the client goes through named Dask queues (through the scheduler), one
set per stage attempt, so the task needs nothing but the scheduler to reach the client:
  <key>-up   : worker -> client, (kind, payload) messages in order, which the client waits on:
               ("need", {"worker", "lacking"}) the hashes its cache lacks,
               ("log", line) the stage's lines as it prints them,
               ("outs", manifest) the outputs' manifest, ("end", None) the result is coming
  <key>-objs : client -> worker, {sha: bytes} for exactly the lacking hashes
  <key>-want : client -> worker, the output hashes the workspace lacks (sent in the result)
and a Dask Event <key>-cancel that the client sets to stop the stage. One upward queue that the
client blocks on (rather than one per kind, polled) is what keeps the round trips per stage few.

The stage itself runs through the local runner's code in a folder built from the worker's cache
(the Docker runner is the next step: docs/cluster.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from dataclasses import replace
from pathlib import Path

from workbench.adapters.cluster_cache import CACHE_VARIABLE, Manifest, ObjectCache, folder_manifest
from workbench.core.ports import CancelToken, StageJob

HANDSHAKE_TIMEOUT_S = 120
CANCEL_POLL_S = 0.1


def worker_cache() -> ObjectCache:
    from distributed import get_worker

    root = os.environ.get(CACHE_VARIABLE) or os.path.join(get_worker().local_directory, "workbench-cache")
    return ObjectCache(Path(root) / "objects")


def run_remote_stage(key: str, job: StageJob, project: Manifest, upstream: dict[str, Manifest]) -> dict:
    """Fetch what the cache lacks, run the stage, return its outcome and the outputs asked for."""
    from distributed import Event, Queue, get_worker
    from workbench.adapters.local_runner import LocalRunner

    cache = worker_cache()
    wanted = set(project.values()).union(*(set(m.values()) for m in upstream.values()))
    lacking = sorted(cache.missing(wanted))
    up = Queue(f"{key}-up")
    up.put(("need", {"worker": get_worker().address, "lacking": lacking}))
    if lacking:
        for sha, data in Queue(f"{key}-objs").get(timeout=HANDSHAKE_TIMEOUT_S).items():
            cache.put(sha, data)

    work = cache.root.parent / "stages" / key
    shutil.rmtree(work, ignore_errors=True)
    cache.materialize(project, work / "project")
    upstream_dirs = {}
    for name, manifest in upstream.items():
        cache.materialize(manifest, work / "upstream" / name)
        upstream_dirs[name] = str(work / "upstream" / name)
    output_dir = work / "out"
    output_dir.mkdir(parents=True)
    local = replace(job, project_dir=str(work / "project"), output_dir=str(output_dir), upstream_dirs=upstream_dirs)

    cancel = CancelToken()
    finished = threading.Event()
    threading.Thread(target=_follow_cancel, args=(Event(f"{key}-cancel"), cancel, finished), daemon=True).start()
    try:
        outcome = LocalRunner().run_stage(local, lambda line: up.put(("log", line)), cancel)
    finally:
        finished.set()

    outputs = {rel: cache.put_file(output_dir / rel) for rel in folder_manifest(output_dir)}
    up.put(("outs", outputs))
    send = set(Queue(f"{key}-want").get(timeout=HANDSHAKE_TIMEOUT_S))
    shutil.rmtree(work, ignore_errors=True)
    up.put(("end", None))
    return {
        "status": str(outcome.status), "exit_code": outcome.exit_code, "reason": outcome.reason,
        "log_tail": outcome.log_tail, "started_at": outcome.started_at, "finished_at": outcome.finished_at,
        "outputs": outputs, "objects": {sha: cache.read(sha) for sha in send},
        "worker": get_worker().address, "host": socket.gethostname(), "received": lacking,
    }


def _follow_cancel(event, cancel: CancelToken, finished: threading.Event) -> None:
    """The client's cancel reaches the stage's own token within CANCEL_POLL_S."""
    while not finished.is_set():
        try:
            if event.wait(timeout=CANCEL_POLL_S):
                cancel.cancel("cancelled from the client")
                return
        except Exception:  # the scheduler is gone: the stage's own timeout still applies
            if finished.wait(CANCEL_POLL_S):
                return

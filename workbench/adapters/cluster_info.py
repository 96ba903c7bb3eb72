"""What a Dask cluster holds, read through a connected client: the cpus its workers declare
(what the stages of a run may use at once) and the workbench stages it runs now.

The pipeline sizes a run's default jobs and the session's CPU budget by `total_cpus` when
stages run on the cluster (the cluster's resource accounting, not the client machine's core
count, is what keeps workers from being oversubscribed); the TUI's status line shows a
`ClusterSummary` every few seconds. A scheduler that went away is one SchedulerUnavailable.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.adapters.cluster_runner import SchedulerUnavailable

STAGE_KEY_PREFIX = "wb|"
"""cluster_runner.stage_key: `wb|project|stage|run|nonce`."""


@dataclass(frozen=True)
class ClusterSummary:
    address: str
    workers: int
    cpus: float
    """The `cpus` resources its workers declare, in all."""
    stages_running: int
    """Workbench stages (of any workspace) its workers run or hold now."""


def total_cpus(client, address: str) -> float:
    return sum((_cpus(info) for info in _workers(client, address).values()), 0.0)


def summarize(client, address: str) -> ClusterSummary:
    workers = _workers(client, address)
    try:
        processing = client.processing()
    except Exception as exc:  # noqa: BLE001 -- distributed raises comm errors of many kinds
        raise _lost(address, exc) from None
    running = sum(1 for keys in processing.values() for key in keys if str(key).startswith(STAGE_KEY_PREFIX))
    return ClusterSummary(address, len(workers), sum((_cpus(info) for info in workers.values()), 0.0), running)


def _workers(client, address: str) -> dict:
    try:
        info = client.scheduler_info(n_workers=-1)
    except Exception as exc:  # noqa: BLE001 -- distributed raises comm errors of many kinds
        raise _lost(address, exc) from None
    # A client whose scheduler went away gives up reconnecting after its timeout, closes, and
    # answers with an empty info from then on.
    if client.status not in ("running", "connecting") or "workers" not in info:
        raise _lost(address, f"the connection was lost (client {client.status})")
    return info["workers"]


def _cpus(info: dict) -> float:
    return float(info.get("resources", {}).get("cpus", 0))


def _lost(address: str, exc: Exception) -> SchedulerUnavailable:
    return SchedulerUnavailable(f"the Dask scheduler at {address} is unreachable: {exc or type(exc).__name__}")

"""The cluster in the main screen's status line, when stages run on one (`--runner cluster`, or
workspace.toml's `[cluster] runner`): its address, workers, cpus and the workbench stages
running there, read every few seconds on a worker thread.

Connecting to a scheduler that is down takes the connect timeout (10 s); one read at a time is
in flight, and the status line says `unreachable` meanwhile rather than a notification every
few seconds. The UI thread never waits on the scheduler.
"""

from __future__ import annotations

import logging

from rich.text import Text

from workbench.core.errors import WorkbenchError
from workbench.services.cluster import cluster_summary

log = logging.getLogger(__name__)
CLUSTER_EVERY_S = 3.0


def read_cluster(session) -> tuple[str, object, str | None]:
    """(address, ClusterSummary or None, why it could not be read or None); never raises: it
    runs every few seconds, and a down scheduler is a state to show, not an error to pop up."""
    address = "…"
    try:
        address = session.scheduler or "…"
        return address, cluster_summary(session), None
    except WorkbenchError as exc:
        return address, None, str(exc)
    except Exception as exc:  # noqa: BLE001 -- a bug must not stop the polling
        log.exception("reading the cluster failed")
        return address, None, f"internal error: {exc!r}"


def cluster_facts(address: str, summary, problem: str | None) -> Text:
    """What follows `runner cluster` in the status line: ` 10.0.0.5:8786 · 2 workers · 4 cpus ·
    1 stage running`, or ` 10.0.0.5:8786 unreachable`. tcp:// is Dask's default scheme, left out
    for room (the line is one row); another scheme (tls://) is shown."""
    text = Text(f" {address.removeprefix('tcp://')}")
    if problem is not None:
        text.append(" unreachable" if "unreachable" in problem else " ✗", "bold red")
        return text
    if summary is None:
        return text
    running = summary.stages_running
    text.append(f" · {summary.workers} worker{'s' if summary.workers != 1 else ''} · {summary.cpus:g} cpus · "
                f"{running} stage{'s' if running != 1 else ''} running")
    return text


class ClusterStatus:
    """Mixin for MainScreen (which provides `session`, `runner_name`, `_in_thread`, `_status`)."""

    cluster_text: Text | None = None
    """What the status line says of the cluster; None when stages do not run on one."""
    cluster_problem: str | None = None
    """Why the last read failed (the whole message), or None."""
    _cluster_reading = False

    def _read_cluster(self) -> None:
        if self.runner_name != "cluster" or self._cluster_reading:
            return
        self._cluster_reading = True
        self._in_thread("cluster", None, read_cluster, self.session, group="cluster")

    def _done_cluster(self, payload, _key) -> None:
        self._cluster_reading = False
        address, summary, problem = payload
        self.cluster_problem = problem
        self.cluster_text = cluster_facts(address, summary, problem)
        self._status()

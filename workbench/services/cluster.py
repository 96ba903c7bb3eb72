"""The Dask cluster as the front ends show it: `workbench cluster status` and the TUI's status
line. The scheduler is the session's (--scheduler, else $WORKBENCH_SCHEDULER, else
workspace.toml), resolved in one place (WorkbenchSession.scheduler_choice).
"""

from __future__ import annotations

from workbench.core.errors import WorkbenchError
from workbench.core.workspace_config import SchedulerChoice, no_scheduler_problem


class ClusterUnreachable(WorkbenchError):
    """The scheduler did not answer: the cluster's state is unknown, which `cluster status`
    reports as a failure (exit 1), not as bad input."""

    exit_code = 1


def cluster_status(session) -> tuple[SchedulerChoice, list]:
    """The scheduler asked and its workers (cluster_runner.WorkerStatus, by address)."""
    from workbench.adapters.cluster_runner import SchedulerUnavailable, cluster_status as read_status

    choice = session.scheduler_choice
    if choice is None:
        raise WorkbenchError(no_scheduler_problem(session.workspace.config.path))
    try:
        return choice, read_status(choice.address)
    except SchedulerUnavailable as exc:
        raise ClusterUnreachable(f"{exc} (the address is from {choice.source})") from None


def cluster_summary(session):
    """Workers, cpus and workbench stages running on the cluster the session's stages run on
    (cluster_info.ClusterSummary), or None when they do not run on a cluster. Blocks while it
    connects (seconds when the scheduler is down): call it from a worker thread. Raises
    WorkbenchError when the scheduler cannot be reached."""
    if session.runner_choice != "cluster":
        return None
    summary = getattr(session.runner, "summary", None)
    return summary() if summary is not None else None

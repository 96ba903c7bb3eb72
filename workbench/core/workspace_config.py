"""The workspace's own settings: `workspace.toml` at the workspace root (beside the projects).

A project's manifest says how its stages run; this file says what is true of the whole
workspace, such as the team's Dask cluster:

    [cluster]
    scheduler = "tcp://sched.example:8786"   # the Dask scheduler --runner cluster uses
    runner = "cluster"                       # optional: the runner when --runner is not given

Parsed here, purely; the file is read by workbench.adapters.workspace_config_file. Tables this
version does not know are ignored (a later `[notify]` may live in the same file), but a key a
known table does not know is an error, since it is most likely a typo that would otherwise be
silently without effect.

Where the scheduler comes from (resolve_scheduler): `--scheduler` beats $WORKBENCH_SCHEDULER,
which beats the file, so a one-off command can point elsewhere without editing it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field

from workbench.core.errors import ManifestError, WorkbenchError
from workbench.core.manifest_reader import TableReader

WORKSPACE_CONFIG_NAME = "workspace.toml"
SCHEDULER_VARIABLE = "WORKBENCH_SCHEDULER"
RUNNERS = ("auto", "docker", "local", "cluster")
SCHEDULER_RE = re.compile(r"^((tcp|tls|ws|wss|ucx)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:\d{1,5})?/?$")


class WorkspaceConfigError(ManifestError):
    """`workspace.toml` is unreadable or invalid: names the file, the key and the problem."""


@dataclass(frozen=True)
class ClusterConfig:
    scheduler: str | None = None
    """The Dask scheduler's address (tcp://HOST:PORT) that `--runner cluster` and
    `workbench cluster status` use when neither --scheduler nor $WORKBENCH_SCHEDULER says."""
    runner: str | None = None
    """The runner of every command that runs stages when --runner is not given (`cluster`
    makes the cluster the workspace's default); None: auto (Docker when reachable, else local)."""


@dataclass(frozen=True)
class WorkspaceConfig:
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    path: str = ""
    """The file it was read from ("" when the workspace has none)."""


@dataclass(frozen=True)
class SchedulerChoice:
    address: str
    source: str
    """Where the address was given: `--scheduler`, `$WORKBENCH_SCHEDULER` or the file's path."""


def scheduler_problem(address: str) -> str | None:
    """Why `address` cannot be a Dask scheduler's address, or None."""
    if not SCHEDULER_RE.match(address.strip()):
        return f"{address!r} is not a Dask scheduler address (expected tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786)"
    port = address.rstrip("/").rsplit(":", 1)[-1]
    if port.isdigit() and not 0 < int(port) < 65536:
        return f"{address!r}: port {port} is not between 1 and 65535"
    return None


def workspace_tables(text: str, source: str) -> dict:
    """workspace.toml's tables, for each section's own parser (`[cluster]` here, `[notify]` in
    core/notify_config.py); a file that is not TOML is one error naming it."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkspaceConfigError(source, None, f"is not valid TOML: {exc}") from None
    except RecursionError:
        raise WorkspaceConfigError(source, None, "cannot be read: tables nested too deeply") from None


def parse_workspace_config(text: str, source: str) -> WorkspaceConfig:
    """The settings in `text` (the content of `source`, named in every error)."""
    data = workspace_tables(text, source)
    cluster = data.get("cluster", {})
    if not isinstance(cluster, dict):
        raise WorkspaceConfigError(source, "cluster", "must be a table ([cluster]), "
                                                      f"got {type(cluster).__name__}")
    reader = TableReader(source, cluster, "cluster")
    try:
        scheduler = reader.text("scheduler")
        if scheduler is not None and (problem := scheduler_problem(scheduler)):
            raise reader.fail("scheduler", problem)
        runner = reader.text("runner")
        if runner is not None and runner not in RUNNERS:
            raise reader.fail("runner", f"must be one of {', '.join(RUNNERS)}, got {runner!r}")
        reader.reject_unknown()
    except WorkspaceConfigError:
        raise
    except ManifestError as exc:  # the reader's own error, as this file's
        raise WorkspaceConfigError(exc.path, exc.key, exc.problem) from None
    return WorkspaceConfig(ClusterConfig(scheduler.strip() if scheduler else None, runner), source)


def resolve_scheduler(flag: str | None, variable: str | None, config: WorkspaceConfig) -> SchedulerChoice | None:
    """The scheduler to use: `--scheduler`, else $WORKBENCH_SCHEDULER, else the file; None if
    none says. A bad address given on the command line or in the variable is refused here,
    naming where it came from (the file's was checked when it was read)."""
    for address, source in ((flag, "--scheduler"), (variable, f"${SCHEDULER_VARIABLE}")):
        if address and address.strip():
            problem = scheduler_problem(address)
            if problem:
                raise WorkbenchError(f"{source}: {problem}")
            return SchedulerChoice(address.strip(), source)
    if config.cluster.scheduler:
        return SchedulerChoice(config.cluster.scheduler, config.path)
    return None


def no_scheduler_problem(config_path: str) -> str:
    """What to say when a cluster is wanted and no source names its scheduler."""
    return (f"which Dask cluster? give --scheduler tcp://HOST:8786, set ${SCHEDULER_VARIABLE}, or write "
            f"[cluster] scheduler = \"tcp://HOST:8786\" in {config_path}")

"""`workbench doctor` and `workbench env bootstrap`: is this machine ready, and make it so."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workbench import __version__
from workbench.core.errors import WorkbenchError
from workbench.services.workspace import Workspace

MIN_FREE_BYTES = 1024**3


@dataclass(frozen=True)
class Check:
    name: str
    level: str
    """ok, warn (works, but degraded) or fail (something the user must fix)."""
    detail: str


def run_checks(workspace_root: Path) -> list[Check]:
    checks = [Check("workbench", "ok", f"{__version__} on Python {sys.version.split()[0]} ({sys.executable})")]
    checks += _workspace_checks(workspace_root)
    checks += _docker_checks(workspace_root)
    checks += _cluster_and_alert_checks(workspace_root)
    return checks


def _workspace_checks(root: Path) -> list[Check]:
    try:
        workspace = Workspace(root)
    except WorkbenchError as exc:
        return [Check("workspace", "fail", str(exc))]
    checks = []
    try:
        state = workspace.ensure_state_dir()
        with tempfile.NamedTemporaryFile(dir=state):
            pass
        checks.append(Check("workspace", "ok", f"{workspace.root} (state in {state.name}/, writable)"))
    except (WorkbenchError, OSError) as exc:
        return [Check("workspace", "fail", f"{workspace.root} is not writable: {exc}")]
    free = shutil.disk_usage(state).free
    level = "ok" if free >= MIN_FREE_BYTES else "warn"
    checks.append(Check("disk", level, f"{free / 1024**3:.1f} GiB free in {state}"))
    refs = workspace.projects()
    bad = [r for r in refs if r.error]
    if not refs:
        checks.append(Check("projects", "warn", "no project (a folder with a workbench.toml) found"))
    else:
        names = ", ".join(r.name for r in refs if not r.error) or "none valid"
        checks.append(Check("projects", "fail" if bad else "ok", f"{len(refs)} found: {names}"))
        checks += [Check("manifest", "fail", str(r.error)) for r in bad]
    try:
        from workbench.adapters.duckdb_store import DuckDBLineageStore

        store = DuckDBLineageStore(workspace.lineage_path)
        checks.append(Check("lineage", "ok", f"{workspace.lineage_path} ({store.count_runs()} runs)"))
    except WorkbenchError as exc:
        checks.append(Check("lineage", "fail", str(exc)))
        return checks
    checks.append(_size_check(workspace, store))
    return checks


def _size_check(workspace: Workspace, store) -> Check:
    """The state folder's size and what `workbench gc` would free: stats and the lineage
    store's facts only, nothing is read or hashed."""
    from workbench.core.gc_plan import human_bytes
    from workbench.services.gc import GcService

    try:
        sizes, report = GcService(workspace, store).reclaimable()
    except WorkbenchError as exc:
        return Check("size", "warn", f"what `workbench gc` would free is unknown: {exc}")
    parts = ", ".join(f"{name} {human_bytes(sizes[name])}" for name in ("objects", "snapshots", "runs", "lineage", "other")
                      if sizes[name])
    detail = (f"{workspace.state_dir.name}/ holds {human_bytes(sizes['total'])}" + (f" ({parts})" if parts else "") +
              f"; `workbench gc` would free {human_bytes(report.bytes)} ({report.run_count} of "
              f"{report.run_count + len(report.kept)} runs, {len(report.snapshots)} snapshots, "
              f"{len(report.objects)} objects)")
    if not report.run_count:  # else a young workspace reads as if gc had nothing to do, ever
        detail += ("; it keeps each project's newest `[gc] keep_runs` runs (default 50): "
                   "`workbench gc --keep N --dry-run` shows what fewer would free")
    return Check("size", "ok", detail)


def _docker_checks(root: Path) -> list[Check]:
    from workbench.adapters.docker_runner import DockerRunner

    try:
        runner = DockerRunner()
    except WorkbenchError as exc:
        return [Check("docker", "warn", f"{exc}; stages will run as local processes")]
    info = runner.engine_info()
    checks = [Check("docker", "ok", f"engine {info.get('server_version', '?')} reachable")]
    base = info.get("base_image")
    if base:
        checks.append(Check("base image", "ok", base))
    else:
        hint = "run `workbench env bootstrap` (needs root and debootstrap)" if shutil.which("debootstrap") \
            else "install debootstrap, then run `workbench env bootstrap`"
        checks.append(Check("base image", "fail", f"no base image available offline: {hint}"))
    checks += _pull_failure_checks()
    return checks


def _cluster_and_alert_checks(root: Path) -> list[Check]:
    """The cluster stages would run on, when one is named (--scheduler aside: $WORKBENCH_SCHEDULER
    or workspace.toml), and the alerts still waiting for their webhooks."""
    from workbench.services.session import WorkbenchSession

    try:
        session = WorkbenchSession(root)
        choice = session.scheduler_choice
    except WorkbenchError as exc:  # a bad workspace.toml, already said by the workspace check or here
        return [Check("workspace.toml", "fail", str(exc))]
    checks = [] if choice is None else [_cluster_check(session, choice)]
    try:
        alerts = session.alerts.status()
    except WorkbenchError as exc:
        return checks + [Check("alerts", "warn", str(exc))]
    if alerts.pending:
        checks.append(Check("alerts", "warn", f"{alerts.pending} alert delivery(ies) waiting; last error: "
                                              f"{alerts.last_error or 'none yet'} (`workbench notify status`)"))
    return checks


def _cluster_check(session, choice) -> Check:
    from workbench.services.cluster import cluster_status

    needed = session.runner_choice == "cluster"  # stages go there by default: not reaching it is a failure
    try:
        _choice, workers = cluster_status(session)
    except WorkbenchError as exc:
        return Check("cluster", "fail" if needed else "warn", str(exc))
    cpus = sum(w.resources.get("cpus", 0) for w in workers)
    detail = f"{choice.address} (from {choice.source}): {len(workers)} worker(s), {cpus:g} cpus"
    undeclared = [w.name for w in workers if "cpus" not in w.resources]
    if not workers:
        return Check("cluster", "warn", f"{detail}; no worker connected: stages wait for one")
    if undeclared:
        return Check("cluster", "warn", f"{detail}; {', '.join(undeclared)} declare no cpus, so no stage goes "
                                        f"to them: start them with --resources \"cpus=N\"")
    return Check("cluster", "ok", detail)


def _pull_failure_checks() -> list[Check]:
    """Pulls that failed a moment ago, which commands do not try again for a while."""
    from workbench.adapters.pull_failures import PullFailures

    failures = PullFailures()
    return [Check("registry", "warn", f"pulling {image} failed {age:.0f} s ago ({reason}); commands try again "
                                      f"in {max(0.0, failures.retry_after_s - age) / 60:.0f} min "
                                      f"(`docker pull {image}` tries now)")
            for image, (age, reason) in sorted(failures.all_recent().items())]


def bootstrap_base_image(tag: str | None = None, force: bool = False,
                         on_log: Callable[[str], None] = print) -> str:
    from workbench.adapters import base_image

    kwargs = {"force": force, "on_log": on_log}
    if tag:
        kwargs["tag"] = tag
    if os.geteuid() != 0:
        raise WorkbenchError("`workbench env bootstrap` needs root (debootstrap builds a Debian root filesystem)")
    return base_image.bootstrap_base_image(**kwargs)

"""`workbench gc`: keep what the workspace still needs, delete the rest of its history.

What is kept (workbench.core.gc_plan decides, from the lineage store's facts): the newest
`[gc] keep_runs` runs of each project (`--keep` overrides), runs in progress, every run whose
version an alias holds or the audit trail names (and each project's newest version), runs a
drift batch's record links, runs the MLflow outbox still has to send, every run a kept run
reused a stage result from, the newest reproduction of each kept version's run. Then, on
disk: the snapshots kept runs name, the objects those snapshots are made of (by inode: a
snapshot's files are hard links to them), every deploy release an alias points at or whose
metadata names an audit row, the drift reference profiles of kept objects. Everything else
goes: lineage rows of deleted runs (one transaction, all tables), their output folders,
unreferenced snapshots, objects and their drift profiles, releases of unfinished promotions,
and the warm-worker control folders of processes that are gone.
Audit rows are never deleted or rewritten; deleted runs stay in MLflow.

Concurrency: a lock, not a grace period alone. Runs hold the workspace's gc lock shared from
their snapshot until they are recorded and registered, and taking any snapshot holds it (see
adapters/gc_lock.py); gc holds it exclusive while it decides and deletes, so it never sees a
run half made, and a run never reuses a snapshot, an object or another run's outputs gc is
deleting. gc waits for runs in progress (`--wait`, 10 minutes by default); they wait the few
seconds gc takes. Readers (the TUI, `workbench runs`, a serving process) take no lock: the
lineage rows go in one transaction before any file, so a reader sees a run or not, and a
serving process reads a release an alias points at, which gc keeps. What was made shortly
before gc started (`--grace`, 10 minutes) stays as well: an object a drift retrain stored
for the run it is about to start, a snapshot a drift check's scoring took.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from workbench.adapters.deploy import DeployPointers
from workbench.adapters.duckdb_gc import AnchorBehind, DuckDBGcStore
from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.adapters.gc_files import StateFiles, Weight
from workbench.adapters.gc_lock import gc_lock
from workbench.adapters.traffic_log import past_bound, traffic_dir
from workbench.core.errors import ProjectNotFound, WorkbenchError
from workbench.core.gc_plan import DEFAULT_GRACE_S, DEFAULT_WAIT_S, GcFacts, RunPlan, plan_runs, unreferenced
from workbench.core.manifest import GcSpec
from workbench.services.workspace import Workspace

ANCHOR_RETRIES = 10
KEEP_ALL = 2**31 - 1
DELETE_THREADS = 8
ALERTS_KEPT_DAYS = 30
"""Delivered alerts are kept this long in the outbox; `workbench gc` deletes older ones."""


@dataclass(frozen=True)
class GcReport:
    dry_run: bool
    runs: dict[str, list[int]]
    """Deleted (or, in a dry run, to be deleted) runs per project."""
    kept: dict[int, str]
    """Kept run -> why."""
    versions: list[tuple[str, int]]
    snapshots: list[str]
    objects: list[str]
    releases: list[str]
    """`project/release-folder`."""
    profiles: list[str]
    folders: list[str]
    """Other folders and files: run folders without a run, unfinished snapshots and copies."""
    bytes: int
    """Freed (or that would be freed): bytes of inodes left with no link."""
    notes: list[str] = field(default_factory=list)

    @property
    def run_count(self) -> int:
        return sum(len(ids) for ids in self.runs.values())

    def as_json(self) -> dict:
        return {"dry_run": self.dry_run, "bytes": self.bytes, "runs": self.runs,
                "kept_runs": {str(k): v for k, v in sorted(self.kept.items())},
                "versions": [{"project": p, "version": v} for p, v in self.versions],
                "snapshots": self.snapshots, "objects": self.objects, "releases": self.releases,
                "profiles": self.profiles, "other": self.folders, "notes": self.notes}


@dataclass
class _Sweep:
    """The files a plan gives up, and their weight."""
    paths: list[tuple[str, Path]] = field(default_factory=list)
    weight: Weight = field(default_factory=Weight)
    names: dict[str, list[str]] = field(default_factory=lambda: {
        "snapshots": [], "objects": [], "releases": [], "profiles": [], "folders": []})

    def add(self, kind: str, name: str | None, path: Path) -> None:
        self.paths.append((kind, path))
        self.weight.add_tree(path)
        if name is not None:
            self.names["folders" if kind == "workers" else kind].append(name)


def mirror_on(state_dir: Path) -> bool:
    """Whether anyone will send the MLflow outbox's items (workbench.services.mirror)."""
    from workbench.services.mirror import OFF, resolve_tracking_uri

    return resolve_tracking_uri(state_dir).lower() not in OFF


class GcService:
    def __init__(self, workspace: Workspace, store: DuckDBLineageStore):
        self.workspace = workspace
        self.store = store
        self.state_dir = workspace.state_dir
        self.gc_store = DuckDBGcStore(store, mirror_on=mirror_on(self.state_dir))
        self.files = StateFiles(self.state_dir)

    def collect(self, project: str | None = None, keep: int | None = None, dry_run: bool = False,
                grace_s: float = DEFAULT_GRACE_S, wait_s: float | None = DEFAULT_WAIT_S,
                on_wait: Callable[[], None] | None = None) -> GcReport:
        if keep is not None and keep < 0:
            raise WorkbenchError(f"--keep must be zero or more (the newest runs of each project kept), got {keep}")
        if grace_s < 0:
            raise WorkbenchError(f"--grace must be zero or more seconds, got {grace_s:g}")
        keeps, default_keep, notes = self._keeps(keep)
        name = self._project_name(project) if project else None
        decide = lambda facts: self._decide(facts, keeps, default_keep, name)  # noqa: E731
        cutoff = time.time() - grace_s
        notes += self._prune_alerts(dry_run)
        if dry_run:
            plan = self.gc_store.plan(decide)
            sweep = self._sweep(plan, cutoff)
            return self._report(True, plan, sweep, notes)
        with gc_lock(self.state_dir, exclusive=True, timeout_s=wait_s, on_wait=on_wait):
            plan = self._collect_rows(decide)
            sweep = self._sweep(plan, cutoff)
            self._delete(sweep)
        return self._report(False, plan, sweep, notes)

    def reclaimable(self) -> tuple[dict[str, int], GcReport]:
        """(the state folder's size by part, what gc with the projects' settings would free)."""
        return self.files.size(), self.collect(dry_run=True)

    # -- deciding ----------------------------------------------------------------------------

    def _keeps(self, keep: int | None) -> tuple[dict[str, int], int, list[str]]:
        """(newest runs kept per project, for projects not named, notes). A project whose
        manifest does not load keeps every run: its `[gc] keep_runs` is not known."""
        if keep is not None:
            return {}, keep, []
        keeps, notes, default = {}, [], GcSpec.keep_runs
        for ref in self.workspace.projects():
            if ref.manifest is not None:
                keeps[ref.name] = ref.manifest.gc.keep_runs
            else:
                default = KEEP_ALL
                notes.append(f"{ref.error}: its runs (and those of projects with no folder) were all kept; "
                             "fix the manifest or pass --keep")
        return keeps, default, notes

    def _project_name(self, project: str) -> str:
        try:
            return self.workspace.project(project).name
        except ProjectNotFound:
            # A project whose folder is gone may still have runs to collect.
            with self.store.transaction() as con:
                if con.execute("SELECT 1 FROM runs WHERE project = ? LIMIT 1", [project]).fetchone():
                    return project
            raise

    @staticmethod
    def _decide(facts: GcFacts, keeps: dict[str, int], default_keep: int, project: str | None) -> RunPlan:
        return plan_runs(facts, keeps, default_keep, project)

    def _collect_rows(self, decide: Callable[[GcFacts], RunPlan]) -> RunPlan:
        for attempt in range(ANCHOR_RETRIES):
            try:
                return self.gc_store.collect(decide)
            except AnchorBehind:
                if attempt == ANCHOR_RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _sweep(self, plan: RunPlan, cutoff: float) -> _Sweep:
        """The files `plan` gives up (made before `cutoff` where age matters)."""
        sweep = _Sweep()
        files = self.files
        deleted = set(plan.deleted)
        for run_id, folder in sorted(files.run_folders().items()):
            if run_id in deleted:
                sweep.add("runs", None, folder)
            elif run_id not in plan.projects and files.mtime(folder) < cutoff:
                sweep.add("folders", f"runs/{run_id} (no such run)", folder)
        snapshots = files.snapshot_folders()
        kept_snapshots = [snapshots[s] for s in plan.kept_snapshots if s in snapshots]
        for snap in unreferenced(snapshots, plan.kept_snapshots):
            path = snapshots[snap]
            if files.mtime(path) >= cutoff:
                kept_snapshots.append(path)  # taken a moment ago: a run's or a drift check's
                continue
            if snap.startswith("."):  # `.building-*`: a snapshot whose making was cut short
                sweep.add("folders", f"snapshots/{snap}", path)
            else:
                sweep.add("snapshots", snap, path)
        linked = files.inodes_of(kept_snapshots)
        gone_objects = set()
        for sha, (path, st) in sorted(files.objects_by_sha().items()):
            if (st.st_dev, st.st_ino) in linked or st.st_mtime >= cutoff:
                continue
            if sha.startswith("."):
                sweep.add("folders", f"objects/{sha}", path)
            else:
                sweep.add("objects", sha, path)
                gone_objects.add(sha)
        for sha, paths in sorted(files.profile_files().items()):
            if sha in gone_objects:
                for path in sorted(paths):
                    sweep.add("profiles", path.name, path)
        audit_ids = self._audit_ids()
        for release in files.releases():
            if release.pointed or (release.audit_id is not None and release.audit_id in audit_ids):
                continue
            if files.mtime(release.path) < cutoff:
                sweep.add("releases", f"{release.project}/{release.path.name}", release.path)
        for folder in files.abandoned_workers():
            sweep.add("workers", f"workers/{folder.name} (its process is gone)", folder)
        for ref in self.workspace.projects():  # served traffic past [serving] log_max_mb, oldest first
            if ref.manifest is not None:
                for seg in past_bound(traffic_dir(self.state_dir, ref.name), ref.manifest.serving.log_max_mb << 20):
                    sweep.add("folders", f"serving/{ref.name}/traffic/{seg.path.parent.name}/{seg.name} "
                                         "(past [serving] log_max_mb)", seg.path)
        return sweep

    def _audit_ids(self) -> set[int]:
        with self.store.transaction() as con:
            return {row[0] for row in con.execute("SELECT id FROM audit").fetchall()}

    # -- deleting ----------------------------------------------------------------------------

    def _delete(self, sweep: _Sweep) -> None:
        deploy = DeployPointers(self.files.deploy)
        plain = []
        for kind, path in sweep.paths:
            if kind == "releases":
                # Under the project's deploy lock: a promotion never switches to a folder as it goes.
                with deploy.locked(path.parent.parent.name):
                    if not any(Path(os.path.realpath(link)) == path for link in path.parent.parent.iterdir()
                               if link.is_symlink()):
                        self.files.remove(path)
            elif kind == "workers":
                self.files.remove_if_abandoned(path)
            else:
                plain.append(path)
        # Each unlink and rmdir waits on the file system's journal (3 ms each on this machine's
        # ext4, one at a time); many at once share the waits: 40 times faster with 8 threads.
        with ThreadPoolExecutor(max_workers=DELETE_THREADS) as pool:
            for _ in pool.map(self.files.remove, plain):
                pass

    def _prune_alerts(self, dry_run: bool) -> list[str]:
        """Delivered alerts older than ALERTS_KEPT_DAYS: the outbox is for what waits, the
        receivers keep the history."""
        from workbench.adapters.duckdb_alerts import DuckDBAlertOutbox

        before = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=ALERTS_KEPT_DAYS)
        count = DuckDBAlertOutbox(self.store).prune(before, dry_run)
        if not count:
            return []
        return [f"{'would delete' if dry_run else 'deleted'} {count} alert(s) delivered over "
                f"{ALERTS_KEPT_DAYS} days ago"]

    @staticmethod
    def _report(dry_run: bool, plan: RunPlan, sweep: _Sweep, notes: list[str]) -> GcReport:
        notes = list(notes)
        if plan.deleted and not dry_run:
            notes.append("deleted runs stay in MLflow (the mirror's copy is history; delete them there if you must)")
        return GcReport(dry_run, plan.deleted_by_project(), dict(plan.kept), list(plan.deleted_versions),
                        sweep.names["snapshots"], sweep.names["objects"], sweep.names["releases"],
                        sweep.names["profiles"], sweep.names["folders"], sweep.weight.freed, notes)

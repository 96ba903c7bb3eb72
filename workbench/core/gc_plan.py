"""What `workbench gc` keeps of a workspace's history and what it deletes, from facts alone.

Runs are kept for a reason, and the first reason found is the one reported:

- running: a run in progress (gc waits for runs to finish, see services/gc.py; this is the
  belt to that lock's braces: a 'running' row is never touched);
- newest: among the newest `keep` runs of its project;
- a version it registered is pinned: held by an alias (staging, production), named by an audit
  row, the project's newest version (version numbers are `max + 1`: deleting the newest would
  hand its number, already in MLflow and maybe in a deploy release, to a different model), a
  drift batch's reference, or waiting in the MLflow outbox;
- the run itself is pinned: a drift batch's reference or retrain, waiting in the MLflow outbox;
- reused by a kept run: a reused stage's output folder is the original run's, so the original
  stays while any kept run points at it (transitively);
- a reproduction: the newest `reproduce` run of a kept version's run (promotion's
  reproducibility check reads it).

A version whose run goes is deleted with it (its row and its seal); every other version stays.
Snapshots stay while a kept run names them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping

RUNNING_STATUSES = frozenset({"running", "pending"})
DEFAULT_GRACE_S = 600.0
"""Snapshots, objects and folders younger than this stay (made for a run about to start)."""
DEFAULT_WAIT_S = 600.0
"""How long gc waits for runs in progress to finish before it gives up."""


@dataclass(frozen=True)
class RunFact:
    id: int
    project: str
    status: str
    trigger: str = "manual"
    snapshot_id: str = ""
    reused_from: frozenset[int] = frozenset()
    """Runs whose stage outputs this run reused (stage_runs.reused_from_run)."""


@dataclass(frozen=True)
class VersionFact:
    project: str
    version: int
    run_id: int


@dataclass(frozen=True)
class GcFacts:
    runs: tuple[RunFact, ...]
    versions: tuple[VersionFact, ...] = ()
    pinned_versions: Mapping[tuple[str, int], str] = field(default_factory=dict)
    """(project, version) -> why it must stay (`in production`, `named by audit row #4`)."""
    pinned_runs: Mapping[int, str] = field(default_factory=dict)
    """run id -> why it must stay (`drift batch 3's reference`)."""


@dataclass(frozen=True)
class RunPlan:
    kept: Mapping[int, str]
    """run id -> why it is kept."""
    deleted: tuple[int, ...]
    """Run ids to delete, ascending."""
    deleted_versions: tuple[tuple[str, int], ...]
    kept_snapshots: frozenset[str]
    projects: Mapping[int, str]
    """run id -> its project, for every run in the facts."""

    def deleted_by_project(self) -> dict[str, list[int]]:
        grouped: dict[str, list[int]] = defaultdict(list)
        for run_id in self.deleted:
            grouped[self.projects[run_id]].append(run_id)
        return dict(sorted(grouped.items()))


def plan_runs(facts: GcFacts, keep: Mapping[str, int], default_keep: int,
              only_project: str | None = None) -> RunPlan:
    """The runs, versions and snapshots to keep and delete.

    `keep`: per project, how many of its newest runs to keep (`default_keep` for a project not
    named, such as one whose folder is gone). `only_project`: collect that project's runs only;
    every other project's runs are kept ("other project")."""
    if default_keep < 0 or any(n < 0 for n in keep.values()):
        raise ValueError("the number of runs to keep must be zero or more")
    by_id = {r.id: r for r in facts.runs}
    kept: dict[int, str] = {}

    def hold(run_id: int, why: str) -> None:
        if run_id in by_id and run_id not in kept:
            kept[run_id] = why

    newest: dict[str, list[int]] = defaultdict(list)
    for run in sorted(facts.runs, key=lambda r: r.id, reverse=True):
        if only_project is not None and run.project != only_project:
            hold(run.id, "another project")
        elif run.status in RUNNING_STATUSES:
            hold(run.id, "running")
        elif len(newest[run.project]) < keep.get(run.project, default_keep):
            newest[run.project].append(run.id)
            hold(run.id, f"one of the newest {keep.get(run.project, default_keep)}")

    pinned_versions = dict(facts.pinned_versions)
    latest: dict[str, VersionFact] = {}
    for v in facts.versions:
        if v.project not in latest or v.version > latest[v.project].version:
            latest[v.project] = v
    for v in latest.values():
        pinned_versions.setdefault((v.project, v.version), "the newest version (its number is never reused)")
    version_runs = {(v.project, v.version): v.run_id for v in facts.versions}
    for (project, version), why in sorted(pinned_versions.items()):
        run_id = version_runs.get((project, version))
        if run_id is not None:
            hold(run_id, f"version {version}: {why}")
    for run_id, why in sorted(facts.pinned_runs.items()):
        hold(run_id, why)

    _hold_reused(by_id, kept)
    # The newest reproduction of each kept version's run, then whatever it reused (nothing,
    # today: a reproduction reuses nothing; the closure keeps that a fact, not an assumption).
    versioned = {v.run_id for v in facts.versions if v.run_id in kept}
    for run_id, original in _reproductions(facts.runs, by_id, versioned).items():
        hold(run_id, f"the newest reproduction of run {original}")
    _hold_reused(by_id, kept)

    deleted = tuple(sorted(set(by_id) - set(kept)))
    deleted_set = set(deleted)
    deleted_versions = tuple(sorted((v.project, v.version) for v in facts.versions if v.run_id in deleted_set))
    snapshots = frozenset(by_id[r].snapshot_id for r in kept if by_id[r].snapshot_id)
    return RunPlan(kept, deleted, deleted_versions, snapshots, {r.id: r.project for r in facts.runs})


def _hold_reused(by_id: Mapping[int, RunFact], kept: dict[int, str]) -> None:
    todo = list(kept)
    while todo:
        run_id = todo.pop()
        for source in sorted(by_id[run_id].reused_from):
            if source in by_id and source not in kept:
                kept[source] = f"run {run_id} reused its outputs"
                todo.append(source)


def _reproductions(runs: Iterable[RunFact], by_id: Mapping[int, RunFact], originals: set[int]) -> dict[int, int]:
    """reproduce run id -> the original it is the newest finished reproduction of."""
    wanted = {(by_id[r].project, by_id[r].snapshot_id): r for r in originals if by_id[r].snapshot_id}
    newest: dict[int, int] = {}
    for run in runs:
        original = wanted.get((run.project, run.snapshot_id))
        if (original is None or run.trigger != "reproduce" or run.id == original
                or run.status in RUNNING_STATUSES):
            continue
        if original not in newest or run.id > newest[original]:
            newest[original] = run.id
    return {run_id: original for original, run_id in newest.items()}


def unreferenced(on_disk: Iterable[str], referenced: Iterable[str]) -> list[str]:
    """Names on disk nothing refers to, sorted (snapshot folders, release folders)."""
    return sorted(set(on_disk) - set(referenced))


def human_bytes(n: int) -> str:
    """`512 B`, `3.4 KiB`, `1.2 GiB`."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"

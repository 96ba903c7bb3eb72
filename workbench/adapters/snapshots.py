"""Snapshots: the exact set of project files a run sees.

A snapshot is a folder of hard links into the object store, named by the digest of its file
set, so editing the project during a run cannot change what the run reads, and an unchanged
project costs one `stat` per file, not a copy.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from workbench.adapters.disk_writes import disk_error
from workbench.adapters.gc_lock import gc_lock
from workbench.adapters.object_store import FileVanished, ObjectStore
from workbench.adapters.output_files import read_tree
from workbench.adapters.project_survey import (
    ProjectLinkError, dangling_message, refusal_message, survey_project,
)
from workbench.adapters.regular_files import FileEntry
from workbench.core.errors import WorkbenchError
from workbench.core.planning import tree_digest


@dataclass(frozen=True)
class Snapshot:
    id: str
    path: Path
    files: dict[str, FileEntry]
    warnings: tuple[str, ...] = ()
    """What taking it left out and the run should say (dangling symlinks); empty when opened again."""

    @property
    def hashes(self) -> dict[str, str]:
        return {p: f.sha256 for p, f in self.files.items()}


class SnapshotStore:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.objects = ObjectStore(state_dir)
        self.snapshots = state_dir / "snapshots"

    def take(self, project_dir: Path, ignores: tuple[str, ...],
             overrides: dict[str, Path] | None = None, external: tuple[str, ...] = ()) -> Snapshot:
        """Snapshot the project; an identical file set reuses the existing snapshot folder.

        `overrides` maps project-relative paths to files whose content the snapshot holds there
        instead (a drift retrain's training data): the project itself is never written.
        `external`: the manifest's `[project] external_links`, the only symlinks that may lead
        outside the project; any other such link is a ProjectLinkError naming it."""
        # Shared with other snapshots and runs, exclusive to `workbench gc`: an object or a
        # snapshot folder found here is not deleted while it is linked or reused.
        with gc_lock(self.state_dir, exclusive=False):
            return self._take(project_dir, ignores, overrides, external)

    def _take(self, project_dir: Path, ignores: tuple[str, ...], overrides: dict[str, Path] | None,
              external: tuple[str, ...]) -> Snapshot:
        scan = survey_project(project_dir, ignores, external, forbidden=(self.state_dir,))
        if scan.refused:
            raise ProjectLinkError(refusal_message(project_dir, scan.refused))
        files: dict[str, FileEntry] = {}
        for rel, st in scan.files.items():
            if overrides and rel in overrides:
                continue
            try:
                entry = self.objects.ingest(project_dir / rel, st)
            except FileVanished:
                continue  # deleted while we copied (an editor's temp file): as if listed a moment later
            files[rel] = FileEntry(rel, entry.sha256, entry.size)
        for rel, source in (overrides or {}).items():
            try:
                entry = self.objects.ingest(Path(source), os.stat(source))
            except (FileNotFoundError, FileVanished):
                raise WorkbenchError(f"{source}, to be snapshotted as {rel}, is not there") from None
            files[rel] = FileEntry(rel, entry.sha256, entry.size)
        self.objects.save_cache()
        snap_id = tree_digest({p: f.sha256 for p, f in files.items()})[:20]
        path = self.snapshots / snap_id
        if not path.exists():
            self._materialize(path, files)
        else:
            _touch(path)  # used now: `workbench gc --grace` keeps what was used a moment ago
        return Snapshot(snap_id, path, files, (dangling_message(scan.dangling),) if scan.dangling else ())

    def open(self, snapshot_id: str) -> Snapshot:
        """An existing snapshot, to rerun exactly what an earlier run saw."""
        path = self.snapshots / snapshot_id
        if not path.is_dir():
            raise WorkbenchError(f"snapshot {snapshot_id} is no longer in {self.snapshots}")
        tree = read_tree(path, shared_links=True)  # a snapshot is hard links to objects
        if tree.problems:
            raise WorkbenchError(f"snapshot {snapshot_id} in {self.snapshots} was altered: {tree.problems[0]}")
        return Snapshot(snapshot_id, path, tree.files)

    def _materialize(self, path: Path, files: dict[str, FileEntry]) -> None:
        self.snapshots.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.snapshots, prefix=".building-"))
        try:
            for rel, entry in files.items():
                target = staging / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                source = self.objects.object_path(entry.sha256)
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copy2(source, target)  # another filesystem: copy instead
            for dirpath, _dirs, _files in os.walk(staging):
                os.chmod(dirpath, 0o755)
            os.replace(staging, path)
        except FileExistsError:
            shutil.rmtree(staging, ignore_errors=True)  # another process made it first
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return
            raise disk_error(exc, path) from None


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # not ours to stamp (a copied workspace): the run still holds the gc lock

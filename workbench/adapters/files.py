"""Project files on disk: scanning, content hashing with a stat cache, and snapshots.

A snapshot is the exact set of project files a run sees. Each file is copied once into a
content-addressed object store (`.workbench/objects/ab/cdef...`) and the snapshot is a tree of
hard links to those objects, so an unchanged 1 GB data file costs one `stat` per run, not a
read, and editing the project during a run cannot change what the run reads.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.core.errors import DiskFullError, WorkbenchError
from workbench.core.planning import matches_any, tree_digest

CHUNK = 1024 * 1024
# A file modified this recently may be modified again within the same mtime tick; its stat
# signature is not trusted for caching (git calls this the "racy" case).
RACY_WINDOW_NS = 2_000_000_000
ALWAYS_SKIPPED_DIRS = {".workbench", ".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints"}


@dataclass(frozen=True)
class FileEntry:
    path: str
    """Relative to the project, with forward slashes."""
    sha256: str
    size: int


def _disk_error(exc: OSError, where: Path | str) -> WorkbenchError:
    if exc.errno == errno.ENOSPC:
        return DiskFullError(f"disk full while writing {where}; free some space and run again")
    return WorkbenchError(f"cannot write {where}: {exc.strerror or exc}")


def scan_project(root: Path, ignores: tuple[str, ...]) -> dict[str, os.stat_result]:
    """Every regular file under `root` that no ignore glob matches, with its stat."""
    found: dict[str, os.stat_result] = {}
    root_str = str(root)
    for dirpath, dirnames, filenames in os.walk(root_str):
        rel_dir = os.path.relpath(dirpath, root_str).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in ALWAYS_SKIPPED_DIRS and not matches_any(rel_dir + d + "/", ignores)
        )
        for name in sorted(filenames):
            rel = rel_dir + name
            if matches_any(rel, ignores):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name), follow_symlinks=True)
            except FileNotFoundError:
                continue  # removed since the folder was listed (an editor's temp file): not there
            if stat.S_ISREG(st.st_mode):
                found[rel] = st
    return found


class FileVanished(WorkbenchError):
    """A file was deleted between being listed and being read."""


def read_hash_cache(state_dir: Path) -> dict[str, list]:
    """The workspace's stat cache: {absolute path: [size, mtime_ns, inode, sha256]}.

    The file keys it relative to the workspace (the state folder's parent), so a workspace
    that was moved or copied keeps its cache and names no other folder."""
    try:
        cache = json.loads((state_dir / "hash-cache.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(cache, dict):
        return {}
    root = state_dir.parent
    return {key if os.path.isabs(key) else str(root / key): entry for key, entry in cache.items()}


def _portable_cache(cache: dict[str, list], root: Path) -> dict[str, list]:
    """The cache as written: keys relative to the workspace; entries outside it are dropped
    (an older cache's absolute keys, or those of the folder a workspace was copied from)."""
    portable = {}
    for key, entry in cache.items():
        try:
            portable[Path(key).relative_to(root).as_posix()] = entry
        except ValueError:
            continue
    return portable


class ObjectStore:
    """Content-addressed, read-only copies of file contents, with a stat -> sha256 cache."""

    def __init__(self, state_dir: Path):
        self.objects = state_dir / "objects"
        self.cache_path = state_dir / "hash-cache.json"
        self._cache: dict[str, list] = read_hash_cache(state_dir)
        self._dirty = False

    def object_path(self, sha: str) -> Path:
        return self.objects / sha[:2] / sha[2:]

    def ingest(self, source: Path, st: os.stat_result) -> FileEntry:
        """Ensure the file's content is in the store; read it only when its stat changed."""
        key = str(source)
        signature = [st.st_size, st.st_mtime_ns, st.st_ino]
        cached = self._cache.get(key)
        if cached and cached[:3] == signature and self.object_path(cached[3]).exists():
            return FileEntry(key, cached[3], st.st_size)
        sha = self._copy_in(source)
        if time.time_ns() - st.st_mtime_ns > RACY_WINDOW_NS:
            self._cache[key] = signature + [sha]
            self._dirty = True
        return FileEntry(key, sha, st.st_size)

    def _copy_in(self, source: Path) -> str:
        """Copy while hashing, so the recorded hash is of exactly the bytes kept."""
        self.objects.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            before = os.stat(source)
            fd, tmp_name = tempfile.mkstemp(dir=self.objects, prefix=".incoming-")
            digest = hashlib.sha256()
            try:
                with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
            except OSError as exc:
                Path(tmp_name).unlink(missing_ok=True)
                if exc.errno == errno.ENOENT:
                    raise FileVanished(f"{source} disappeared while it was being snapshotted") from None
                raise _disk_error(exc, self.objects) from None
            after = os.stat(source)
            if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
                Path(tmp_name).unlink(missing_ok=True)  # written to while we copied: again
                continue
            sha = digest.hexdigest()
            target = self.object_path(sha)
            if target.exists():
                Path(tmp_name).unlink()
            else:
                target.parent.mkdir(exist_ok=True)
                os.chmod(tmp_name, 0o444)
                os.replace(tmp_name, target)
            return sha
        raise WorkbenchError(f"{source} kept changing while it was being snapshotted")

    def save_cache(self) -> None:
        if not self._dirty:
            return
        # Runs of two watched projects save from two threads of one process.
        tmp = self.cache_path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_text(json.dumps(_portable_cache(self._cache, self.cache_path.parent.parent)))
            os.replace(tmp, self.cache_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _disk_error(exc, self.cache_path) from None
        self._dirty = False


@dataclass(frozen=True)
class Snapshot:
    id: str
    path: Path
    files: dict[str, FileEntry]

    @property
    def hashes(self) -> dict[str, str]:
        return {p: f.sha256 for p, f in self.files.items()}


class SnapshotStore:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.objects = ObjectStore(state_dir)
        self.snapshots = state_dir / "snapshots"

    def take(self, project_dir: Path, ignores: tuple[str, ...],
             overrides: dict[str, Path] | None = None) -> Snapshot:
        """Snapshot the project; an identical file set reuses the existing snapshot folder.

        `overrides` maps project-relative paths to files whose content the snapshot holds there
        instead (a drift retrain's training data): the project itself is never written."""
        files: dict[str, FileEntry] = {}
        for rel, st in scan_project(project_dir, ignores).items():
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
        return Snapshot(snap_id, path, files)

    def open(self, snapshot_id: str) -> Snapshot:
        """An existing snapshot, to rerun exactly what an earlier run saw."""
        path = self.snapshots / snapshot_id
        if not path.is_dir():
            raise WorkbenchError(f"snapshot {snapshot_id} is no longer in {self.snapshots}")
        files = {rel: FileEntry(rel, entry.sha256, entry.size) for rel, entry in hash_tree(path).items()}
        return Snapshot(snapshot_id, path, files)

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
            raise _disk_error(exc, path) from None


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_tree(root: Path) -> dict[str, FileEntry]:
    """Hash every file under a stage's output folder (outputs are small; no cache)."""
    entries: dict[str, FileEntry] = {}
    for dirpath, _dirs, filenames in os.walk(root):
        for name in filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            entries[rel] = FileEntry(rel, hash_file(full), full.stat().st_size)
    return dict(sorted(entries.items()))


class StatHasher:
    """sha256 of files, remembering each file's (size, mtime, inode) so an untouched file is
    read once. Seed it with `read_hash_cache` to start from what snapshots already hashed."""

    def __init__(self, seed: dict[str, list] | None = None):
        self._cache: dict[str, list] = dict(seed or {})

    def digest(self, path: Path) -> str | None:
        """The file's sha256; None when it is not there or not a regular file."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        key = str(path)
        signature = [st.st_size, st.st_mtime_ns, st.st_ino]
        cached = self._cache.get(key)
        if cached and cached[:3] == signature:
            return cached[3]
        try:
            sha = hash_file(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            # Unreadable (permissions, I/O error): a digest no content has, so it counts as a change.
            return f"unreadable: {exc.strerror or exc}"
        if time.time_ns() - st.st_mtime_ns > RACY_WINDOW_NS:
            self._cache[key] = signature + [sha]
        return sha

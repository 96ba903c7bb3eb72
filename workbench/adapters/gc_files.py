"""The state folder's files for `workbench gc` and `doctor`: what is there, what it weighs,
and deleting it. Only `stat`s: nothing is read or hashed.

    .workbench/runs/<run id>/<stage>/       a run's stage outputs
    .workbench/snapshots/<id>/              hard links into objects/ (adapters/snapshots.py)
    .workbench/objects/ab/cdef...           content-addressed copies (adapters/object_store.py)
    .workbench/drift/profiles/<sha256>-*    a drift reference's profile, by the reference's sha256
    .workbench/deploy/<project>/releases/   deploy releases (adapters/deploy.py)
    .workbench/workers/<key>-<pid>-<token>/ a warm worker's control folder (adapters/worker_control.py)

Sizes count each inode once (a snapshot's files are hard links to objects), and a file frees
its bytes only when every one of its links goes: what gc reports is what the disk gets back.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from workbench.adapters.deploy import METADATA, RELEASES
from workbench.adapters.worker_control import LOCK_NAME as WORKER_LOCK

SHA_LEN = 64


@dataclass(frozen=True)
class Release:
    project: str
    path: Path
    pointed: bool
    """An alias's symlink leads to it."""
    audit_id: int | None
    """The audit row its metadata names (None: no metadata, an unfinished promotion)."""


@dataclass
class Weight:
    """Files by inode: (dev, ino) -> (size, links, how many of its links are counted here)."""
    inodes: dict[tuple[int, int], list[int]] = field(default_factory=dict)

    def add_tree(self, path: Path) -> None:
        for file, st in _files(path):
            entry = self.inodes.setdefault((st.st_dev, st.st_ino), [st.st_size, st.st_nlink, 0])
            entry[2] += 1

    @property
    def apparent(self) -> int:
        """Bytes of the files, each inode once."""
        return sum(size for size, _links, _seen in self.inodes.values())

    @property
    def freed(self) -> int:
        """Bytes the disk gets back when every path added is deleted: inodes with no link left."""
        return sum(size for size, links, seen in self.inodes.values() if seen >= links)


class StateFiles:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.runs = state_dir / "runs"
        self.snapshots = state_dir / "snapshots"
        self.objects = state_dir / "objects"
        self.profiles = state_dir / "drift" / "profiles"
        self.deploy = state_dir / "deploy"

    # -- what is there -----------------------------------------------------------------------

    def run_folders(self) -> dict[int, Path]:
        """Run output folders by run id (`runs/<id>`); other folders there (a drift check's
        scoring, `drift-<batch>`) are not a run's and not listed."""
        return {int(e.name): Path(e.path) for e in _entries(self.runs) if e.name.isdigit() and e.is_dir()}

    def snapshot_folders(self) -> dict[str, Path]:
        """Snapshot folders by id, and unfinished ones (`.building-*`) by their name."""
        return {e.name: Path(e.path) for e in _entries(self.snapshots) if e.is_dir(follow_symlinks=False)}

    def objects_by_sha(self) -> dict[str, tuple[Path, os.stat_result]]:
        """sha256 -> (path, lstat) of each object, and unfinished copies (`.incoming-*`) by name."""
        found = {}
        for top in _entries(self.objects):
            if top.name.startswith(".incoming-"):
                found[top.name] = (Path(top.path), top.stat(follow_symlinks=False))
                continue
            if not top.is_dir(follow_symlinks=False):
                continue
            for e in _entries(Path(top.path)):
                found[top.name + e.name] = (Path(e.path), e.stat(follow_symlinks=False))
        return found

    def inodes_of(self, folders: Iterable[Path]) -> set[tuple[int, int]]:
        return {(st.st_dev, st.st_ino) for folder in folders for _f, st in _files(folder)}

    def profile_files(self) -> dict[str, list[Path]]:
        """sha256 -> the drift reference profile files named after it."""
        found: dict[str, list[Path]] = {}
        for e in _entries(self.profiles):
            sha = e.name[:SHA_LEN]
            if len(sha) == SHA_LEN and e.name[SHA_LEN:SHA_LEN + 1] in ("-", "."):
                found.setdefault(sha, []).append(Path(e.path))
        return found

    def releases(self) -> list[Release]:
        out = []
        for project in _entries(self.deploy):
            base = Path(project.path)
            if not project.is_dir(follow_symlinks=False):
                continue
            pointed = {Path(os.path.realpath(Path(e.path))).name for e in _entries(base)
                       if e.is_symlink()}
            for e in _entries(base / RELEASES):
                if e.is_dir(follow_symlinks=False):
                    out.append(Release(project.name, Path(e.path), e.name in pointed,
                                       _audit_id(Path(e.path) / METADATA)))
        return out

    def abandoned_workers(self) -> list[Path]:
        """Warm workers' control folders whose owning process is gone (nobody holds their
        `owner.lock`; see adapters/worker_control.py)."""
        return [Path(e.path) for e in _entries(self.state_dir / "workers")
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False) and _abandoned(Path(e.path))]

    @staticmethod
    def remove_if_abandoned(path: Path) -> None:
        """Delete a control folder while holding its owner lock, if no process holds it."""
        try:
            fd = os.open(path / WORKER_LOCK, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return  # its owner came back to life? no: a new process took the name; leave it
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)

    def size(self) -> dict[str, int]:
        """Bytes of the state folder by part (each inode counted once, in the first part that
        has it: objects before snapshots), the lineage store's file, the rest (`other`: the
        MLflow store, caches), and `total`."""
        seen: set[tuple[int, int]] = set()
        parts: dict[str, int] = {}
        order = ["objects", "snapshots", "runs", "deploy", "drift", "workers"]
        for name in order:
            parts[name] = _unique_size(self.state_dir / name, seen)
        parts["lineage"] = sum(_unique_size(Path(e.path), seen) for e in _entries(self.state_dir)
                               if e.name.startswith("lineage.duckdb"))
        parts["other"] = sum(_unique_size(Path(e.path), seen) for e in _entries(self.state_dir)
                             if e.name not in order and not e.name.startswith("lineage.duckdb"))
        parts["total"] = sum(parts.values())
        return parts

    # -- deleting ----------------------------------------------------------------------------

    @staticmethod
    def remove(path: Path) -> None:
        """Delete a file or a folder; already gone is fine (a reader may race us to nothing)."""
        try:
            if path.is_dir() and not path.is_symlink():
                _make_writable_dirs(path)
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            pass

    @staticmethod
    def mtime(path: Path) -> float:
        try:
            return path.lstat().st_mtime
        except OSError:
            return 0.0


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _files(path: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every file (not folder) at or under `path`, with its lstat; symlinks are files."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        yield str(path), st
        return
    stack = [str(path)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            try:
                est = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(est.st_mode):
                stack.append(e.path)
            else:
                yield e.path, est


def _unique_size(path: Path, seen: set[tuple[int, int]]) -> int:
    total = 0
    for _f, st in _files(path):
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            total += st.st_size
    return total


def _make_writable_dirs(path: Path) -> None:
    """A stage may leave a read-only folder in its outputs; its owner can still delete it."""
    for folder, dirs, _files_ in os.walk(path):
        for name in dirs:
            full = os.path.join(folder, name)
            try:
                if not os.access(full, os.W_OK | os.X_OK) and not os.path.islink(full):
                    os.chmod(full, 0o755)
            except OSError:
                pass


def _abandoned(folder: Path) -> bool:
    try:
        fd = os.open(folder / WORKER_LOCK, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: not a folder of ours; leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # its owner is alive
    finally:
        os.close(fd)  # closing lets go of the probe's lock
    return True


def _audit_id(metadata: Path) -> int | None:
    try:
        value = json.loads(metadata.read_text()).get("audit_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None

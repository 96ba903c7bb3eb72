"""Project files on disk: scanning, content hashing with a stat cache, and snapshots.

A snapshot is the exact set of project files a run sees. Each file is copied once into a
content-addressed object store (`.workbench/objects/ab/cdef...`) and the snapshot is a tree of
hard links to those objects, so an unchanged 1 GB data file costs one `stat` per run, not a
read, and editing the project during a run cannot change what the run reads.

What the host reads on a stage's behalf is never followed anywhere: a stage's outputs must be
regular files (a symlink to a root-only file or to /dev/zero is refused, not read), and project
symlinks that leave the project are refused unless the manifest lists them
(`[project] external_links`).
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
JSON_FILE_CAP = 64 * 1024**2
"""The most the host reads of a JSON file a stage wrote (metrics, params, artifacts, reports)."""
OUTPUT_BYTES_CAP = 16 * 1024**3
"""The most a stage's outputs may hold: the host reads (hashes) all of them after the stage."""
OUTPUT_FILES_CAP = 100_000
OUTPUT_DEPTH_CAP = 64
OUTPUT_FILE_MODE = 0o444
OUTPUT_DIR_MODE = 0o555
"""Recorded outputs are read-only, and their folders closed to new files: what a run recorded
cannot change afterwards. Other users still read them (stage containers run as `nobody`, and
read upstream outputs through their bind mounts); the state folder (0700) keeps out the rest."""
# O_NONBLOCK: opening a FIFO for reading must not wait for a writer before fstat can refuse it.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class FileEntry:
    path: str
    """Relative to the project, with forward slashes."""
    sha256: str
    size: int


class NotRegularFile(WorkbenchError):
    """A path the host was about to read is not a regular file it may read: a symlink, device,
    FIFO or socket (or, for read_regular_bytes, larger than its cap)."""


class ProjectLinkError(WorkbenchError):
    """A project symlink leads outside the project (or in a loop) and the manifest does not list it."""


def file_kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def open_regular(path: Path | str, *, follow: bool = False, dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """An fd for reading a regular file, and its fstat; NotRegularFile for anything else.

    lstat first, so a device is never opened (opening one can have effects of its own); then
    open without blocking and, unless `follow`, without following a final symlink, and fstat
    the fd, so a path swapped between the two calls is caught rather than read."""
    seen = os.stat(path, dir_fd=dir_fd, follow_symlinks=follow)
    if not stat.S_ISREG(seen.st_mode):
        raise NotRegularFile(f"{path} is {file_kind(seen.st_mode)}, not a regular file")
    flags = _READ_FLAGS | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(f"{path} is a symbolic link, not a regular file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        raise NotRegularFile(f"{path} was replaced while it was being opened ({file_kind(st.st_mode)})")
    return fd, st


def _read_fd(fd: int, limit: int, sink) -> int:
    """Feed at most `limit` bytes of fd to `sink`; the bytes read. The limit is the size fstat
    saw: a file that grows while it is read is not followed beyond that."""
    done = 0
    while done < limit:
        chunk = os.read(fd, min(CHUNK, limit - done))
        if not chunk:
            break
        sink(chunk)
        done += len(chunk)
    return done


def read_regular_bytes(path: Path | str, cap: int) -> bytes:
    """A small regular file's bytes, never following a symlink; NotRegularFile if it is not one
    or holds more than `cap` bytes (the protocol's JSON files are small)."""
    fd, st = open_regular(path)
    try:
        if st.st_size > cap:
            raise NotRegularFile(f"{path} holds {st.st_size} bytes, more than the {cap} allowed")
        parts: list[bytes] = []
        _read_fd(fd, st.st_size, parts.append)
        return b"".join(parts)
    finally:
        os.close(fd)


def _disk_error(exc: OSError, where: Path | str) -> WorkbenchError:
    if exc.errno == errno.ENOSPC:
        return DiskFullError(f"disk full while writing {where}; free some space and run again")
    return WorkbenchError(f"cannot write {where}: {exc.strerror or exc}")


@dataclass
class ProjectScan:
    files: dict[str, os.stat_result]
    """Project-relative path -> the stat of the file it names (a symlink's target's)."""
    refused: list[str]
    """Symlinks not followed, each as `link -> target (why)`."""


def scan_project(root: Path, ignores: tuple[str, ...], external: tuple[str, ...] = (),
                 forbidden: tuple[Path, ...] = ()) -> dict[str, os.stat_result]:
    """Every regular file under `root` that no ignore glob matches, with its stat.

    Symlinks are followed as their target's content while the target stays in the project, or
    in what `external` (the manifest's `[project] external_links`) lists; other links are left
    out here (SnapshotStore.take refuses them with survey_project's report)."""
    return survey_project(root, ignores, external, forbidden).files


def survey_project(root: Path, ignores: tuple[str, ...], external: tuple[str, ...] = (),
                   forbidden: tuple[Path, ...] = ()) -> ProjectScan:
    """scan_project's files, and the symlinks it refused to follow. `forbidden`: folders no
    link may lead into even when listed (the workspace's state folder)."""
    root_real = os.path.realpath(root)
    allowed = [root_real] + [os.path.realpath(os.path.join(root_real, rel)) for rel in external]
    closed = [os.path.realpath(p) for p in forbidden]
    scan = ProjectScan({}, [])

    def walk(folder: str, rel_dir: str, ancestors: tuple[str, ...]) -> None:
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError:
            return  # unreadable or removed since it was listed: as os.walk, not there
        for entry in entries:
            rel = rel_dir + entry.name
            try:
                is_link = entry.is_symlink()
                is_dir = not is_link and entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if entry.name not in ALWAYS_SKIPPED_DIRS and not matches_any(rel + "/", ignores):
                    real = os.path.join(ancestors[-1], entry.name)
                    walk(entry.path, rel + "/", ancestors + (real,))
                continue
            if matches_any(rel, ignores) or (is_link and matches_any(rel + "/", ignores)):
                continue
            if not is_link:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed since the folder was listed (an editor's temp file): not there
                if stat.S_ISREG(st.st_mode):
                    scan.files[rel] = st
                continue
            target = os.path.realpath(entry.path)
            try:
                st = os.stat(target)
            except OSError:
                continue  # dangling: nothing to read, as before links were checked
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                continue  # `log -> /dev/null`: nothing a snapshot would copy, wherever it points
            refusal = _link_refusal(target, st, allowed, closed, ancestors)
            if refusal:
                scan.refused.append(f"{rel} -> {_readlink(entry.path)} ({refusal})")
            elif stat.S_ISDIR(st.st_mode):
                walk(target, rel + "/", ancestors + (target,))
            elif stat.S_ISREG(st.st_mode):
                scan.files[rel] = st

    walk(str(root), "", (root_real,))
    scan.files = dict(sorted(scan.files.items()))
    return scan


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _link_refusal(target: str, st: os.stat_result, allowed: list[str], closed: list[str],
                  ancestors: tuple[str, ...]) -> str:
    """Why a project symlink to `target` is not followed, or ""."""
    if any(_inside(target, folder) for folder in closed):
        return "into the workspace's state folder"
    if not any(_inside(target, folder) for folder in allowed):
        return "outside the project"
    if stat.S_ISDIR(st.st_mode) and any(_inside(folder, target) for folder in ancestors):
        return "a loop: it leads back to a folder that contains it"
    return ""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


class FileVanished(WorkbenchError):
    """A file was deleted between being listed and being read."""


def read_hash_cache(state_dir: Path) -> dict[str, list]:
    """The workspace's stat cache: {absolute path: [size, mtime_ns, ctime_ns, inode, sha256]}.

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


def _signature(st: os.stat_result) -> list[int]:
    """What must be unchanged for a cached hash to stand. The ctime is there because a user
    can set the mtime back (`touch -d`, `os.utime`) but not the ctime, which every write and
    every utime moves on."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _cached_sha(cache: dict[str, list], key: str, st: os.stat_result) -> str | None:
    cached = cache.get(key)
    if isinstance(cached, list) and len(cached) == 5 and cached[:4] == _signature(st):
        return cached[4]
    return None  # unknown, changed, or an entry in an older format: read the file


def _trustworthy(st: os.stat_result) -> bool:
    """git's racy-entry rule: a file changed (mtime or ctime) within the racy window of now may
    change again within the same timestamp tick without its stat changing, so its hash is not
    cached and it is read again next time."""
    return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_WINDOW_NS


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
        cached = _cached_sha(self._cache, key, st)
        if cached and self.object_path(cached).exists():
            return FileEntry(key, cached, st.st_size)
        sha = self._copy_in(source)
        if _trustworthy(st):
            self._cache[key] = _signature(st) + [sha]
            self._dirty = True
        return FileEntry(key, sha, st.st_size)

    def _copy_in(self, source: Path) -> str:
        """Copy while hashing, so the recorded hash is of exactly the bytes kept."""
        self.objects.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            try:
                # The scan decided this path may be followed; still, a FIFO swapped in since
                # must be refused, not waited on.
                src, before = open_regular(source, follow=True)
            except FileNotFoundError:
                raise FileVanished(f"{source} disappeared while it was being snapshotted") from None
            except OSError as exc:
                raise WorkbenchError(f"cannot read {source}: {exc.strerror or exc}") from None
            fd, tmp_name = tempfile.mkstemp(dir=self.objects, prefix=".incoming-")
            digest = hashlib.sha256()
            try:
                with os.fdopen(fd, "wb") as dst:
                    def keep(chunk: bytes) -> None:
                        digest.update(chunk)
                        dst.write(chunk)
                    _read_fd(src, before.st_size + 1, keep)  # one byte more shows a file still growing
            except OSError as exc:
                Path(tmp_name).unlink(missing_ok=True)
                raise _disk_error(exc, self.objects) from None
            finally:
                os.close(src)
            try:
                after = os.stat(source)
            except FileNotFoundError:
                Path(tmp_name).unlink(missing_ok=True)
                raise FileVanished(f"{source} disappeared while it was being snapshotted") from None
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
             overrides: dict[str, Path] | None = None, external: tuple[str, ...] = ()) -> Snapshot:
        """Snapshot the project; an identical file set reuses the existing snapshot folder.

        `overrides` maps project-relative paths to files whose content the snapshot holds there
        instead (a drift retrain's training data): the project itself is never written.
        `external`: the manifest's `[project] external_links`, the only symlinks that may lead
        outside the project; any other such link is a ProjectLinkError naming it."""
        scan = survey_project(project_dir, ignores, external, forbidden=(self.state_dir,))
        if scan.refused:
            raise ProjectLinkError(_refusal_message(project_dir, scan.refused))
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
        return Snapshot(snap_id, path, files)

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
            raise _disk_error(exc, path) from None


def _refusal_message(project_dir: Path, refused: list[str]) -> str:
    shown = "; ".join(refused[:3]) + (f"; and {len(refused) - 3} more" if len(refused) > 3 else "")
    first = refused[0].split(" -> ")[0]
    return (f"{project_dir}: symlink {shown}. A snapshot holds only the project's own files; if the "
            f"data is meant to live elsewhere, list the link in workbench.toml: "
            f"[project] external_links = [\"{first}\"]")


def hash_file(path: Path) -> str:
    """sha256 of a regular file (following a symlink to one); NotRegularFile for a FIFO or
    device, which would otherwise block or never end. Reads no more than the size it saw."""
    fd, st = open_regular(path, follow=True)
    digest = hashlib.sha256()
    try:
        _read_fd(fd, st.st_size, digest.update)
    finally:
        os.close(fd)
    return digest.hexdigest()


@dataclass
class OutputTree:
    files: dict[str, FileEntry]
    """The regular files, by path relative to the folder."""
    problems: list[str]
    """Everything that is not a regular file of its own (named), or over a cap."""

    @property
    def digest(self) -> str:
        return tree_digest({p: f.sha256 for p, f in self.files.items()})


def read_outputs(root: Path, lock: bool = False) -> OutputTree:
    """Hash a stage's output folder without following anything in it.

    Symlinks (to files or folders), devices, FIFOs and sockets are reported, never opened, and
    so is a file with hard links outside the folder (it would change when they do). Reads are
    bounded by the sizes fstat saw and by OUTPUT_BYTES_CAP. `lock`: first make each file
    read-only (OUTPUT_FILE_MODE) and each folder closed (OUTPUT_DIR_MODE), owned by the
    workbench's user, so a process the stage left behind cannot change what is recorded."""
    return read_tree(root, lock=lock)


def read_tree(root: Path, lock: bool = False, shared_links: bool = False) -> OutputTree:
    """read_outputs; `shared_links` accepts files hard-linked elsewhere (a snapshot's objects)."""
    tree = OutputTree({}, [])
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return tree  # no folder, no outputs: declared ones are then missing
    except OSError as exc:
        tree.problems.append(f"the output folder {root} cannot be read ({exc.strerror or exc})")
        return tree
    walker = _TreeReader(tree, lock, shared_links)
    try:
        walker.folder(root_fd, "", 0)
    finally:
        os.close(root_fd)
    walker.check_links()
    tree.files = dict(sorted(tree.files.items()))
    return tree


class _TreeReader:
    """One pass over a folder through directory fds (openat), so a folder swapped for a
    symlink while it is read is not followed either."""

    def __init__(self, tree: OutputTree, lock: bool, shared_links: bool):
        self.tree, self.lock, self.shared_links = tree, lock, shared_links
        self.budget = OUTPUT_BYTES_CAP
        self.count = 0
        self.links: dict[tuple[int, int], tuple[int, list[str]]] = {}
        """(dev, inode) -> (st_nlink, the names it has in the folder)"""
        self.owner = (os.getuid(), os.getgid())

    def problem(self, text: str) -> None:
        self.tree.problems.append(text)

    def _lock(self, fd: int, mode: int) -> None:
        st = os.fstat(fd)
        if os.getuid() == 0 and (st.st_uid, st.st_gid) != self.owner:
            os.fchown(fd, *self.owner)  # written as `nobody` in a container: take it back
        os.fchmod(fd, mode)

    def folder(self, fd: int, prefix: str, depth: int) -> None:
        if depth > OUTPUT_DEPTH_CAP:
            self.problem(f"{prefix or '.'} is nested more than {OUTPUT_DEPTH_CAP} folders deep")
            return
        if self.lock:
            try:
                self._lock(fd, OUTPUT_DIR_MODE)  # first, so nothing is added while it is read
            except OSError as exc:
                self.problem(f"cannot make {prefix or 'the output folder'} read-only: {exc.strerror or exc}")
        try:
            names = sorted(os.listdir(fd))
        except OSError as exc:
            self.problem(f"cannot list {prefix or 'the output folder'}: {exc.strerror or exc}")
            return
        for name in names:
            rel = prefix + name
            self.count += 1
            if self.count > OUTPUT_FILES_CAP:
                self.problem(f"more than {OUTPUT_FILES_CAP} files and folders; the rest were not read")
                return
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                try:
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError as exc:
                    self.problem(f"{rel} cannot be read ({exc.strerror or exc})")
                    continue
                try:
                    self.folder(sub, rel + "/", depth + 1)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode):
                self.file(fd, name, rel)
            elif stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(name, dir_fd=fd)
                except OSError:
                    target = "?"
                self.problem(f"{rel} is a symbolic link (to {target}); outputs must be regular files")
            else:
                self.problem(f"{rel} is {file_kind(st.st_mode)}; outputs must be regular files")

    def file(self, dir_fd: int, name: str, rel: str) -> None:
        try:
            fd, st = open_regular(name, dir_fd=dir_fd)
        except NotRegularFile:
            self.problem(f"{rel} was replaced by something that is not a regular file while it was read")
            return
        except OSError as exc:
            self.problem(f"{rel} cannot be read ({exc.strerror or exc})")
            return
        try:
            if self.lock:
                self._lock(fd, OUTPUT_FILE_MODE)
            if st.st_size > self.budget:
                self.problem(f"{rel} ({st.st_size} bytes) takes the outputs over the "
                             f"{OUTPUT_BYTES_CAP // 1024**3} GiB the workbench reads")
                return
            digest = hashlib.sha256()
            size = _read_fd(fd, st.st_size, digest.update)
            self.budget -= size
        except OSError as exc:
            self.problem(f"{rel} cannot be read ({exc.strerror or exc})")
            return
        finally:
            os.close(fd)
        self.tree.files[rel] = FileEntry(rel, digest.hexdigest(), size)
        if st.st_nlink > 1:
            self.links.setdefault((st.st_dev, st.st_ino), (st.st_nlink, []))[1].append(rel)

    def check_links(self) -> None:
        """A hard link is refused unless all its names are in the folder: the others could be
        anywhere the stage could reach, and would change the recorded file with theirs."""
        if self.shared_links:
            return
        for nlink, names in self.links.values():
            if len(names) < nlink:
                for rel in names:
                    self.tree.files.pop(rel, None)
                self.problem(f"{names[0]} is a hard link to a file outside the output folder ({nlink} links); "
                             "outputs must be files of their own")


class StatHasher:
    """sha256 of files, remembering each file's (size, mtime, ctime, inode) so an untouched
    file is read once. Seed it with `read_hash_cache` to start from what snapshots already hashed."""

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
        cached = _cached_sha(self._cache, key, st)
        if cached:
            return cached
        try:
            sha = hash_file(path)
        except (FileNotFoundError, NotRegularFile):
            return None
        except OSError as exc:
            # Unreadable (permissions, I/O error): a digest no content has, so it counts as a change.
            return f"unreadable: {exc.strerror or exc}"
        if _trustworthy(st):
            self._cache[key] = _signature(st) + [sha]
        return sha

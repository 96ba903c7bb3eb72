"""The content-addressed object store (`.workbench/objects/ab/cdef...`) snapshots are made of.

Each file is read once: its bytes are hashed as they are copied in (or, where the file system
has reflinks, the file is cloned without reading it and the clone, which no one else can
write, is hashed), then renamed to its sha256 name and kept read-only. The stat cache
(hash_cache) lets an unchanged 1 GB data file cost one `stat` per run, not a read, and the
watcher ingests a changed file through the same path (IngestingHasher), so the run that its
change starts finds the object and the hash and reads nothing again.

A file written while it is copied is caught by its stat (size, mtime, ctime, inode) taken
before and after, and copied again; its digest is never recorded for a stat it did not have.
Why clone first, then hash the clone, rather than hash the source and clone: the clone is one
consistent state of the file (taken under its inode lock), so the digest is always that of
exactly the bytes kept, even if the source is written while it is hashed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.adapters.disk_writes import disk_error
from workbench.adapters.file_clone import clone_file
from workbench.adapters.hash_cache import (
    StatHasher, cached_sha, file_system_type, merge_hash_cache, read_hash_cache, remember, stat_signature,
)
from workbench.adapters.regular_files import FileEntry, NotRegularFile, open_regular
from workbench.core.errors import WorkbenchError

COPY_BUFFER = 1024 * 1024
"""Bytes per read. Measured on the development machine (1 GB from the page cache to ext4):
1 MiB copies and hashes at the speed of hashing alone, 4 MiB is up to twice as slow (a buffer
that no longer fits the CPU's cache is fetched from memory twice, to hash it and to write it),
and a second thread writing while the first hashes gained nothing on two busy cores. hashlib
and os.write release the GIL for a buffer this size, so the TUI's threads run meanwhile."""


class FileVanished(WorkbenchError):
    """A file was deleted between being listed and being read."""


@dataclass(frozen=True)
class _Copied:
    sha256: str
    stat: os.stat_result
    """The file's stat before and after it was copied (the two were equal)."""
    seen_at_ns: int
    """When that stat was first taken: the racy window counts from here (hash_cache.trustworthy)."""


class ObjectStore:
    """Content-addressed, read-only copies of file contents, with a stat -> sha256 cache."""

    def __init__(self, state_dir: Path):
        self.objects = state_dir / "objects"
        self.cache_path = state_dir / "hash-cache.json"
        self._cache: dict[str, list] = read_hash_cache(state_dir)
        self._updates: dict[str, list] = {}
        """Entries this store added since it read the cache file: what save_cache merges in."""

    def object_path(self, sha: str) -> Path:
        return self.objects / sha[:2] / sha[2:]

    def ingest(self, source: Path, st: os.stat_result) -> FileEntry:
        """Ensure the file's content is in the store; read it only when its stat changed."""
        key = str(source)
        cached = cached_sha(self._cache, key, st)
        if cached and self.object_path(cached).exists():
            return FileEntry(key, cached, st.st_size)
        copied = self._copy_in(source)
        if remember(self._cache, key, copied.stat, copied.sha256, copied.seen_at_ns):
            self._updates[key] = self._cache[key]
        return FileEntry(key, copied.sha256, copied.stat.st_size)

    def _copy_in(self, source: Path) -> _Copied:
        """Copy (or clone) and hash in one read, so the recorded hash is of exactly the bytes kept."""
        self.objects.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            seen_at = time.time_ns()
            try:
                # The scan decided this path may be followed; still, a FIFO swapped in since
                # must be refused, not waited on.
                src, before = open_regular(source, follow=True)
            except FileNotFoundError:
                raise FileVanished(f"{source} disappeared while it was being snapshotted") from None
            except OSError as exc:
                raise WorkbenchError(f"cannot read {source}: {exc.strerror or exc}") from None
            try:
                sha = self._fill(src, before, source)
            finally:
                os.close(src)
            if sha is not None:
                return _Copied(sha, before, seen_at)
        raise WorkbenchError(f"{source} kept changing while it was being snapshotted")

    def _fill(self, src: int, before: os.stat_result, source: Path) -> str | None:
        """Put the content of `src` in the store under its sha256; None when the file changed
        meanwhile (nothing is kept, the caller tries again)."""
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self.objects, prefix=".incoming-")
        except OSError as exc:
            raise disk_error(exc, self.objects) from None
        tmp = Path(tmp_name)
        try:
            try:
                if clone_file(src, fd):
                    # No byte read yet. The clone is one state of the file: the one `before`
                    # describes if its stat did not move around the clone. Hashing it reads only
                    # our own copy, so a write to the source meanwhile changes nothing here.
                    sha = _hash_fd(fd) if _unchanged(before, os.fstat(src)) else None
                else:
                    preallocated = _preallocate(fd, before.st_size)
                    # One byte more than fstat saw shows a file still growing.
                    sha, copied = _copy_hashing(src, fd, before.st_size + 1)
                    if preallocated and copied < before.st_size:
                        os.ftruncate(fd, copied)  # shrunk meanwhile: no allocated zeros after what was hashed
                    sha = sha if _unchanged(before, _stat_path(source)) else None
            finally:
                os.close(fd)
            if sha is None:
                tmp.unlink(missing_ok=True)  # written to (or replaced) while we copied: again
                return None
            target = self.object_path(sha)
            if target.exists():
                tmp.unlink()
            else:
                target.parent.mkdir(exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, target)
            return sha
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise disk_error(exc, self.objects) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def save_cache(self) -> None:
        if not self._updates:
            return
        merge_hash_cache(self.cache_path, self._updates)
        self._updates = {}


INGEST_FROM = 1024 * 1024
"""The size from which the watcher ingests a changed file rather than only hashing it."""


class IngestingHasher:
    """StatHasher's contract for the watcher (a file's sha256; None when it is not there or not
    a regular file), except that a regular file of INGEST_FROM bytes or more that it has to read
    is ingested into the object store as it is hashed, and `save` puts its hash in the
    workspace's cache: the run the change starts then finds both, and reads nothing again.

    A smaller file is only hashed, as before: reading it twice costs less than making its object
    on the watcher's thread (a burst of 1,000 new small files cost the watcher 350 ms of CPU
    instead of 70 ms), and the run's snapshot makes it anyway. A symlink is only hashed too (the
    snapshot's survey decides whether a link is followed), and so is a file the store cannot
    take (a full disk): the run reports that."""

    def __init__(self, state_dir: Path):
        self.objects = ObjectStore(state_dir)
        self._plain = StatHasher(self.objects._cache)

    def digest(self, path: Path) -> str | None:
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return self._plain.digest(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size < INGEST_FROM:
            return self._plain.digest(path)
        try:
            entry = self.objects.ingest(path, st)
        except (FileVanished, NotRegularFile):
            return None
        except WorkbenchError:
            return self._plain.digest(path)
        return entry.sha256

    def save(self) -> None:
        """Write what digest learnt to the workspace's cache: once per change, not per file (a
        burst of 1,000 new files is one write), before the run the change starts reads it."""
        try:
            self.objects.save_cache()
        except WorkbenchError:
            pass  # the cache is an optimisation: the run reads the files again


def _unchanged(before: os.stat_result, after: os.stat_result) -> bool:
    return stat_signature(before) == stat_signature(after)


def _stat_path(source: Path) -> os.stat_result:
    try:
        return os.stat(source)
    except FileNotFoundError:
        raise FileVanished(f"{source} disappeared while it was being snapshotted") from None


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


def _hash_fd(fd: int) -> str:
    """sha256 of a file from its start (our own clone: no one else can write it)."""
    digest = hashlib.sha256()
    buffer = bytearray(COPY_BUFFER)
    view = memoryview(buffer)
    offset = 0
    while n := os.preadv(fd, [buffer], offset):
        digest.update(view[:n])
        offset += n
    return digest.hexdigest()


PREALLOCATING_FILE_SYSTEMS = frozenset({"ext4", "xfs", "btrfs", "f2fs", "bcachefs", "tmpfs"})
"""Where fallocate reserves the blocks at once (elsewhere glibc would emulate it by writing)."""


def _preallocate(fd: int, size: int) -> bool:
    """Reserve the object's blocks before it is written (ext4's delayed allocation otherwise
    allocates as it goes: in one interleaved set of 1 GB copies, medians of 2.4 s appended and
    0.9 s preallocated), and a full disk fails here, before any byte is copied. Whether it did."""
    if size < COPY_BUFFER or file_system_type(os.fstat(fd).st_dev) not in PREALLOCATING_FILE_SYSTEMS:
        return False
    os.posix_fallocate(fd, 0, size)
    return True


def _copy_hashing(src: int, dst: int, limit: int) -> tuple[str, int]:
    """Copy at most `limit` bytes of `src` into `dst`, hashing them as they pass: one read, and
    the bytes written are the bytes hashed, whatever happens to the source meanwhile. The
    sha256 and the number of bytes copied."""
    digest = hashlib.sha256()
    buffer = bytearray(min(COPY_BUFFER, limit))
    view = memoryview(buffer)
    done = 0
    while done < limit:
        n = os.readv(src, [view[:min(len(buffer), limit - done)]])
        if not n:
            break
        digest.update(view[:n])
        _write_all(dst, view[:n])
        done += n
    return digest.hexdigest(), done

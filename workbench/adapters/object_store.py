"""The content-addressed object store (`.workbench/objects/ab/cdef...`) snapshots are made of.

Each file is copied once, hashed as it is copied, and kept read-only; the stat cache
(hash_cache) lets an unchanged 1 GB data file cost one `stat` per run, not a read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from workbench.adapters.disk_writes import disk_error
from workbench.adapters.hash_cache import cached_sha, read_hash_cache, remember, write_hash_cache
from workbench.adapters.regular_files import FileEntry, open_regular, read_fd
from workbench.core.errors import WorkbenchError


class FileVanished(WorkbenchError):
    """A file was deleted between being listed and being read."""


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
        cached = cached_sha(self._cache, key, st)
        if cached and self.object_path(cached).exists():
            return FileEntry(key, cached, st.st_size)
        sha = self._copy_in(source)
        if remember(self._cache, key, st, sha):
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
                    read_fd(src, before.st_size + 1, keep)  # one byte more shows a file still growing
            except OSError as exc:
                Path(tmp_name).unlink(missing_ok=True)
                raise disk_error(exc, self.objects) from None
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
        write_hash_cache(self.cache_path, self._cache)
        self._dirty = False

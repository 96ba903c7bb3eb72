"""A cluster worker's own content-addressed cache of snapshot objects, and the folder manifests
that travel instead of folders.

A stage's folders (its snapshot and its upstream outputs) are sent as manifests: relative path
-> sha256. The worker answers which hashes its cache lacks, receives only those, and builds the
folders from its cache by hard links (read-only objects, as in the workspace's object store), so
a file that did not change since any earlier stage on that worker is never sent again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

CACHE_VARIABLE = "WORKBENCH_WORKER_CACHE"
"""Where a worker keeps its objects; default: a folder in the Dask worker's local directory."""
CACHE_LIMIT_VARIABLE = "WORKBENCH_WORKER_CACHE_MB"
"""The most a worker's object cache may hold (MB, default 10240): past it, the objects used
longest ago are removed after a stage."""
DEFAULT_CACHE_LIMIT_MB = 10240

Manifest = dict[str, str]
"""Relative path (forward slashes) -> sha256 of its bytes."""


def folder_manifest(folder: Path, memo: dict[tuple[int, int, int, int], str] | None = None) -> Manifest:
    """Hash every regular file under `folder` (never a link). `memo` maps a file's (device,
    inode, size, mtime) to its hash: the client's snapshots and recorded outputs are hard links
    to read-only objects, so a file seen on an earlier stage is not read again."""
    manifest: Manifest = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if memo is None:
            manifest[rel] = file_sha(path)
            continue
        st = path.stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        sha = memo.get(key)
        if sha is None:
            sha = memo[key] = file_sha(path)
        manifest[rel] = sha
    return manifest


def file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


class ObjectCache:
    """Objects by sha256 under one folder: `ab/cdef...`, read-only once written."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha[2:]

    def missing(self, shas: set[str]) -> set[str]:
        return {sha for sha in shas if not self.path(sha).exists()}

    def put(self, sha: str, data: bytes) -> None:
        """Write an object atomically, after checking its bytes are what its name says."""
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"object {sha[:12]} arrived with other bytes than its hash")
        target = self.path(sha)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".in-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)

    def put_file(self, source: Path) -> str:
        """Keep a file's bytes (a stage's output) and return its hash."""
        sha = file_sha(source)
        if not self.path(sha).exists():
            self.put(sha, source.read_bytes())
        return sha

    def read(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def materialize(self, manifest: Manifest, dest: Path) -> None:
        """Build a folder from cached objects: hard links where the file system allows. Each
        object's mtime says when a stage last used it (what `trim` keeps)."""
        for rel, sha in manifest.items():
            os.utime(self.path(sha))
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(self.path(sha), target)
            except OSError:
                shutil.copyfile(self.path(sha), target)

    def trim(self, limit_bytes: int) -> tuple[int, int]:
        """Remove the objects used longest ago until the cache holds at most `limit_bytes`;
        return (objects removed, bytes freed). A stage's folder holds hard links, so removing an
        object a running stage uses leaves its file intact; the next stage that needs it gets it
        sent again."""
        entries = []
        for path in self.root.glob("??/*"):
            try:
                info = path.stat()
            except FileNotFoundError:  # another stage's trim took it
                continue
            entries.append((info.st_mtime, info.st_size, path))
        total = sum(size for _mtime, size, _path in entries)
        removed = freed = 0
        for _mtime, size, path in sorted(entries):
            if total - freed <= limit_bytes:
                break
            path.unlink(missing_ok=True)
            removed, freed = removed + 1, freed + size
        return removed, freed


def cache_limit_bytes() -> int:
    raw = os.environ.get(CACHE_LIMIT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_CACHE_LIMIT_MB * 1024 * 1024
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0:
        raise ValueError(f"${CACHE_LIMIT_VARIABLE} = {raw!r} on this worker: expected a size in MB, such as 10240")
    return int(megabytes * 1024 * 1024)

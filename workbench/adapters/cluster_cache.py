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

Manifest = dict[str, str]
"""Relative path (forward slashes) -> sha256 of its bytes."""


def folder_manifest(folder: Path) -> Manifest:
    """Hash every regular file under `folder` (snapshots are small links to objects; hashing
    here keeps the runner independent of how the folder was made)."""
    manifest: Manifest = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            manifest[path.relative_to(folder).as_posix()] = file_sha(path)
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
        """Build a folder from cached objects: hard links where the file system allows."""
        for rel, sha in manifest.items():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(self.path(sha), target)
            except OSError:
                shutil.copyfile(self.path(sha), target)

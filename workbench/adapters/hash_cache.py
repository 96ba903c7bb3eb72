"""The workspace's stat -> sha256 cache, so an unchanged file is hashed once, not on every run.

A file's cached hash stands while its size, mtime, ctime and inode are unchanged, and is
recorded only for a file that has not changed within the racy window (git's rule).
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

from workbench.adapters.disk_writes import disk_error
from workbench.adapters.regular_files import NotRegularFile, hash_file

# A file modified this recently may be modified again within the same mtime tick; its stat
# signature is not trusted for caching (git calls this the "racy" case).
RACY_WINDOW_NS = 2_000_000_000


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


def stat_signature(st: os.stat_result) -> list[int]:
    """What must be unchanged for a cached hash to stand. The ctime is there because a user
    can set the mtime back (`touch -d`, `os.utime`) but not the ctime, which every write and
    every utime moves on."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def cached_sha(cache: dict[str, list], key: str, st: os.stat_result) -> str | None:
    cached = cache.get(key)
    if isinstance(cached, list) and len(cached) == 5 and cached[:4] == stat_signature(st):
        return cached[4]
    return None  # unknown, changed, or an entry in an older format: read the file


def trustworthy(st: os.stat_result) -> bool:
    """git's racy-entry rule: a file changed (mtime or ctime) within the racy window of now may
    change again within the same timestamp tick without its stat changing, so its hash is not
    cached and it is read again next time."""
    return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_WINDOW_NS


def remember(cache: dict[str, list], key: str, st: os.stat_result, sha: str) -> bool:
    """Cache `sha` for the file `st` describes, unless its stat cannot be trusted yet; whether it did."""
    if not trustworthy(st):
        return False
    cache[key] = stat_signature(st) + [sha]
    return True


def write_hash_cache(cache_path: Path, cache: dict[str, list]) -> None:
    """Replace the cache file in one rename, keyed as read_hash_cache reads it."""
    # Runs of two watched projects save from two threads of one process.
    tmp = cache_path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(_portable_cache(cache, cache_path.parent.parent)))
        os.replace(tmp, cache_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, cache_path) from None


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
        cached = cached_sha(self._cache, key, st)
        if cached:
            return cached
        try:
            sha = hash_file(path)
        except (FileNotFoundError, NotRegularFile):
            return None
        except OSError as exc:
            # Unreadable (permissions, I/O error): a digest no content has, so it counts as a change.
            return f"unreadable: {exc.strerror or exc}"
        remember(self._cache, key, st, sha)
        return sha

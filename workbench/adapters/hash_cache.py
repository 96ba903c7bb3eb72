"""The workspace's stat -> sha256 cache, so an unchanged file is hashed once, not on every run.

A file's cached hash stands while its size, mtime, ctime and inode are unchanged, and is
recorded only for a file that had not changed within the racy window of the moment its stat
was taken, before it was read (git's rule). The window is the file system's timestamp tick: on
a local Linux file system with nanosecond timestamps (ext4, XFS, btrfs, tmpfs, overlayfs) that
is the kernel's clock tick, a few milliseconds, so a window of 100 ms is safe there; elsewhere
(a network file system, whose timestamps come from another machine's clock, or one with
whole-second timestamps) it stays two seconds. This is what lets the watcher's hash of a data
file just saved be the one the run's snapshot uses: the watcher reads it after the quiet period
(300 ms by default), outside the local window.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from functools import lru_cache
from pathlib import Path

from workbench.adapters.disk_writes import disk_error
from workbench.adapters.regular_files import NotRegularFile, hash_file

# A file modified this recently may be modified again within the same mtime tick; its stat
# signature is not trusted for caching (git calls this the "racy" case).
RACY_WINDOW_NS = 2_000_000_000
LOCAL_RACY_WINDOW_NS = 100_000_000
"""The window on a local file system with fine timestamps: ten ticks of a HZ=100 kernel."""
FINE_TIMESTAMP_FILE_SYSTEMS = frozenset({"ext4", "xfs", "btrfs", "tmpfs", "overlay", "f2fs", "bcachefs", "zfs"})
"""Local file systems whose timestamps are the kernel's own clock, in nanoseconds."""

_write_lock = threading.Lock()


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


def trustworthy(st: os.stat_result, seen_at_ns: int | None = None) -> bool:
    """git's racy-entry rule: a file changed (mtime or ctime) within the racy window of the
    moment `st` was taken (`seen_at_ns`, before the file was read; now if not given) may have
    changed again within the same timestamp tick without its stat changing, so its hash is not
    cached and it is read again next time."""
    now = time.time_ns() if seen_at_ns is None else seen_at_ns
    return now - max(st.st_mtime_ns, st.st_ctime_ns) > racy_window_ns(st)


def racy_window_ns(st: os.stat_result) -> int:
    """How recent a change is too recent to trust the stat of (see the module docstring)."""
    if file_system_type(st.st_dev) in FINE_TIMESTAMP_FILE_SYSTEMS:
        return min(RACY_WINDOW_NS, LOCAL_RACY_WINDOW_NS)
    return RACY_WINDOW_NS


@lru_cache(maxsize=64)
def file_system_type(device: int) -> str:
    """The type of the file system mounted from `device` ("" when /proc does not say)."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 2 and fields[2] == wanted and " - " in line:
                    return line.split(" - ", 1)[1].split()[0]
    except OSError:
        pass
    return ""


def remember(cache: dict[str, list], key: str, st: os.stat_result, sha: str,
             seen_at_ns: int | None = None) -> bool:
    """Cache `sha` for the file `st` describes (taken at `seen_at_ns`, before the read), unless
    its stat cannot be trusted yet; whether it did."""
    if not trustworthy(st, seen_at_ns):
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


def merge_hash_cache(cache_path: Path, updates: dict[str, list]) -> None:
    """Add `updates` to the cache file as it is now, not as it was when this process read it:
    the watcher records the hash of a file just saved while a run of the same workspace holds
    an older copy of the cache, and the run's save must not drop it (the next run would read
    the file again). Writers in one process take turns; between processes the last rename wins,
    which costs at most a read, never a wrong hash (an entry stands only for its own stat)."""
    if not updates:
        return
    with _write_lock:
        cache = read_hash_cache(cache_path.parent)
        cache.update(updates)
        write_hash_cache(cache_path, cache)


class StatHasher:
    """sha256 of files, remembering each file's (size, mtime, ctime, inode) so an untouched
    file is read once. Seed it with `read_hash_cache` to start from what snapshots already hashed."""

    def __init__(self, seed: dict[str, list] | None = None):
        self._cache: dict[str, list] = dict(seed or {})

    def digest(self, path: Path) -> str | None:
        """The file's sha256; None when it is not there or not a regular file."""
        seen_at = time.time_ns()
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
        remember(self._cache, key, st, sha, seen_at)
        return sha

    def save(self) -> None:
        """The hashers' common flush (object_store.IngestingHasher writes its cache to the
        workspace); this one's cache lives in memory only, so there is nothing to write."""

"""Issue 13, item 4: a big data file is read once, from its edit to the first stage's start.

The object store ingests a file in one read (copying while hashing, or cloning it where the
file system has reflinks and hashing the clone), catches a file written meanwhile, and the
watcher's ingest of a changed file is what the run's snapshot uses. Reads are counted with
rchar of /proc/self/io: the bytes this process passed through read() and pread(), page cache
hits included, so a second read of a file shows whether or not the disk was touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from workbench.adapters import file_clone, hash_cache, object_store
from workbench.adapters.object_store import COPY_BUFFER, IngestingHasher, ObjectStore
from workbench.adapters.snapshots import SnapshotStore
from workbench.core.errors import WorkbenchError

MiB = 1024 * 1024


def rchar() -> int:
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(COPY_BUFFER):
            digest.update(chunk)
    return digest.hexdigest()


def big_file(path: Path, size: int) -> Path:
    """A sparse file of `size` bytes with distinct data at a few places (quick to make, and a
    wrong offset or a dropped buffer changes its hash)."""
    with open(path, "wb") as fh:
        fh.truncate(size)
        for at in (0, size // 3, size // 2 + 12345, size - 4096):
            fh.seek(at)
            fh.write(os.urandom(4096))
    return path


def settle(path: Path) -> None:
    """Wait until the file's stat is outside the racy window, as a file saved a moment before
    the watcher's quiet period ends is: its hash may then be cached."""
    st = path.stat()
    window = hash_cache.racy_window_ns(st)
    wait = (max(st.st_mtime_ns, st.st_ctime_ns) + window - time.time_ns()) / 1e9 + 0.01
    if wait > 0:
        time.sleep(wait)


@pytest.mark.parametrize("size", [0, 1, COPY_BUFFER - 1, COPY_BUFFER, COPY_BUFFER + 1, 7 * COPY_BUFFER + 12345])
def test_an_ingested_object_holds_the_bytes_under_their_digest(tmp_path, size):
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(size))
    store = ObjectStore(tmp_path / "state")
    entry = store.ingest(source, source.stat())
    assert entry.sha256 == sha256_of(source) and entry.size == size
    kept = store.object_path(entry.sha256)
    assert kept.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o444
    assert not [p for p in store.objects.iterdir() if p.name.startswith(".incoming-")]


def test_a_file_of_hundreds_of_megabytes_is_ingested_in_one_read(tmp_path):
    source = big_file(tmp_path / "big.bin", 300 * MiB)
    expected = sha256_of(source)
    store = ObjectStore(tmp_path / "state")
    read_before = rchar()
    entry = store.ingest(source, source.stat())
    read = rchar() - read_before
    assert entry.sha256 == expected and entry.size == 300 * MiB
    assert sha256_of(store.object_path(entry.sha256)) == expected
    assert 300 * MiB <= read < 1.05 * 300 * MiB, f"read {read / MiB:.0f} MiB of a 300 MiB file"


def test_the_watchers_hash_is_the_snapshots_one_read(tmp_path):
    """The watcher's hash of a changed file, then the run's snapshot: one read of the file in
    all (before, the watcher hashed it and the snapshot copied it again, 2.0 times)."""
    project = tmp_path / "big"
    (project / "data").mkdir(parents=True)
    data = big_file(project / "data" / "big.bin", 64 * MiB)
    (project / "train.py").write_text("print('fit')\n")
    state = tmp_path / ".workbench"
    state.mkdir()
    settle(data)
    read_before = rchar()
    hasher = IngestingHasher(state)
    digest = hasher.digest(data)  # the watch scheduler's hash of the change
    hasher.save()
    snapshot = SnapshotStore(state).take(project, ())  # what the run it starts snapshots
    read = rchar() - read_before
    assert digest == snapshot.files["data/big.bin"].sha256 == sha256_of(data)
    assert read < 1.05 * 64 * MiB, f"read {read / (64 * MiB):.2f} times"
    # and the snapshot holds the bytes, hard-linked to the object
    assert sha256_of(snapshot.path / "data" / "big.bin") == digest


def test_a_file_written_during_the_copy_is_copied_again_and_never_cached_wrong(tmp_path, monkeypatch):
    source = big_file(tmp_path / "data.bin", 24 * MiB)
    old = time.time() - 60
    os.utime(source, (old, old))
    first_stat = source.stat()
    real_copy = object_store._copy_hashing
    calls = []

    def copy_while_someone_writes(src, dst, limit):
        calls.append(limit)
        if len(calls) == 1:  # the editor saves in the middle of the first copy
            with open(source, "r+b") as fh:
                fh.seek(5 * MiB)
                fh.write(b"edited")
        return real_copy(src, dst, limit)

    monkeypatch.setattr(object_store, "_copy_hashing", copy_while_someone_writes)
    monkeypatch.setattr(object_store, "clone_file", lambda src, dst: False)
    store = ObjectStore(tmp_path / "state")
    entry = store.ingest(source, first_stat)
    assert len(calls) == 2, "the changed file was copied again"
    assert entry.sha256 == sha256_of(source)
    assert store.object_path(entry.sha256).read_bytes() == source.read_bytes()
    objects = [p for p in store.objects.rglob("*") if p.is_file()]
    assert objects == [store.object_path(entry.sha256)], "nothing kept of the copy that raced"
    settle(source)
    store.save_cache()
    cached = hash_cache.read_hash_cache(tmp_path / "state")
    # The digest is cached, if at all, for the stat the file had when it was copied, not for
    # the one the caller saw before the edit.
    assert hash_cache.cached_sha(cached, str(source), first_stat) is None
    assert cached.get(str(source), [None] * 5)[4] in (None, entry.sha256)


def test_a_file_that_never_stops_changing_is_refused(tmp_path, monkeypatch):
    source = big_file(tmp_path / "log.bin", 2 * MiB)
    real_copy = object_store._copy_hashing

    def copy_while_it_grows(src, dst, limit):
        with open(source, "ab") as fh:
            fh.write(b"more\n")
        return real_copy(src, dst, limit)

    monkeypatch.setattr(object_store, "_copy_hashing", copy_while_it_grows)
    monkeypatch.setattr(object_store, "clone_file", lambda src, dst: False)
    store = ObjectStore(tmp_path / "state")
    with pytest.raises(WorkbenchError, match="kept changing while it was being snapshotted"):
        store.ingest(source, source.stat())
    assert not [p for p in store.objects.rglob("*") if p.is_file()]


def test_a_full_disk_fails_the_ingest_and_leaves_no_temp_file(tmp_path, monkeypatch):
    import errno

    source = big_file(tmp_path / "big.bin", 3 * COPY_BUFFER)
    written = []
    real_write = os.write

    def full_after_a_buffer(fd, data):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(object_store.os, "write", full_after_a_buffer)
    monkeypatch.setattr(object_store, "clone_file", lambda src, dst: False)
    store = ObjectStore(tmp_path / "state")
    with pytest.raises(WorkbenchError, match="disk full while writing .*objects"):
        store.ingest(source, source.stat())
    assert written and not list(store.objects.iterdir())


def test_the_watcher_only_hashes_a_symlink_or_a_small_file_and_refuses_what_is_not_a_regular_file(tmp_path):
    state = tmp_path / ".workbench"
    state.mkdir()
    target = tmp_path / "elsewhere.csv"
    target.write_text("a,b\n1,2\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    os.mkfifo(tmp_path / "fifo")
    hasher = IngestingHasher(state)
    assert hasher.digest(link) == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert not (state / "objects").exists() or not any((state / "objects").rglob("*")), \
        "a link's target is not copied into the store by the watcher"
    assert hasher.digest(tmp_path / "fifo") is None
    assert hasher.digest(tmp_path / "missing") is None
    small = tmp_path / "params.toml"  # a small file is hashed on the watcher's thread, not copied
    small.write_text("[train]\nlr = 0.1\n")
    assert hasher.digest(small) == hashlib.sha256(b"[train]\nlr = 0.1\n").hexdigest()
    assert not (state / "objects").exists() or not any((state / "objects").rglob("*"))


def test_the_cache_file_keeps_what_another_store_saved_meanwhile(tmp_path):
    """The watcher saves the hash of a file just edited while a run's store holds an older copy
    of the cache; the run's save must not drop it."""
    state = tmp_path / "state"
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("a\n")
    b.write_text("b\n")
    settle(a)
    settle(b)
    runs_store, watchers_store = ObjectStore(state), ObjectStore(state)
    watchers_store.ingest(a, a.stat())
    watchers_store.save_cache()
    runs_store.ingest(b, b.stat())
    runs_store.save_cache()
    cache = hash_cache.read_hash_cache(state)
    assert hash_cache.cached_sha(cache, str(a), a.stat()) == hashlib.sha256(b"a\n").hexdigest()
    assert hash_cache.cached_sha(cache, str(b), b.stat()) == hashlib.sha256(b"b\n").hexdigest()


def test_the_racy_window_counts_from_the_stat_before_the_read(tmp_path):
    """A file read for longer than the window, right after it was written, is not cached: a
    write in the same timestamp tick as its last one would not show in its stat."""
    path = tmp_path / "data.csv"
    path.write_text("x\n")
    st = path.stat()
    seen_at = time.time_ns()
    time.sleep(hash_cache.racy_window_ns(st) / 1e9 + 0.02)  # a long read
    assert not hash_cache.trustworthy(st, seen_at)
    assert hash_cache.trustworthy(st)  # what the rule said before: after the read


# -- reflinks --------------------------------------------------------------------------------

def _clones_here(folder: Path) -> bool:
    a, b = folder / ".clone-probe-a", folder / ".clone-probe-b"
    a.write_bytes(b"probe")
    try:
        with open(a, "rb") as src, open(b, "wb") as dst:
            return file_clone.clone_file(src.fileno(), dst.fileno())
    finally:
        a.unlink(missing_ok=True)
        b.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def reflink_dir(tmp_path_factory):
    """A folder on a file system with reflinks: the temp folder's own if it has them, else a
    small XFS (reflink=1) on a loop device, made and mounted here (as root, with mkfs.xfs)."""
    base = tmp_path_factory.mktemp("reflink")
    if _clones_here(base):
        yield base
        return
    if os.geteuid() != 0 or not shutil.which("mkfs.xfs") or not Path("/dev/loop-control").exists():
        pytest.skip("no reflink file system: the temp folder's has no FICLONE and an XFS image "
                    "cannot be mounted here (needs root, mkfs.xfs from xfsprogs, and loop devices)")
    image, mount = base / "xfs.img", base / "mnt"
    mount.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(512 * MiB)
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True, text=True)
    mounted = made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True).returncode == 0
    if not mounted:
        pytest.skip(f"no reflink file system: mounting an XFS image failed ({made.stderr.strip() or 'mount'})")
    try:
        assert _clones_here(mount), "XFS made with reflink=1 does not clone"
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_on_a_reflink_file_system_the_source_is_cloned_not_read(reflink_dir, monkeypatch):
    project = reflink_dir / "project"
    project.mkdir(exist_ok=True)
    source = big_file(project / "big.bin", 48 * MiB)
    copies = []
    real_copy = object_store._copy_hashing
    monkeypatch.setattr(object_store, "_copy_hashing", lambda *a: copies.append(a) or real_copy(*a))
    store = ObjectStore(reflink_dir / "state")
    read_before = rchar()
    entry = store.ingest(source, source.stat())
    read = rchar() - read_before
    assert copies == [], "cloned, not copied"
    assert read < 1.05 * 48 * MiB, "the clone is hashed once"
    kept = store.object_path(entry.sha256)
    assert entry.sha256 == sha256_of(source) == sha256_of(kept)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o444
    with open(source, "r+b") as fh:  # copy-on-write: the object keeps its bytes
        fh.write(b"changed after the snapshot")
    assert sha256_of(kept) == entry.sha256


def test_a_write_while_the_clone_is_hashed_does_not_touch_the_digest(reflink_dir, monkeypatch):
    """The clone is one state of the file: writing the source while the clone is hashed leaves
    the digest that of the state cloned (no second attempt is needed)."""
    project = reflink_dir / "project2"
    project.mkdir(exist_ok=True)
    source = big_file(project / "big.bin", 8 * MiB)
    expected = sha256_of(source)
    real_hash = object_store._hash_fd
    hashed = []

    def hash_while_someone_writes(fd):
        hashed.append(fd)
        with open(source, "r+b") as fh:
            fh.write(b"edited while hashed")
        return real_hash(fd)

    monkeypatch.setattr(object_store, "_hash_fd", hash_while_someone_writes)
    store = ObjectStore(reflink_dir / "state2")
    entry = store.ingest(source, source.stat())
    assert len(hashed) == 1 and entry.sha256 == expected
    assert sha256_of(store.object_path(entry.sha256)) == expected


# -- through the watch service and the pipeline ------------------------------------------------

BIG_MANIFEST = """
[project]
name = "big"

[data]
paths = [{data_paths}]

[stages.validate]
command = "python validate.py"
inputs = ["validate.py", "data/big.csv"]

[watch]
debounce_ms = {debounce_ms}
"""
VALIDATE = "import wb\nwb.log_metrics({'ok': 1})\n"


def big_project(root: Path, size: int, data_paths: str = "", debounce_ms: int = 150) -> Path:
    project = root / "big"
    (project / "data").mkdir(parents=True)
    (project / "workbench.toml").write_text(BIG_MANIFEST.format(data_paths=data_paths, debounce_ms=debounce_ms))
    (project / "validate.py").write_text(VALIDATE)
    block = b"".join(b"%d,%d.5,%d\n" % (i, i * 7 % 1000, i % 3) for i in range(20_000))
    with open(project / "data" / "big.csv", "wb") as fh:
        fh.write(b"id,x,label\n")
        while fh.tell() < size:
            fh.write(block)
    return project


class Recorder:
    """Events from the service's threads, each with rchar when it arrived."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[int, object]] = []

    def __call__(self, event) -> None:
        read = rchar()
        with self.cond:
            self.events.append((read, event))
            self.cond.notify_all()

    def wait_for(self, kind, since: int = 0, timeout: float = 30.0) -> tuple[int, object]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = next((e for e in self.events[since:] if isinstance(e[1], kind)), None)
                if found:
                    return found
                assert self.cond.wait(max(0.0, deadline - time.monotonic())), f"no {kind.__name__}"


@pytest.mark.slow
def test_an_edit_of_a_big_data_file_is_read_once_before_its_stage_starts(tmp_path):
    """Real watchdog, the local runner: from the in-place edit to StageStarted this process reads
    the 64 MiB file once (before: 2.0 times, the watcher's hash and the snapshot's copy)."""
    from workbench.core.events import RunFinished, StageStarted, WatchStarted
    from workbench.services.session import WorkbenchSession
    from workbench.services.watch import WatchService

    probe = tmp_path / "probe"
    probe.write_text("x")
    # The quiet period outlasts the racy window, as the default 300 ms does on a local disk.
    debounce_ms = max(150, hash_cache.racy_window_ns(probe.stat()) // 1_000_000 + 100)
    project = big_project(tmp_path, 64 * MiB, debounce_ms=debounce_ms)
    data = project / "data" / "big.csv"
    size = data.stat().st_size
    session = WorkbenchSession(tmp_path, runner="local")
    assert str(session.run("big").status) == "succeeded"
    events = Recorder()
    service = WatchService(session, events)
    try:
        service.watch("big")
        events.wait_for(WatchStarted)
        mark = len(events.events)
        read_before = rchar()
        with open(data, "r+b") as fh:  # same size: only the content says it changed
            fh.seek(size // 2)
            fh.write(b"9")
        read_at_stage, started = events.wait_for(StageStarted, since=mark)
        _, finished = events.wait_for(RunFinished, since=mark)
    finally:
        service.close()
    assert str(finished.record.status) == "succeeded", finished.record.reason
    times = (read_at_stage - read_before) / size
    assert 1.0 <= times < 1.3, f"the file was read {times:.2f} times before its stage started"
    inputs = {i.path: i.sha256 for i in finished.record.stages[0].inputs}
    assert inputs["data/big.csv"] == sha256_of(data)


def test_the_data_profile_does_not_hold_back_the_first_stage(tmp_path):
    """The lineage profile of a data file (DuckDB reading all of it) runs beside the stages: the
    first stage starts while it is still going, and the run records it when both are done."""
    from workbench.core.events import StageStarted
    from workbench.services.session import WorkbenchSession

    big_project(tmp_path, 1 * MiB, data_paths='"data/big.csv"')
    session = WorkbenchSession(tmp_path, runner="local")
    stage_started = threading.Event()
    seen_stage_first = []
    real_profile = session.store.profile_dataset

    def profile_once_a_stage_started(path, fingerprint):
        seen_stage_first.append(stage_started.wait(timeout=10))
        return real_profile(path, fingerprint)

    session.store.profile_dataset = profile_once_a_stage_started
    record = session.run("big", on_event=lambda e: isinstance(e, StageStarted) and stage_started.set())
    assert str(record.status) == "succeeded", record.reason
    assert seen_stage_first == [True], "the stage started before the profile was taken"
    assert [d.path for d in record.datasets] == ["data/big.csv"] and record.datasets[0].row_count > 0
    assert session.get_run(record.id).datasets[0].row_count == record.datasets[0].row_count

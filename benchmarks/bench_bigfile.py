"""Issue 13, item 4: a 1 GB data edit to the first stage's start, against sha256 of the file.

    python benchmarks/bench_bigfile.py [--size-mb 1024] [--repeats 3] [--runner docker|local]
                                       [--dir /tmp] [--debounce-ms 300]

A real project in a temp workspace (under --dir: put it on an XFS or btrfs file system to take
the reflink path) whose validate stage reads `data/big.csv`, a CSV of --size-mb listed in
`[data] paths` (so it is profiled into the lineage too). After one run and with the project
watched (real watchdog, a real warm Docker worker by default), each repeat edits one row in the
middle of the file in place (same size: only the content tells the change) and times, in
process (time.perf_counter), the last write returning to:

  - ChangeDetected: the quiet period, then the watcher deciding the content changed;
  - RunStarted: the run's snapshot taken (the file in the object store);
  - StageStarted: the environment checked, the data profile (if it is on the way), the plan;

and counts the bytes this process read meanwhile (rchar of /proc/self/io: every read() and
pread(), page cache hits included), in units of the file's size: how many times the file was
read before the stage started. The baseline is sha256 of the file on this disk: hashlib (the
better of 1 MiB and 4 MiB reads), and `sha256sum`. Then the parts alone: ingesting the file into an empty object
store, and profiling it. Figures are with the file in the page cache (the machine has the RAM
for it; dropping caches needs a privilege a container does not have), as after an edit.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("WORKBENCH_MLFLOW_SYNC", "off")  # a detached mlflow import would be noise

from workbench.adapters.hash_cache import file_system_type  # noqa: E402
from workbench.core.events import (  # noqa: E402
    ChangeDetected, RunFinished, RunStarted, StageStarted, WatchStarted,
)
from workbench.services.session import WorkbenchSession  # noqa: E402
from workbench.services.watch import WatchService  # noqa: E402

MANIFEST = """
[project]
name = "big"

[data]
paths = ["data/big.csv"]

[environment]
memory = "512m"
cpus = 1.0

[stages.validate]
command = "python validate.py"
inputs = ["validate.py", "data/big.csv"]

[watch]
debounce_ms = {debounce_ms}
"""
VALIDATE = """\
import wb
with open("data/big.csv") as fh:
    header = fh.readline().strip().split(",")
wb.log_metrics({"columns": len(header)})
"""
MiB = 1024 * 1024


def rchar() -> int:
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def write_csv(path: Path, size: int) -> None:
    """A CSV of about `size` bytes: a header and rows of an id and five numbers."""
    rng = random.Random(13)
    block = "".join(f"{rng.randrange(10**6)},{rng.random():.6f},{rng.random():.6f},{rng.randrange(100)},"
                    f"{rng.random():.6f}\n" for _ in range(20_000)).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"id,a,b,c,d\n")
        written = 0
        while written < size:
            fh.write(block)
            written += len(block)


def edit_middle_row(path: Path, i: int) -> None:
    """Overwrite the first digit of a row in place (a row of its own each time, so no edit brings
    back a content seen before): same size, new content."""
    with open(path, "r+b") as fh:
        fh.seek(os.path.getsize(path) // 2 + i * 4096)
        fh.readline()  # to the start of a row
        at = fh.tell()
        digit = fh.read(1)
        fh.seek(at)
        fh.write(str((int(digit) + 1) % 10).encode())


def sha256_figures(path: Path) -> tuple[float, float]:
    timings = []
    for buffer_size in (MiB, 4 * MiB):  # the better of the two
        started = time.perf_counter()
        digest = hashlib.sha256()
        buffer = bytearray(buffer_size)
        view = memoryview(buffer)
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buffer):
                digest.update(view[:n])
        timings.append(time.perf_counter() - started)
    hashlib_s = min(timings)
    started = time.perf_counter()
    subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)
    return hashlib_s, time.perf_counter() - started


class Sink:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[float, int, object]] = []

    def __call__(self, event) -> None:
        at, read = time.perf_counter(), rchar()
        with self.cond:
            self.events.append((at, read, event))
            self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.events)

    def wait_for(self, kind, since: int = 0, timeout: float = 300.0) -> tuple[float, int, object]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for found in self.events[since:]:
                    if isinstance(found[2], kind):
                        return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"timed out waiting for {kind.__name__}")
                self.cond.wait(left)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runner", default="docker", choices=["docker", "local"])
    parser.add_argument("--dir", default=None, help="where the temp workspace goes (default: the temp folder)")
    parser.add_argument("--debounce-ms", type=int, default=300)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wb-bench-bigfile-", dir=args.dir) as tmp:
        root = Path(tmp)
        project = root / "big"
        project.mkdir()
        (project / "workbench.toml").write_text(MANIFEST.format(debounce_ms=args.debounce_ms))
        (project / "validate.py").write_text(VALIDATE)
        data = project / "data" / "big.csv"
        write_csv(data, args.size_mb * MiB)
        size = data.stat().st_size
        kind = file_system_type(data.stat().st_dev) or "unknown file system"
        print(f"data file: {size / MiB:,.0f} MiB CSV in {root} ({kind})")

        hashlib_s, sha256sum_s = sha256_figures(data)
        print(f"baseline sha256 of the file: hashlib {hashlib_s:.2f} s ({size / MiB / hashlib_s:,.0f} MiB/s), "
              f"sha256sum {sha256sum_s:.2f} s ({size / MiB / sha256sum_s:,.0f} MiB/s)")

        session = WorkbenchSession(root, runner=args.runner)
        first = session.run("big")
        print(f"first run: {first.status} (the file ingested and profiled once)")
        sink = Sink()
        service = WatchService(session, sink)
        try:
            service.watch("big")
            sink.wait_for(WatchStarted)
            rows = []
            for i in range(args.repeats):
                time.sleep(2.5)  # the previous edit is outside the racy window, as a user's would be
                mark = sink.mark()
                read_before = rchar()
                edit_middle_row(data, i)
                written = time.perf_counter()
                detected, _, _ = sink.wait_for(ChangeDetected, since=mark)
                run_at, _, _ = sink.wait_for(RunStarted, since=mark)
                stage_at, stage_read, _ = sink.wait_for(StageStarted, since=mark)
                _, _, finished = sink.wait_for(RunFinished, since=mark)
                rows.append((detected - written, run_at - detected, stage_at - run_at, stage_at - written,
                             (stage_read - read_before) / size))
                print(f"  edit {i + 1}: stage started {stage_at - written:.2f} s after the edit "
                      f"(detected {detected - written:.2f}, snapshot {run_at - detected:.2f}, "
                      f"to the stage {stage_at - run_at:.2f}); the file read {rows[-1][4]:.2f} times; "
                      f"run {finished.record.status}")
        finally:
            service.close()

        med = [statistics.median(r[k] for r in rows) for k in range(5)]
        quiet = args.debounce_ms / 1000
        print(f"edit -> first StageStarted ({args.runner} runner, debounce {args.debounce_ms} ms, "
              f"median of {args.repeats}): {med[3]:.2f} s")
        print(f"  edit -> change detected {med[0]:.2f} s (quiet period {quiet:.2f} s + watcher hash); "
              f"-> RunStarted +{med[1]:.2f} s (snapshot); -> StageStarted +{med[2]:.2f} s "
              f"(environment, profile, plan)")
        print(f"  bytes read by the workbench process, edit -> stage start: {med[4]:.2f} x the file")
        print(f"  ratio (edit -> stage start, less the quiet period) / sha256 of the file: "
              f"{(med[3] - quiet) / hashlib_s:.2f} x hashlib, {(med[3] - quiet) / sha256sum_s:.2f} x sha256sum")

        parts(root, data, size)


def parts(root: Path, data: Path, size: int) -> None:
    """Each part of the path alone, on the same file."""
    from workbench.adapters.data_profile import profile_file
    from workbench.adapters.object_store import ObjectStore

    state = root / "parts-state"
    state.mkdir()
    store = ObjectStore(state)
    started = time.perf_counter()
    read_before = rchar()
    entry = store.ingest(data, os.stat(data))
    ingest_s = time.perf_counter() - started
    print(f"parts: ingest into an empty object store {ingest_s:.2f} s "
          f"({size / MiB / ingest_s:,.0f} MiB/s, the file read {(rchar() - read_before) / size:.2f} times)")
    started = time.perf_counter()
    profile_file(str(data), entry.sha256)
    print(f"       data profile (DuckDB, every column) {time.perf_counter() - started:.2f} s")
    shutil.rmtree(state)


if __name__ == "__main__":
    main()

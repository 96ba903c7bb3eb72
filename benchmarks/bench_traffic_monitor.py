"""The host side of served traffic on the example's rows: reading the log, cutting a batch,
live quality and totals, and the drift check of a traffic batch.

    python benchmarks/bench_traffic_monitor.py [--rows 100000] [--batch-rows 10000]

Writes `--rows` rows of the example (telco-churn, drawn by tools/make_batch.py --kind clean) as
logged requests of 10 rows each, in segments of 1,000 requests, with feedback for every request,
into a temporary workspace (no model: the drift check's reference is the data file as it is now),
then times, in this process:
  (a) the first ServingMonitor.tick: reading every segment into pending rows, and cutting the
      first batch of `--batch-rows` rows (CSV, written by DuckDB);
  (b) each later tick that cuts a batch (feedback segments read once, then remembered), then a
      tick with nothing new (what serving pays each second);
  (c) the background drift check of that batch (DriftService.check_batch, profile built);
  (d) live_quality and traffic_totals over the whole log;
and prints the log's size on disk and this process's peak resident memory.
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.traffic_segments import feedback_line, request_line, write_segment  # noqa: E402
from workbench.adapters.traffic_log import FEEDBACK, REQUESTS, log_bytes, traffic_dir  # noqa: E402
from workbench.services.live_quality import live_quality, traffic_totals  # noqa: E402
from workbench.services.serving import training_schema  # noqa: E402
from workbench.services.serving_monitor import ServingMonitor  # noqa: E402
from workbench.services.session import WorkbenchSession  # noqa: E402

EXAMPLE = REPO / "projects" / "telco-churn"
NOW = 1_700_000_000.0


def typed(text: str, kind: str):
    if kind != "number":
        return text
    if not text.strip():
        return None
    number = float(text)
    return int(number) if number.is_integer() else number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-traffic-"))
    try:
        project = root / "telco-churn"
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("incoming"))
        manifest = project / "workbench.toml"
        manifest.write_text(manifest.read_text() + f"\n[serving]\nbatch_rows = {args.batch_rows}\n")
        source = root / "rows.csv"
        subprocess.run([sys.executable, str(EXAMPLE / "tools" / "make_batch.py"), "--kind", "clean", "--labels",
                        "--rows", str(args.rows), "--out", str(source)], check=True)
        kinds = training_schema(EXAMPLE / "data" / "churn.csv", "churn")["columns"]
        with open(source, newline="") as fh:
            table = list(csv.DictReader(fh))
        session = WorkbenchSession(root, runner="local")
        folder = traffic_dir(session.workspace.state_dir, "telco-churn", "production")
        requests, feedback = [], []
        rng = random.Random(0)
        for i in range(0, len(table), 10):
            chunk = table[i:i + 10]
            request = request_line([{c: typed(r[c], kinds[c]) for c in kinds} for r in chunk],
                                   [rng.random() for _ in chunk], at=NOW + i / 100)
            requests.append(request)
            feedback.append(feedback_line(request, [r["churn"] for r in chunk]))
        for n, start in enumerate(range(0, len(requests), 1000)):
            write_segment(folder, REQUESTS, requests[start:start + 1000], opened_ms=1000 + n)
            write_segment(folder, FEEDBACK, feedback[start:start + 1000], opened_ms=1000 + n)
        size = log_bytes(folder.parent)

        monitor = ServingMonitor(session, "telco-churn")
        started = time.perf_counter()
        batch = monitor.tick(NOW)
        first = time.perf_counter() - started
        started = time.perf_counter()
        monitor.wait()
        check = time.perf_counter() - started
        cuts = []
        while True:
            started = time.perf_counter()
            cut = monitor.tick(NOW + 1)
            elapsed = time.perf_counter() - started
            if cut is None:
                idle = elapsed
                break
            cuts.append(elapsed)
            monitor.wait()
        started = time.perf_counter()
        quality = live_quality(session, "telco-churn")
        quality_s = time.perf_counter() - started
        started = time.perf_counter()
        totals = traffic_totals(session, "telco-churn", minutes=60, now=NOW + len(table) / 100)
        totals_s = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"log: {args.rows:,} rows in {len(requests):,} requests, {size / 2**20:.1f} MiB on disk")
        print(f"(a) first tick (read all, cut a {batch.rows:,}-row labelled={batch.labelled} batch): {first:.2f} s")
        print(f"(b) later cuts: {len(cuts)}, median {sorted(cuts)[len(cuts) // 2] * 1000:.0f} ms (check not included); "
              f"idle tick: {idle * 1000:.1f} ms")
        print(f"(c) drift check of the batch (profile built): {check:.2f} s -> {monitor.outcomes[0][1].report.status}")
        print(f"(d) live_quality: {quality_s:.2f} s {quality}; traffic_totals: {totals_s:.2f} s "
              f"({sum(t.requests for t in totals.values()):,} requests)")
        print(f"peak resident memory: {peak:.0f} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The serving traffic log (runtime/wb_traffic.py): what it costs a request, and how fast it writes.

    python benchmarks/bench_traffic.py [--requests 20000] [--folder /tmp/x]

(a) request path: the time one `journal(served)` call takes on the request's thread (it only
    enqueues), p50/p99 over `--requests` calls, 1-row and 100-row requests of the example's 20
    columns; target: p99 well under the server's own p50 (7.7 ms at 1 row, docs/serving.md);
(b) the writer: requests and rows written per second, MB/s, segments closed, from the first
    enqueue until everything is on disk (fsync at each segment close included);
(c) a full queue: the cost of a dropped record (the writer stalled).
The writer runs in the same process on the same (shared) CPUs as the enqueuing loop.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.runtime import wb_serve, wb_traffic  # noqa: E402

ROW = {"customer_id": "7590-VHVEG", "female": 1.0, "senior_citizen": 0.0, "partner": 1.0, "dependents": 0.0,
       "tenure": 1.0, "phone_service": 0.0, "multiple_lines": "No phone service", "internet_service": "DSL",
       "online_security": "No", "online_backup": "Yes", "device_protection": "No", "tech_support": "No",
       "streaming_tv": "No", "streaming_movies": "No", "contract": "Month-to-month", "paperless_billing": 1.0,
       "payment_method": "Electronic check", "monthly_charges": 29.85, "total_charges": 29.85}


def served(i: int, rows: int) -> wb_serve.Served:
    return wb_serve.Served(f"req-{i}", f"req-{i}", "production", "champion", 1, 200, 0.0077, time.time(),
                           [ROW] * rows, [0.61] * rows)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run(folder: Path, requests: int, rows: int) -> None:
    journal = wb_traffic.Journal(str(folder), queue_items=requests + 1, queue_rows=(requests + 1) * rows)
    records = [served(i, rows) for i in range(requests)]
    costs = []
    started = time.perf_counter()
    for record in records:
        t = time.perf_counter()
        journal(record)
        costs.append(time.perf_counter() - t)
    assert journal.flush(600)
    elapsed = time.perf_counter() - started
    journal.close()
    size = sum(p.stat().st_size for p in folder.glob("requests-*.jsonl"))
    print(f"{rows:>3} row(s)/request: enqueue p50 {statistics.median(costs) * 1e6:.1f} us, "
          f"p99 {pct(costs, 0.99) * 1e6:.1f} us; written {requests / elapsed:,.0f} req/s "
          f"({requests * rows / elapsed:,.0f} rows/s, {size / elapsed / 1e6:.1f} MB/s), "
          f"{journal.dropped} dropped, {len(list(folder.glob('requests-*.jsonl')))} segments")


def full_queue(folder: Path, calls: int) -> None:
    journal = wb_traffic.Journal(str(folder), queue_items=10)
    stall = threading.Event()
    journal._write = lambda kind, item: stall.wait(60)  # a stalled disk
    record = served(0, 1)
    for _ in range(20):
        journal(record)
    t = time.perf_counter()
    for _ in range(calls):
        journal(record)
    per = (time.perf_counter() - t) / calls
    print(f"full queue: a dropped record costs {per * 1e6:.2f} us; dropped {journal.dropped}")
    stall.set()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--folder", default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    base = Path(args.folder or tempfile.mkdtemp(prefix="bench-traffic-"))
    print(f"wb_traffic on {base} ({os.cpu_count()} CPUs), {args.requests} requests each")
    run(base / "one", args.requests, 1)
    run(base / "hundred", args.requests // 10, 100)
    full_queue(base / "full", args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())

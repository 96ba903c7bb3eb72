"""How long a drift check of a batch takes against the example's 7,043-row training data.

    python benchmarks/bench_drift.py [--repeats 5]

Batches come from the example's tools/make_batch.py (drifted, without labels, so nothing is
scored). Two figures per size, medians over distinct batches (a batch is checked once per
content):

  statistics   reading the batch (DuckDB) and comparing its 19 columns (workbench.core.drift)
  check        DriftService.check_batch end to end: hashing, claiming the batch in the lineage
               store, reading, comparing, the retrain decision, recording the report (the
               reference is read once per process and cached)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workbench.adapters.batch_files import read_table  # noqa: E402
from workbench.core.drift import compare  # noqa: E402
from workbench.services.drift import DriftService  # noqa: E402
from workbench.services.session import WorkbenchSession  # noqa: E402

EXAMPLE = REPO / "projects" / "telco-churn"


def make(kind: str, rows: int, seed: int, out: Path) -> Path:
    subprocess.run([sys.executable, str(EXAMPLE / "tools" / "make_batch.py"), "--kind", kind, "--rows", str(rows),
                    "--seed", str(seed), "--out", str(out)], check=True, capture_output=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        root = Path(tmp)
        shutil.copytree(EXAMPLE, root / "telco-churn", ignore=shutil.ignore_patterns(".workbench", "*.csv.tmp"))
        incoming = root / "telco-churn" / "data" / "incoming"
        session = WorkbenchSession(root, runner="local")
        service = DriftService(session)
        manifest = session.project("telco-churn").manifest
        reference = read_table(root / "telco-churn" / "data" / "churn.csv")
        service.check_batch("telco-churn", make("clean", 100, 999, incoming / "warmup.csv"))  # caches, imports
        print(f"reference: {reference.rows:,} rows, {len(reference.columns)} columns")
        for rows in (1000, 7000):
            stats_s, check_s = [], []
            for i in range(args.repeats):
                path = make("drifted", rows, 100 * rows + i, incoming / f"b-{rows}-{i}.csv")
                start = time.perf_counter()
                batch = read_table(path)
                report = compare(reference.columns, batch.columns, batch.rows, manifest.drift, target="churn")
                stats_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                outcome = service.check_batch("telco-churn", path)
                check_s.append(time.perf_counter() - start)
                assert outcome.fresh and report.drifted == outcome.report.drifted
            print(f"{rows:>5,} rows: statistics {statistics.median(stats_s) * 1000:.0f} ms median "
                  f"({min(stats_s) * 1000:.0f}-{max(stats_s) * 1000:.0f}); check_batch "
                  f"{statistics.median(check_s) * 1000:.0f} ms median ({min(check_s) * 1000:.0f}-"
                  f"{max(check_s) * 1000:.0f}); {len(outcome.report.drifted_columns)} of 19 columns drifted")


if __name__ == "__main__":
    main()

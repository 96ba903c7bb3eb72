"""End-to-end figures for issue 2, through the real `workbench` command:

  * a no-change rerun of the example project (every stage reused, no container started);
  * `workbench runs --json` on a workspace with 100,000 recorded runs.

    python benchmarks/bench_runs.py [--runner docker|local] [--repeats 7] [--history 100000]

Each figure is the median wall time of separate processes, start-up included, as a user sees it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_lineage import generate_history  # noqa: E402

# Each `workbench run` otherwise starts a detached MLflow sync process; it does not delay the
# run, but its import of mlflow would compete for the 2 cores with the next timed command.
os.environ.setdefault("WORKBENCH_MLFLOW_SYNC", "off")


def timed(cmd: list[str], repeats: int) -> tuple[float, list[float], str]:
    times, out = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        out = done.stdout
    return statistics.median(times), times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runner", default="docker", choices=["docker", "local"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--history", type=int, default=100_000)
    args = parser.parse_args()
    wb = [sys.executable, "-m", "workbench"]

    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        shutil.copytree(REPO / "projects" / "telco-churn", ws / "telco-churn",
                        ignore=shutil.ignore_patterns(".workbench"))
        run = wb + ["--workspace", str(ws), "run", "telco-churn", "--runner", args.runner, "-q"]
        first, _, _ = timed(run, 1)
        rerun, samples, _ = timed(run, args.repeats)
        listed = json.loads(subprocess.run(wb + ["--workspace", str(ws), "runs", "--json"], capture_output=True,
                                           text=True, check=True).stdout)
        assert all(r["reused"] == r["stages"] for r in listed[:-1]), "a rerun did not reuse every stage"
        startup, _, _ = timed(wb + ["--version"], args.repeats)

        hist = Path(tmp) / "hist"
        (hist / ".workbench").mkdir(parents=True)
        start = time.perf_counter()
        generate_history(hist / ".workbench" / "lineage.duckdb", args.history)
        generated = time.perf_counter() - start
        all_runs, _, out = timed(wb + ["--workspace", str(hist), "runs", "--json", "--limit", "0"], args.repeats)
        assert len(json.loads(out)) == args.history
        page, _, _ = timed(wb + ["--workspace", str(hist), "runs", "--json"], args.repeats)

    print(f"runner: {args.runner}; median of {args.repeats} processes each\n")
    print(f"{'first run (builds the image if needed)':<52} {first:8.2f} s")
    print(f"{'no-change rerun, `workbench run` end to end':<52} {rerun * 1000:8.0f} ms   "
          f"(min {min(samples) * 1000:.0f}, max {max(samples) * 1000:.0f})")
    print(f"{'  of which interpreter + CLI start-up':<52} {startup * 1000:8.0f} ms")
    print(f"{f'generate {args.history:,} runs of history':<52} {generated:8.2f} s")
    print(f"{f'`workbench runs --json --limit 0` ({args.history:,} runs)':<52} {all_runs * 1000:8.0f} ms")
    print(f"{'`workbench runs --json` (newest 50)':<52} {page * 1000:8.0f} ms")
    verdict = "yes" if rerun < 1.0 else "NO"
    print(f"\nno-change rerun under 1 s: {verdict}; 100k listing under 1 s: {'yes' if all_runs < 1 else 'NO'}")


if __name__ == "__main__":
    main()

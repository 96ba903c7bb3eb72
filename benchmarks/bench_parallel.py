"""Parallel stages (issue 15): a 4-stage diamond pipeline, a -> (b, c) -> d, where b and c each
take --seconds (sleeping, or with --work compute hashing on one core for as much work as
takes that long on an idle core, measured first), run one stage at a
time (`--jobs 1`) against two at once (`--jobs 2`), through the real `workbench run` command.

    python benchmarks/bench_parallel.py [--runner docker|local] [--cold] [--repeats 5]
                                        [--seconds 2] [--work sleep|compute]

Each figure is the median wall time of separate `workbench run` processes, start-up included,
as a user sees it; every run changes an input all four stages read, so nothing is reused. On
Docker's warm path each process starts its own warm workers: `--jobs 2` starts a second one
for c while b takes the first, and that start is part of its figure.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WORKBENCH_MLFLOW_SYNC", "off")  # no background MLflow import competing for the cores

MANIFEST = """
[project]
name = "diamond"

[environment]
memory = "256m"
preload = ["hashlib"]

[stages.a]
command = "python stage.py a"
inputs = ["stage.py", "seed.txt"]

[stages.b]
command = "python stage.py b"
inputs = ["stage.py", "seed.txt"]
depends_on = ["a"]

[stages.c]
command = "python stage.py c"
inputs = ["stage.py", "seed.txt"]
depends_on = ["a"]

[stages.d]
command = "python stage.py d"
inputs = ["stage.py", "seed.txt"]
depends_on = ["b", "c"]
"""

STAGE = """
import hashlib, sys, time, wb
name = sys.argv[1]
seconds, work, blocks = {seconds!r}, {work!r}, {blocks!r}
if name in ("b", "c"):
    if work == "sleep":
        time.sleep(seconds)
    else:  # a fixed amount of hashing, about `seconds` on one idle core: two at once need two cores
        block = b"x" * 65536
        for _ in range(blocks):
            hashlib.sha256(block).digest()
open(wb.output_path("done.txt"), "w").write(open("seed.txt").read())
"""


def hashing_blocks(seconds: float) -> int:
    """How many 64 KiB SHA-256 blocks one core hashes in `seconds`, measured here and now."""
    block, count = b"x" * 65536, 0
    start = time.perf_counter()
    while time.perf_counter() - start < 0.5:
        hashlib.sha256(block).digest()
        count += 1
    return int(count / (time.perf_counter() - start) * seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runner", default="docker", choices=["docker", "local"])
    parser.add_argument("--cold", action="store_true", help="Docker: a fresh container per stage")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="how long b and c each take")
    parser.add_argument("--work", default="sleep", choices=["sleep", "compute"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "ws" / "diamond"
        project.mkdir(parents=True)
        (project / "workbench.toml").write_text(MANIFEST)
        blocks = hashing_blocks(args.seconds) if args.work == "compute" else 0
        (project / "stage.py").write_text(STAGE.format(seconds=args.seconds, work=args.work, blocks=blocks))
        base = [sys.executable, "-m", "workbench", "--workspace", str(project.parent), "run", "diamond",
                "--runner", args.runner, "-q"] + (["--cold"] if args.cold else [])
        seed = iter(range(10**6))

        def timed(jobs: int) -> float:
            (project / "seed.txt").write_text(str(next(seed)))  # nothing reused
            start = time.perf_counter()
            done = subprocess.run(base + ["--jobs", str(jobs)], capture_output=True, text=True)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"workbench run --jobs {jobs} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
            return elapsed

        timed(1)  # builds the environment image once, outside the figures
        samples: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.repeats):  # alternated, so a busy moment of the machine hits both
            for jobs in (1, 2):
                samples[jobs].append(timed(jobs))

    sequential, parallel = statistics.median(samples[1]), statistics.median(samples[2])
    path = f"{args.runner}{' cold' if args.cold else (' warm' if args.runner == 'docker' else '')}"
    print(f"diamond a -> (b, c) -> d, b and c {args.work} {args.seconds:g} s each; runner {path}; "
          f"median of {args.repeats} `workbench run` processes, {os.cpu_count()} CPUs\n")
    for jobs, median in ((1, sequential), (2, parallel)):
        print(f"--jobs {jobs}   {median:7.2f} s   (min {min(samples[jobs]):.2f}, max {max(samples[jobs]):.2f})")
    print(f"\nratio --jobs 1 / --jobs 2: {sequential / parallel:.2f}x   "
          f"(saved {sequential - parallel:.2f} s; at best one branch, {args.seconds:g} s)")


if __name__ == "__main__":
    main()

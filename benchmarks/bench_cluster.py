"""Issue 16: the cluster runner's overhead per stage against the local runner.

    python benchmarks/bench_cluster.py [--repeats 5]

Starts a `dask scheduler` and one `dask worker --resources cpus=2` on this machine (this
checkout first on their import path), runs the tiny two-stage project of
tests/test_pipeline_local.py once per runner, then --repeats times after a data edit (both
stages rerun), and prints the median wall time per stage for each runner and the difference
(the issue's target: under 150 ms). Stages run with the local runner's code on the worker, so
the difference is the cluster's: submit, the two content-addressed handshakes through the
scheduler, the log relay and the outputs' return.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_pipeline_local import write_project  # noqa: E402
from workbench.services.session import WorkbenchSession  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def per_stage_s(runner: str, address: str, repeats: int) -> float:
    root = Path(tempfile.mkdtemp())
    write_project(root)
    session = WorkbenchSession(root, runner=runner, scheduler=address)
    session.run("tiny")
    times = []
    for i in range(repeats):
        (root / "tiny" / "data.txt").write_text(f"a\nb\n{i}\n")
        start = time.perf_counter()
        record = session.run("tiny")
        times.append((time.perf_counter() - start) / len(record.stages))
        assert str(record.status) == "succeeded", record.reason
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    dask = str(Path(sys.executable).parent / "dask")
    cache = tempfile.mkdtemp()
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                               "--no-dashboard"], env=env, stderr=subprocess.DEVNULL)]
    procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "2", "--resources", "cpus=2",
                                   "--no-dashboard"], env={**env, "WORKBENCH_WORKER_CACHE": cache},
                                  stderr=subprocess.DEVNULL))
    try:
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
        local = per_stage_s("local", address, args.repeats)
        cluster = per_stage_s("cluster", address, args.repeats)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"local runner    {local * 1000:7.0f} ms per stage (median of {args.repeats})")
    print(f"cluster runner  {cluster * 1000:7.0f} ms per stage")
    print(f"overhead        {(cluster - local) * 1000:7.0f} ms per stage (target < 150 ms)")


if __name__ == "__main__":
    main()

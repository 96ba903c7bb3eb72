"""A team's shared MLflow server (Postgres, artifacts proxied) against the workspace's own sqlite
store: how long the server takes to start, and how long `workbench mirror sync` takes to send N
runs (each a registered version) to each.

    python benchmarks/bench_team_mlflow.py [--runs 30]

Starts its own Postgres cluster and `mlflow server` (tests/mlflow_server.py; needs Debian's
postgresql and psycopg 3), makes a workspace with the tests' tiny project run `--runs` times on
the local runner (no mirror while it runs), copies it, then times one `workbench mirror sync`
process (start-up and the import of mlflow included, as a user sees it) per store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.mlflow_server import missing_reason, running_team_server  # noqa: E402
from tests.test_pipeline_local import write_project  # noqa: E402
from workbench.services.session import WorkbenchSession  # noqa: E402


def make_workspace(root: Path, runs: int) -> None:
    write_project(root)
    session = WorkbenchSession(root, runner="local")
    for i in range(runs):
        (root / "tiny" / "params.toml").write_text(f"[fit]\nscale = {1.0 + i / 100}\n")
        session.run("tiny")


def timed_sync(root: Path, uri: str) -> float:
    env = dict(os.environ, WORKBENCH_MLFLOW_URI=uri, WORKBENCH_MLFLOW_SYNC="off", WORKBENCH_USER="bench")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "workbench", "--workspace", str(root), "mirror", "sync",
                           "--timeout", "600"], capture_output=True, text=True, env=env)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"mirror sync to {uri} failed:\n{done.stdout}{done.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    reason = missing_reason()
    if reason:
        raise SystemExit(reason)
    os.environ["WORKBENCH_MLFLOW_SYNC"] = "off"
    os.environ["WORKBENCH_MLFLOW_URI"] = "off"  # the outbox fills; nothing is sent while the runs are made
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-team-"))
    cleanup = [tmp]
    try:
        made = time.perf_counter()
        make_workspace(tmp / "a", args.runs)
        print(f"{args.runs} runs made in {time.perf_counter() - made:.1f} s")
        del os.environ["WORKBENCH_MLFLOW_URI"]
        # Two copies of one workspace and its outbox: one for each store.
        shutil.copytree(tmp / "a", tmp / "b", symlinks=True)
        local = timed_sync(tmp / "a", "sqlite:///" + str(tmp / "a" / ".workbench" / "mlflow.db"))
        # A folder of its own: the cluster's user must reach it, and `tmp` is private to us.
        server_root = Path(tempfile.mkdtemp(prefix="wb-bench-team-server-"))
        cleanup.append(server_root)
        with running_team_server(server_root) as server:
            print(f"postgres start {server.postgres_start_s:.2f} s, mlflow server start "
                  f"{server.mlflow_start_s:.2f} s")
            shared = timed_sync(tmp / "b", server.uri)
        print(f"mirror sync of {args.runs} runs + {args.runs} versions: local sqlite {local:.2f} s, "
              f"shared server {shared:.2f} s ({shared / local:.2f}x), "
              f"{shared / args.runs * 1000:.0f} ms per run on the server")
    finally:
        for folder in cleanup:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

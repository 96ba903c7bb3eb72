"""`workbench mirror sync` next to the lingering background sync.

After `run`, the CLI starts a detached `mirror sync --background` that drains the outbox and then
stays a minute holding the mirror's lock (watch mode: one process that imported mlflow once
serves every run). A `workbench mirror sync` typed in that minute waited the whole minute for the
lock, doing nothing, then printed "✓ sent 0 item(s) ... in 60.0 s; 0 pending; error: another
workbench process is syncing MLflow now". It should return as soon as nothing is pending.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_pipeline_local import write_project

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def workbench(ws: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", "-w", str(ws), *args], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "200", **env}, timeout=120)


def wait_in_sync(ws: Path, env: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = json.loads(workbench(ws, env, "mirror", "status", "--json").stdout)
        if status["state"] == "in_sync":
            return
        time.sleep(0.3)
    raise AssertionError(f"the background sync did not drain the outbox: {status}")


def test_mirror_sync_does_not_wait_for_a_lingering_background_sync(tmp_path):
    ws = tmp_path / "ws"
    write_project(ws)
    env = {"WORKBENCH_MLFLOW_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "WORKBENCH_MLFLOW_SYNC": "background",
           "WORKBENCH_MLFLOW_LINGER_S": "25"}
    assert workbench(ws, env, "run", "tiny", "--runner", "local").returncode == 0
    wait_in_sync(ws, env)  # the detached process drained the run and now lingers, holding the lock

    started = time.monotonic()
    synced = workbench(ws, env, "mirror", "sync")
    took = time.monotonic() - started
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "error" not in synced.stdout, synced.stdout
    assert "0 pending" in synced.stdout
    assert took < 8, f"mirror sync waited {took:.1f} s for the idle background process: {synced.stdout}"

    # Items queued while the background process lingers: it sends them (it looks every second);
    # the foreground command returns once they are sent, not when its own timeout runs out.
    (ws / "tiny" / "params.toml").write_text("[fit]\nscale = 2.5\n")
    assert workbench(ws, {**env, "WORKBENCH_MLFLOW_SYNC": "off"}, "run", "tiny", "--runner", "local").returncode == 0
    started = time.monotonic()
    synced = workbench(ws, env, "mirror", "sync")
    took = time.monotonic() - started
    assert synced.returncode == 0 and "0 pending" in synced.stdout, synced.stdout + synced.stderr
    assert took < 8, f"mirror sync took {took:.1f} s: {synced.stdout}"
    assert json.loads(workbench(ws, env, "mirror", "status", "--json").stdout)["state"] == "in_sync"

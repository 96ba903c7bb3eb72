"""A team's MLflow tracking server, for tests: a real Postgres cluster (Debian's package) in a
temporary folder and a real `mlflow server` on it, with artifacts proxied by the server
(`--serve-artifacts`). Both are started by the fixture and stopped after the module's tests.

Postgres refuses to run as root, so when the tests run as root the cluster is made and run by
the `postgres` user (Debian's package creates it). Missing binaries or psycopg skip the tests
with the reason (never silently in CI: `skip_unless_ci`); `scripts/setup.sh` installs them when
`WORKBENCH_SETUP_POSTGRES=1`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import skip_unless_ci

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TeamServer:
    uri: str
    """What a workspace sets as $WORKBENCH_MLFLOW_URI: the server's http address."""
    database_uri: str
    artifacts: Path
    postgres_start_s: float
    mlflow_start_s: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_binary(name: str) -> str | None:
    for folder in PG_BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    return shutil.which(name)


def _as_cluster_owner(args: list[str]) -> list[str]:
    """initdb and postgres refuse root: run them as `postgres` then."""
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"mlflow server did not answer {url} within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def _missing() -> str | None:
    if pg_binary("initdb") is None or pg_binary("pg_ctl") is None:
        return "Postgres binaries (initdb, pg_ctl) are missing: apt-get install -y postgresql " \
               "(or WORKBENCH_SETUP_POSTGRES=1 bash scripts/setup.sh)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the cluster as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return 'psycopg 3 is missing: pip install "psycopg[binary]"'
    return None


def missing_reason() -> str | None:
    """Why a team server cannot be started here, or None."""
    return _missing()


@contextmanager
def running_team_server(root: Path) -> Iterator[TeamServer]:
    """Postgres and `mlflow server` on it, under `root` (made by the caller, removed by it, and
    reachable by the `postgres` user when run as root: not inside another private temporary
    folder), for as long as the block runs. Raises RuntimeError or CalledProcessError when one cannot start."""
    data = root / "pg"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    pg_port, http_port = free_port(), free_port()
    pg_log = root / "postgres.log"
    started = time.monotonic()
    subprocess.run(_as_cluster_owner([pg_binary("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                      "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    # fsync off: a test database need not survive a power cut, and it halves the start time.
    options = f"-p {pg_port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_cluster_owner([pg_binary("pg_ctl"), "-D", str(data), "-l", str(pg_log), "-o", options,
                                      "-w", "start"]), check=True, capture_output=True)
    mlflow = None
    try:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={pg_port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE mlflow")
        postgres_s = time.monotonic() - started
        database_uri = f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/mlflow"
        artifacts = root / "artifacts"
        artifacts.mkdir()
        mlflow_log = root / "mlflow.log"
        started = time.monotonic()
        with open(mlflow_log, "wb") as log:
            mlflow = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", database_uri,
                 "--serve-artifacts", "--artifacts-destination", str(artifacts), "--host", "127.0.0.1",
                 "--port", str(http_port), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=dict(os.environ, MLFLOW_TRACKING_URI=""))
        uri = f"http://127.0.0.1:{http_port}"
        _wait_http(f"{uri}/health", mlflow, mlflow_log, START_TIMEOUT_S)
        yield TeamServer(uri, database_uri, artifacts, postgres_s, time.monotonic() - started)
    finally:
        if mlflow is not None:
            _stop(mlflow)
        subprocess.run(_as_cluster_owner([pg_binary("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)


@pytest.fixture(scope="module")
def team_server() -> Iterator[TeamServer]:
    reason = _missing()
    if reason:
        skip_unless_ci(reason)
    root = Path(tempfile.mkdtemp(prefix="wb-team-mlflow-"))
    try:
        with running_team_server(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _stop(process: subprocess.Popen) -> None:
    """The server forks workers: stop its whole process group, by its own id."""
    try:
        os.killpg(process.pid, 15)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()
    except ProcessLookupError:
        pass

"""`workbench serve` against `mlflow models serve`, side by side in one run on the example model.

    python benchmarks/bench_serve_vs_mlflow.py [--seconds 5] [--concurrency 1,8,32] [--batch 1,100] [--starts 3]

Trains the example project (telco-churn) with the CLI in a temporary workspace (local runner, as
bench_serve.py does) and promotes version 1 to staging and production. The same model.txt is
logged as an MLflow model in a temporary tracking store (sqlite) in this process, as a pyfunc
"model from code" (benchmarks/mlflow_lightgbm_model.py says why not mlflow.lightgbm.log_model)
with a signature inferred from the training rows, so MLflow checks inputs as we do. Then:

  (a) command to first answer, the median of `--starts` starts each (images built, files cached):
      `workbench serve telco-churn --alias production` and
      `mlflow models serve -m runs:/<id>/model --env-manager local -p PORT`, each timed from the
      command until the first POST of one row is answered 200;
  (b) requests per second, p50 and p99 latency at each concurrency, single rows and 100-row
      batches, `--seconds` per cell, the two servers taking turns cell by cell (so a change in
      the machine's load hits both); the same rows: ours as a JSON list of records on
      /predict, MLflow's as {"dataframe_records": [...]} on /invocations;
  (c) a new version under load at the highest concurrency, single rows: ours promotes version
      2 (hot swap: failed requests, version switches, p99 from the promotion until 1 s after
      the first answer of version 2 over the steady p99, target < 2x); MLflow cannot swap
      (MLflow #4039), so what a user does instead: stop the server and start it on version 2
      (logged the same way), measured as failed requests and the longest time with no answer.
      Both report that longest gap.

Load generator: this file's asyncio httpx client, closed loop (each of `concurrency` workers
sends its next request when the previous one is answered; one keep-alive connection each).
A failed request is retried by its worker after 0.1 s, so "failed requests" during a restart
counts about 10 per worker per second of downtime.

Fairness. Our server runs in its container with the manifest's `cpus = 1.0` (a CFS quota) and
OMP/OpenBLAS/MKL threads set to 1; once started it is also pinned to CPU 1 (`docker update
--cpuset-cpus 1`). MLflow's server is started pinned to CPU 1 (sched_setaffinity, as `taskset -c
1`) with `--workers 1` (its default: one uvicorn process) and OMP_NUM_THREADS=1 etc. So each
server gets exactly one core, the same one, and the client (this process) runs on CPU 0; start
times (a) are taken before our container is pinned (only its quota applies then). MLflow's
uvicorn keeps its default access log (a line per request, to /dev/null here): what a user of
`mlflow models serve` gets; ours logs no access line (`--mlflow-no-access-log` turns MLflow's
off). Our requests pass Docker's port proxy (docker-proxy, outside the container's CPU limit).
Before measuring, both servers' predictions for the 100 rows are checked to be the same.

Other processes on the machine share both cores: the load average is printed at the start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import EXAMPLE, P, REPO, free_port, pct, rows, wb  # noqa: E402

MODEL_CODE = Path(__file__).resolve().parent / "mlflow_lightgbm_model.py"
RETRY_AFTER_S = 0.1
SERVER_CPU, CLIENT_CPU = 1, 0
THREADS_ONE = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def ratio(ours: float, theirs: float) -> float:
    """ours / theirs; nan when either is missing or theirs is zero."""
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return float("nan")
    return ours / theirs


def longest_gap(completions: list[float], start: float, end: float) -> float:
    """The longest time between start, the answers' completion times and end with no answer."""
    points = [start, *sorted(t for t in completions if start <= t <= end), end]
    return max(b - a for a, b in zip(points, points[1:]))


@dataclass
class Load:
    started: list[float] = field(default_factory=list)   # per answered request, send time
    latency: list[float] = field(default_factory=list)   # per answered request, seconds
    done: list[float] = field(default_factory=list)      # per answered request, answer time
    versions: list[tuple[float, str | None]] = field(default_factory=list)
    failures: int = 0

    def rate(self, since: float, seconds: float) -> float:
        """Answers per second within [since, since + seconds]: the requests still in flight when
        the load stops are answered after it and not counted."""
        return sum(1 for t in self.done if since <= t <= since + seconds) / seconds

    def p(self, q: float, since: float = -math.inf, until: float = math.inf) -> float:
        return pct([lat for s, lat in zip(self.started, self.latency) if since <= s <= until], q)


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    path: str        # /predict or /invocations
    mlflow: bool

    def body(self, records: list[dict]) -> bytes:
        return json.dumps({"dataframe_records": records} if self.mlflow else records).encode()


async def load(server: Server, body: bytes, concurrency: int, stop: asyncio.Event,
               result: Load | None = None) -> Load:
    """Closed loop: `concurrency` workers, each sending its next request once answered, until stop
    (into `result` when given, so a caller can watch it fill)."""
    result = result if result is not None else Load()
    headers = {"Content-Type": "application/json"}

    async def worker() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    response = await client.post(server.url + server.path, content=body, headers=headers)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    now = time.perf_counter()
                    result.started.append(started)
                    result.latency.append(now - started)
                    result.done.append(now)
                    result.versions.append((started, response.headers.get("x-model-version")))
                else:
                    result.failures += 1
                    await asyncio.sleep(RETRY_AFTER_S)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


async def timed_load(server: Server, body: bytes, concurrency: int, seconds: float) -> tuple[float, Load]:
    """(start time, load) of `seconds` of load."""
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return time.perf_counter(), await load(server, body, concurrency, stop)


def wait_for_answer(server: Server, one: bytes, process: subprocess.Popen, started: float) -> float:
    """Seconds from `started` until POSTing `one` is answered 200."""
    while True:
        try:
            if httpx.post(server.url + server.path, content=one, headers={"Content-Type": "application/json"},
                          timeout=5).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"{server.name} ended before answering: "
                             f"{process.stderr.read() if process.stderr else ''}")
        if time.perf_counter() - started > 600:
            raise SystemExit(f"{server.name}: no answer in 600 s")
        time.sleep(0.02)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


# ---------------------------------------------------------------- workbench side

def start_workbench(ws: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "workbench", "--workspace", str(ws), "serve", P,
                             "--alias", "production", "--port", str(port), "--poll", "0.5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def stop_workbench(ws: Path, process: subprocess.Popen) -> None:
    wb(ws, "serve", "stop", P, check=False)
    process.wait(timeout=60)


def pin_workbench_container(ws: Path) -> str:
    found = json.loads(wb(ws, "serve", "status", "--json").stdout)
    name = next(s["container"] for s in found if s["alias"] == "production")
    subprocess.run(["docker", "update", "--cpuset-cpus", str(SERVER_CPU), name], check=True,
                   capture_output=True)
    return name


# ---------------------------------------------------------------- mlflow side

def log_mlflow_model(model_txt: Path, tracking_uri: str, sample: list[dict], version: int) -> str:
    import logging
    import warnings

    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # its advice to add type hints and an input example: the signature is given, neither is needed
    warnings.filterwarnings("ignore", message=r".*(type hints|input example)")

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("bench-serve-vs-mlflow")
    with mlflow.start_run(run_name=f"telco-churn v{version}") as run:
        mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_CODE),
                                artifacts={"model_txt": str(model_txt)},
                                signature=infer_signature(pd.DataFrame.from_records(sample)),
                                pip_requirements=["lightgbm", "pandas"])
    return f"runs:/{run.info.run_id}/model"


def start_mlflow(model_uri: str, port: int, tracking_uri: str, access_log: bool = True) -> subprocess.Popen:
    env = {**os.environ, **THREADS_ONE, "MLFLOW_TRACKING_URI": tracking_uri}
    if not access_log:
        env["UVICORN_ACCESS_LOG"] = "false"  # uvicorn's CLI reads UVICORN_* for its options
    return subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
                             "--env-manager", "local", "-p", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True,  # its own process group, to stop it and its uvicorn
                            preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CPU}))


def stop_mlflow(process: subprocess.Popen, port: int) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)
    deadline = time.perf_counter() + 30
    while not port_free(port) and time.perf_counter() < deadline:
        time.sleep(0.02)


# ---------------------------------------------------------------- the run

def median_start(starts: int, start, stop, server: Server, one: bytes) -> tuple[float, float, float, object]:
    """Median, min and max seconds to first answer over `starts` starts; the last start left running."""
    times, process = [], None
    for attempt in range(starts):
        started = time.perf_counter()
        process = start()
        times.append(wait_for_answer(server, one, process, started))
        if attempt < starts - 1:
            stop(process)
    return statistics.median(times), min(times), max(times), process


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--batch", default="1,100")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--mlflow-no-access-log", action="store_true",
                        help="turn off MLflow's uvicorn access log (on by default, as users get it)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    batches = [int(b) for b in args.batch.split(",")]
    pinned = len(os.sched_getaffinity(0)) >= 2
    load_at_start = os.getloadavg()
    table: list[tuple[str, str, str, float]] = []

    with tempfile.TemporaryDirectory(prefix="bench-serve-mlflow-") as tmp:
        ws = Path(tmp) / "ws"
        shutil.copytree(EXAMPLE, ws / P, ignore=shutil.ignore_patterns(".workbench"))
        manifest = ws / P / "workbench.toml"
        manifest.write_text(manifest.read_text().replace('latency_p95_ms = "<= 50"', 'latency_p95_ms = "<= 1000"')
                            + "\n[promotion]\ntolerance = 0.5\n")
        os.environ.setdefault("WORKBENCH_MLFLOW_URI", f"sqlite:///{Path(tmp) / 'mirror.db'}")
        tracking = f"sqlite:///{Path(tmp) / 'mlflow-models.db'}"
        wb(ws, "run", P, "--runner", "local", "-q")
        wb(ws, "promote", P, "1", "--to", "staging", "--yes")
        wb(ws, "promote", P, "1", "--to", "production", "--yes")
        sample = rows(ws, max(batches + [100]))
        # the very file version 1's release serves (deploy pointer), logged as an MLflow model
        snapshot1 = Path(tmp) / "model-v1.txt"
        shutil.copy(ws / ".workbench" / "deploy" / P / "production" / "model.txt", snapshot1)
        uri1 = log_mlflow_model(snapshot1, tracking, sample, 1)

        ours_port, theirs_port = free_port(), free_port()
        ours = Server("workbench", f"http://127.0.0.1:{ours_port}", "/predict", False)
        theirs = Server("mlflow", f"http://127.0.0.1:{theirs_port}", "/invocations", True)
        ours_process = theirs_process = None
        try:
            # The first `workbench serve` builds the serving image: once, not measured.
            first = start_workbench(ws, ours_port)
            wait_for_answer(ours, ours.body(sample[:1]), first, time.perf_counter())
            stop_workbench(ws, first)
            ours_start = median_start(args.starts, lambda: start_workbench(ws, ours_port),
                                      lambda p: stop_workbench(ws, p), ours, ours.body(sample[:1]))
            ours_process = ours_start[3]
            access_log = not args.mlflow_no_access_log
            theirs_start = median_start(args.starts, lambda: start_mlflow(uri1, theirs_port, tracking, access_log),
                                        lambda p: stop_mlflow(p, theirs_port), theirs, theirs.body(sample[:1]))
            theirs_process = theirs_start[3]
            table.append(("command to first answer, s (median; min-max)",
                          f"{ours_start[0]:.2f} ({ours_start[1]:.2f}-{ours_start[2]:.2f})",
                          f"{theirs_start[0]:.2f} ({theirs_start[1]:.2f}-{theirs_start[2]:.2f})",
                          ratio(ours_start[0], theirs_start[0])))

            if pinned:
                pin_workbench_container(ws)
                os.sched_setaffinity(0, {CLIENT_CPU})

            # Same answers from both, or the comparison means nothing.
            batch = sample[:100]
            a, b = (httpx.post(s.url + s.path, content=s.body(batch), headers={"Content-Type": "application/json"},
                               timeout=30).json()["predictions"] for s in (ours, theirs))
            diff = max(abs(x - y) for x, y in zip(a, b))
            if len(a) != len(b) or diff > 1e-9:
                raise SystemExit(f"the servers disagree on the 100 rows (largest difference {diff})")

            steady: dict[tuple[int, int], tuple[Load, Load]] = {}
            for size in batches:
                for level in levels:
                    pair, rps = [], []
                    for server in (ours, theirs):
                        began, result = asyncio.run(timed_load(server, server.body(sample[:size]), level,
                                                               args.seconds))
                        pair.append(result)
                        rps.append(result.rate(began, args.seconds))
                    steady[(size, level)] = (pair[0], pair[1])
                    label = f"{size} row{'s' if size > 1 else ''}/request, concurrency {level}"
                    table.append((f"{label}: req/s", f"{rps[0]:.1f}", f"{rps[1]:.1f}", ratio(rps[0], rps[1])))
                    for q in (0.5, 0.99):
                        v = [x.p(q) * 1e3 for x in pair]
                        table.append((f"{label}: p{round(q * 100)} ms", f"{v[0]:.1f}", f"{v[1]:.1f}",
                                      ratio(v[0], v[1])))
            failed = [sum(pair[i].failures for pair in steady.values()) for i in (0, 1)]
            table.append(("failed requests, all steady cells", str(failed[0]), str(failed[1]), float("nan")))

            # (c) version 2 under load: ours promoted (hot swap), MLflow restarted on it.
            params = ws / P / "params.toml"
            params.write_text(params.read_text().replace("num_boost_round = 200", "num_boost_round = 120"))
            wb(ws, "run", P, "--runner", "local", "-q")
            wb(ws, "promote", P, "2", "--to", "staging", "--yes")
            snapshot2 = Path(tmp) / "model-v2.txt"
            shutil.copy(ws / ".workbench" / "deploy" / P / "staging" / "model.txt", snapshot2)
            uri2 = log_mlflow_model(snapshot2, tracking, sample, 2)
            level = max(levels)
            lead = max(2.0, args.seconds / 3)

            async def under_load(server: Server, change, is_new) -> tuple[float, float, float, Load]:
                """Load; after `lead` s, change() in a thread (it returns the time from which answers
                come from the new version or server); go on until `lead` s after the first such
                answer. Returns (change started, first new answer sent, end, load)."""
                stop, result = asyncio.Event(), Load()
                task = asyncio.create_task(load(server, server.body(sample[:1]), level, stop, result))
                await asyncio.sleep(lead)
                changed_at = time.perf_counter()
                since = await asyncio.to_thread(change)
                deadline = time.perf_counter() + 120
                while (first := next((s for s, v in list(result.versions) if s >= since and is_new(v)),
                                     None)) is None:
                    if time.perf_counter() > deadline:
                        stop.set()
                        await task
                        raise SystemExit(f"{server.name}: no answer from the new version in 120 s")
                    await asyncio.sleep(0.02)
                await asyncio.sleep(lead)
                stop.set()
                await task
                return changed_at, first, time.perf_counter(), result

            def promote() -> float:
                since = time.perf_counter()
                wb(ws, "promote", P, "2", "--to", "production", "--yes")
                return since

            def restart() -> float:
                nonlocal theirs_process
                stop_mlflow(theirs_process, theirs_port)
                theirs_process = start_mlflow(uri2, theirs_port, tracking, access_log)
                return time.perf_counter()

            base = [x.p(0.99) for x in steady[(1, level)]] if (1, level) in steady else [float("nan")] * 2
            changed_at, first, end, swap = asyncio.run(under_load(ours, promote, lambda v: v == "2"))
            versions = [v for _, v in sorted(swap.versions)]  # in the order requests were sent
            switches = sum(1 for x, y in zip(versions, versions[1:]) if x != y)
            swap_p99 = swap.p(0.99, changed_at, first + 1.0)
            ours_gap = longest_gap(swap.done, changed_at, end)
            r_changed, r_first, r_end, restarted = asyncio.run(under_load(theirs, restart, lambda v: True))
            theirs_gap = longest_gap(restarted.done, r_changed, r_end)
            what = f"version 2 under load (concurrency {level}, 1 row; ours: hot swap, MLflow: restart)"
            table.append((f"{what}: failed requests", str(swap.failures), str(restarted.failures), float("nan")))
            table.append((f"{what}: longest time with no answer, s", f"{ours_gap:.2f}", f"{theirs_gap:.2f}",
                          ratio(ours_gap, theirs_gap)))
            table.append((f"{what}: p99 from the change until 1 s after version 2 answers, ms",
                          f"{swap_p99 * 1e3:.1f} = {ratio(swap_p99, base[0]):.2f}x steady p99 "
                          f"({base[0] * 1e3:.1f})", "-", float("nan")))
            table.append((f"{what}: version switches in send order (1 expected)", str(switches), "-",
                          float("nan")))
        finally:
            if theirs_process is not None:
                stop_mlflow(theirs_process, theirs_port)
            if ours_process is not None:
                stop_workbench(ws, ours_process)

    load_at_end = os.getloadavg()
    print_table(table)
    print(f"\nratio = workbench / mlflow (req/s: higher is better; s and ms: lower is better). "
          f"{args.seconds:g} s per cell, closed loop, asyncio httpx client"
          f"{' on CPU 0, both servers on CPU 1' if pinned else ' (not pinned: fewer than 2 CPUs)'}. "
          f"Load average at start {load_at_start[0]:.2f} {load_at_start[1]:.2f} {load_at_start[2]:.2f}, "
          f"at end {load_at_end[0]:.2f} {load_at_end[1]:.2f} {load_at_end[2]:.2f}. "
          f"MLflow's access log {'off' if args.mlflow_no_access_log else 'on (its default)'}. "
          f"Both servers gave the same predictions for the 100 rows (largest difference {diff:.1e}).")
    return 0


def format_table(table: list[tuple[str, str, str, float]]) -> list[str]:
    """Markdown rows: figure | workbench | mlflow | ratio (blank when there is none)."""
    lines = ["| figure | workbench | mlflow | ratio |", "|---|---:|---:|---:|"]
    for figure, ours, theirs, r in table:
        lines.append(f"| {figure} | {ours} | {theirs} | {'' if math.isnan(r) else f'{r:.2f}'} |")
    return lines


def print_table(table: list[tuple[str, str, str, float]]) -> None:
    print("\n".join(format_table(table)))


if __name__ == "__main__":
    sys.exit(main())

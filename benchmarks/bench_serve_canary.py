"""What shadow scoring costs the caller, on the example model.

    python benchmarks/bench_serve_canary.py [--requests 300] [--seconds 5] [--rounds 2]

Trains the example project (telco-churn) twice in a temporary workspace (version 1 in production,
version 2 in staging) and serves production with `workbench serve --alias production`, without
and with `[serving] shadow = true` (`--rounds` server starts each, in the order off, shadow,
shadow, off, ... so drifting machine load hits both alike; figures pool the rounds), then:
  (a) isolated requests: `--requests` single-row requests one after another with a 30 ms pause
      between them, so the shadow score of one is done before the next: p50/p99 latency. The
      target is shadow/off about 1.0: the shadow runs after the answer is sent (a background
      task), so the caller does not wait for it;
  (b) back-to-back requests at concurrency 1 for `--seconds`: req/s and p50/p99. A shadowed
      request costs the server two predictions, and the shadow runs on the same event loop and
      the same CPU (`cpus = 1.0`), so a saturated server answers fewer requests per second: this
      is the price of shadowing, reported, not hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import EXAMPLE, P, REPO, free_port, load, pct, rows, wb  # noqa: E402


def serve(ws: Path) -> tuple[subprocess.Popen, str, bytes]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    one = json.dumps(rows(ws, 1)).encode()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-m", "workbench", "--workspace", str(ws), "serve", P,
                               "--alias", "production", "--port", str(port), "--poll", "0.5"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    started = time.perf_counter()
    while True:
        try:
            if httpx.post(url + "/predict", content=one, headers={"Content-Type": "application/json"},
                          timeout=5).status_code == 200:
                return server, url, one
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"workbench serve ended: {server.stderr.read()}")
        if time.perf_counter() - started > 600:
            raise SystemExit("no answer in 600 s")
        time.sleep(0.05)


def isolated(url: str, body: bytes, count: int) -> list[float]:
    latencies = []
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.post(url + "/predict", content=body, headers={"Content-Type": "application/json"})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"a request failed: {response.status_code} {response.text}")
            time.sleep(0.03)
    return latencies


def shadow_count(url: str) -> int:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("wb_requests_total{") and 'role="shadow"' in line)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2, help="server starts per setting, alternating")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-canary-") as tmp:
        ws = Path(tmp) / "ws"
        shutil.copytree(EXAMPLE, ws / P, ignore=shutil.ignore_patterns(".workbench"))
        manifest = ws / P / "workbench.toml"
        base = (manifest.read_text().replace('latency_p95_ms = "<= 50"', 'latency_p95_ms = "<= 1000"')
                + "\n[promotion]\ntolerance = 0.5\n")
        manifest.write_text(base)
        os.environ.setdefault("WORKBENCH_MLFLOW_URI", f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        wb(ws, "run", P, "--runner", "local", "-q")
        wb(ws, "promote", P, "1", "--to", "staging", "--yes")
        wb(ws, "promote", P, "1", "--to", "production", "--yes")
        params = ws / P / "params.toml"
        params.write_text(params.read_text().replace("num_boost_round = 200", "num_boost_round = 120"))
        wb(ws, "run", P, "--runner", "local", "-q")
        wb(ws, "promote", P, "2", "--to", "staging", "--yes")

        # off, shadow, shadow, off, ...: the machine's load drifts, so each setting gets early and
        # late rounds and the figures pool them
        extras = {"off": "", "shadow": "\n[serving]\nshadow = true\n"}
        order = [name for i in range(args.rounds) for name in (("off", "shadow") if i % 2 == 0 else ("shadow", "off"))]
        pooled = {name: ([], [], 0, 0, 0) for name in extras}
        for name in order:
            manifest.write_text(base + extras[name])
            server, url, one = serve(ws)
            try:
                isolated(url, one, 20)  # warm-up, not measured
                quiet = isolated(url, one, args.requests)
                results, failures, _ = asyncio.run(load(url, one, 1, args.seconds))
                q, b, answered, failed, shadows = pooled[name]
                pooled[name] = (q + quiet, b + [lat for _, lat in results], answered + len(results),
                                failed + failures, shadows + shadow_count(url))
            finally:
                wb(ws, "serve", "stop", P, check=False)
                server.wait(timeout=60)
        figures = {name: (pct(q, 0.5), pct(q, 0.99), answered / (args.seconds * args.rounds), pct(b, 0.5),
                          pct(b, 0.99), failed, shadows)
                   for name, (q, b, answered, failed, shadows) in pooled.items()}

    print(f"production v1, staging v2, single rows, cpus = 1.0, {args.rounds} rounds each: (a) {args.requests} "
          f"isolated requests, (b) back-to-back for {args.seconds:g} s at concurrency 1")
    for name, (q50, q99, rps, b50, b99, failures, shadows) in figures.items():
        print(f"    shadow {name:>6}:  (a) p50 {q50 * 1e3:6.2f} ms  p99 {q99 * 1e3:6.2f} ms   "
              f"(b) {rps:6.1f} req/s  p50 {b50 * 1e3:6.2f} ms  p99 {b99 * 1e3:6.2f} ms  failed {failures}  "
              f"shadow scores {shadows}")
    off, on = figures["off"], figures["shadow"]
    print(f"    isolated p50 shadow/off {on[0] / off[0]:.2f}x (target ~1: the caller does not wait for the shadow); "
          f"back-to-back req/s shadow/off {on[2] / off[2]:.2f}x (two predictions per request on one CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What alerts cost a run, and how fast the outbox empties into a live receiver.

    python benchmarks/bench_alerts.py [--runs 7] [--events 500]

1. A run's wall time (the tiny two-stage project of the tests, local runner, one stage rerun,
   its gate failing so every run emits `gate_failed`) with no `[notify]`, with a receiver that
   accepts connections and never answers (sending to it would take the sender's 10 s timeout),
   and with a live receiver; median of `--runs` (interleaved), delivery in a thread of the same process as
   the TUI does. The run only writes the outbox, so the three should match within noise.
2. The cost of one `emit`: with no receiver configured (nothing is written) and with one (one
   DuckDB transaction: the event and its delivery row).
3. `--events` alerts queued while the receiver is down, then delivered in one drain once it is
   up: alerts per second, each once and in order.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.notify_receiver import Receiver  # noqa: E402
from tests.test_pipeline_local import write_project  # noqa: E402
from workbench.services.session import WorkbenchSession  # noqa: E402


def run_times(roots: dict[str, Path], runs: int) -> dict[str, list[float]]:
    """Interleaved (one run of each setup in turn), so a machine that gets busier or quieter
    during the benchmark weighs on every setup alike."""
    sessions = {}
    for name, root in roots.items():
        sessions[name] = WorkbenchSession(root, runner="local")
        sessions[name].alerts.deliver_here()
        sessions[name].run("tiny")  # warm-up: imports, the store's first open
    times: dict[str, list[float]] = {name: [] for name in roots}
    for n in range(runs):
        for name, root in roots.items():
            (root / "tiny" / "params.toml").write_text(f"[fit]\nscale = 0.{n + 1}\n")  # a new fit; its gate fails
            started = time.perf_counter()
            sessions[name].run("tiny")
            times[name].append(time.perf_counter() - started)
    for session in sessions.values():
        session.alerts.stop_delivery_thread(timeout=0.1)
    return times


def hook(root: Path, url: str) -> None:
    (root / "workspace.toml").write_text(f'[notify]\nretry_after_s = 0.2\nmax_retry_s = 1\n'
                                         f'[[notify.webhooks]]\nurl = "{url}"\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--events", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        hanging = socket.socket()
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(64)
        live = Receiver().start()
        roots = {}
        for name, url in (("no receiver", None), ("dead receiver (never answers)",
                                                  f"http://127.0.0.1:{hanging.getsockname()[1]}/hook"),
                          ("live receiver", live.url)):
            roots[name] = root = base / name.split()[0]
            write_project(root)
            if url:
                hook(root, url)
        medians = {}
        for name, times in run_times(roots, args.runs).items():
            medians[name] = statistics.median(times)
            print(f"run, {name:31s} median {medians[name] * 1000:7.1f} ms  (min {min(times) * 1000:.1f}, "
                  f"max {max(times) * 1000:.1f}, {args.runs} runs)")
        plain = medians["no receiver"]
        for name in list(medians)[1:]:
            print(f"  {name}: {medians[name] / plain:.2f}x the run with no receiver")
        hanging.close()

        root = base / "emit"
        write_project(root)
        session = WorkbenchSession(root, runner="local")
        session.store  # opened once, as it is by the run that emits
        for label, url in (("no receiver configured", None), ("one receiver", f"http://127.0.0.1:{live.port + 0}/x")):
            if url:
                hook(root, url)
            started = time.perf_counter()
            for n in range(200):
                session.alerts.emit("batch_drifted", "tiny", f"batch {n}", {"n": n})
            print(f"emit, {label:23s} {(time.perf_counter() - started) / 200 * 1000:6.2f} ms per alert")
        live.stop()

        down = Receiver()
        root = base / "drain"
        write_project(root)
        hook(root, down.url)
        session = WorkbenchSession(root, runner="local")
        for n in range(args.events):
            session.alerts.emit("batch_drifted", "tiny", f"batch {n}", {"n": n})
        assert session.alerts.drain() == (0, 1)
        down.start()
        started = time.perf_counter()
        sent, failed = session.alerts.drain(force=True)
        seconds = time.perf_counter() - started
        got = [b["details"]["n"] for b in down.bodies()]
        down.stop()
        assert (sent, failed) == (args.events, 0) and got == list(range(args.events)), (sent, failed, got[:5])
        print(f"drain, {args.events} alerts queued while the receiver was down: {seconds:.2f} s, "
              f"{args.events / seconds:.0f} alerts/s, each once, in order")


if __name__ == "__main__":
    main()

"""Issue 16's figures for the cluster runner, each on real `dask scheduler` / `dask worker`
processes started here (this checkout first on their import path, each worker with its own
cache folder in $WORKBENCH_WORKER_CACHE, all stopped at the end, also on Ctrl-C):

    python benchmarks/bench_cluster.py [--section overhead bytes sweep] [--repeats 7] [--trials 9]
                                       [--sweep-projects telco-churn sleepy] [--sleep 3] [--sweep-rounds 2]
                                       [--dir /tmp]

Workers are started as `dask worker ADDR --nthreads 1 --resources "cpus=1"`: one stage (of
`cpus = 1`) at a time each. Sections (all three by default):

overhead  Per-stage overhead of `--runner cluster` (one worker) against the local warm worker
          (`--runner docker`, warm: the fair baseline once the cluster worker runs stages in its
          own Docker engine) and against `--runner local`. A project of 5 chained trivial stages
          (each prints a line, reads its upstream's file and writes a small one), one workspace
          per runner; a first run each outside the figures (image build, warm worker start,
          snapshot sent); then --repeats rounds, each editing the params section all five stages
          read (there is no `--force`: an edit is how a rerun of every stage is forced) and timing
          one `session.run` per runner, the runners in turn so a busy moment hits all. Printed:
          the median wall time of a run divided by its 5 stages, per runner, split into the time
          in the stage (its process, as the lineage records it) and around it; and the
          differences (target: cluster minus docker warm under 150 ms). While the worker runs
          stages with its Python (a new process per stage, as `--runner local`), cluster minus
          local is the cluster's own cost and cluster minus docker also holds local's slower
          stage start; once stages run in the worker's warm worker, cluster minus docker is it.
bytes     Bytes sent to the worker for a second run after a params edit: projects/telco-churn on
          a one-worker cluster, run, `train.learning_rate` edited, run again. Printed: objects and
          bytes sent (ClusterRunner's `sent` and `sent_bytes`: snapshot and upstream objects the
          worker's cache lacked) for each run, the ratio, and the edited file's size.
sweep     A sweep's trials per minute on 1 and on 2 workers: the sweep of bench_sweep.py
          (random sampler, seed 1, --trials trials over train.learning_rate and
          train.num_leaves) through SweepService with jobs=2 (two trials at once), on a fresh
          cluster and workspace for each worker count; on the example (its stages compute: on
          this machine's cores two workers compete with each other and the client) and on
          `sleepy`, one stage that sleeps --sleep seconds (what the cluster's capacity gives when
          the cores are elsewhere, as on real worker machines). Printed: trials/min over the
          whole sweep and over trials 2..N (the first runs alone; with an odd --trials the rest
          run in pairs, so none runs alone at the end), which worker ran each trial's
          train, the machine's busy cores meanwhile, and the ratio of the medians over
          --sweep-rounds rounds (1 then 2 workers, alternated) of 2 workers / 1 worker.

Figures need `dask` (pip install -e .[cluster]) and, for the docker baseline, a Docker engine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
EXAMPLE = REPO / "projects" / "telco-churn"
SWEEP_SPECS = ("train.learning_rate=0.01..0.3:log", "train.num_leaves=15,31,63")
SECTIONS = ("overhead", "bytes", "sweep")
SWEEP_PROJECTS = ("telco-churn", "sleepy")
CHAIN = 5
"""Stages in the overhead project, each depending on the one before."""

os.environ.setdefault("WORKBENCH_MLFLOW_SYNC", "off")  # no background MLflow import competing for the cores

from workbench.core.ports import CancelToken  # noqa: E402

INTERRUPTED = CancelToken()
"""Every run and sweep here gets it: Ctrl-C (or a `kill`) cancels the stages in flight, on the
sweep's threads too, before the cluster is stopped."""


# -- the cluster ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _interrupt(_signum, _frame):
    INTERRUPTED.cancel("the benchmark was interrupted")
    raise KeyboardInterrupt  # a `kill` of the benchmark stops the cluster as Ctrl-C does


@contextlib.contextmanager
def dask_cluster(root: Path, workers: int) -> Iterator[str]:
    """A scheduler and `workers` workers (w1, w2...; one thread and `cpus=1` each, cache in
    root/wN), yielding the scheduler's address. They run in sessions of their own, so a Ctrl-C
    reaches this process only, which stops them in its `finally`; their logs go to root/*.log."""
    from distributed import Client

    root.mkdir(parents=True, exist_ok=True)
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    dask = str(Path(sys.executable).parent / "dask")
    procs: list[subprocess.Popen] = []

    def start(args: list[str], log: str, **extra_env: str) -> None:
        with open(root / log, "w") as out:
            procs.append(subprocess.Popen([dask, *args], env={**env, **extra_env}, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start(["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
              "scheduler.log")
        for n in range(1, workers + 1):
            start(["worker", address, "--nthreads", "1", "--resources", "cpus=1", "--no-dashboard",
                   "--name", f"w{n}"], f"w{n}.log", WORKBENCH_WORKER_CACHE=str(root / f"w{n}"))
        with Client(address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):  # workers first: they leave the scheduler cleanly
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        remove_workers_containers(root)


def remove_workers_containers(root: Path) -> None:
    """Once stages run in the workers' Docker engines, a worker that did not stop its warm
    workers (killed, or stopped mid-stage) leaves containers labelled with a workspace id kept
    in its cache folder: remove those whose owner is dead (the workbench's own orphan cleanup,
    which never touches another workbench's containers)."""
    states = {path.parent for path in root.glob("w*/**/workspace-id")}
    if not states:
        return  # stages ran with the workers' Python: no containers
    from workbench.adapters.docker_runner import DockerRunner
    from workbench.core.errors import WorkbenchError

    try:
        runner = DockerRunner(state_dir=next(iter(states)))
        removed = sum(runner.cleanup_orphans(state) for state in states)
    except WorkbenchError as exc:
        print(f"  the workers' leftover containers were not looked for: {exc}", file=sys.stderr)
        return
    if removed:
        print(f"  removed {removed} container(s) the stopped workers left", file=sys.stderr)


def close_runner(session) -> None:
    """Disconnect the cluster runner's client, or stop the docker runner's warm workers."""
    runner = getattr(session, "_runner", None)
    if runner is not None and hasattr(runner, "close"):
        runner.close()


def stage_states(record) -> dict[str, str]:
    return {s.stage: str(getattr(s.status, "value", s.status)) for s in record.stages}


# -- overhead ---------------------------------------------------------------------------------

def chain_manifest(stages: int = CHAIN) -> str:
    lines = ['[project]\nname = "chain"\n\n[environment]\nmemory = "256m"\ncpus = 1.0\n']
    for n in range(1, stages + 1):
        lines.append(f'[stages.s{n}]\ncommand = "python stage.py s{n}"\ninputs = ["stage.py"]\n'
                     f'params = ["common"]\noutputs = ["out.txt"]\n'
                     + (f'depends_on = ["s{n - 1}"]\n' if n > 1 else ""))
    return "\n".join(lines)


CHAIN_STAGE = """
import sys, wb
name = sys.argv[1]
n = int(name[1:])
params = wb.load_params("params.toml", "common")
before = open(wb.upstream(f"s{n - 1}", "out.txt")).read() if n > 1 else ""
print(f"{name}: round {params['round']}", flush=True)
open(wb.output_path("out.txt"), "w").write(before + f"{name} {params['round']}\\n")
"""


def write_chain(workspace: Path, round_: int = 0) -> Path:
    project = workspace / "chain"
    project.mkdir(parents=True, exist_ok=True)
    (project / "workbench.toml").write_text(chain_manifest())
    (project / "stage.py").write_text(CHAIN_STAGE)
    (project / "params.toml").write_text(f"[common]\nround = {round_}\n")
    return project


def per_stage_ms(seconds: list[float], stages: int = CHAIN) -> float:
    """The median run's wall time per stage, in milliseconds."""
    return statistics.median(seconds) / stages * 1000


def overhead(root: Path, repeats: int) -> None:
    from workbench.core.errors import WorkbenchError
    from workbench.services.session import WorkbenchSession

    print(f"== overhead: {CHAIN} chained trivial stages, median of {repeats} runs each (all stages rerun)")
    with dask_cluster(root / "cluster", workers=1) as address:
        sessions = {}
        try:
            for runner in ("local", "docker", "cluster"):
                write_chain(root / runner)
                session = WorkbenchSession(root / runner, runner=runner, scheduler=address)
                sessions[runner] = session
                try:
                    first = session.run("chain", cancel=INTERRUPTED)  # image build, warm worker start, snapshot sent
                except WorkbenchError as exc:
                    print(f"  {runner}: not measured ({exc})")
                    del sessions[runner]
                    continue
                if str(first.status) != "succeeded":
                    raise SystemExit(f"{runner}: the first run {first.status}: {first.reason}")
            times: dict[str, list[float]] = {runner: [] for runner in sessions}
            inside: dict[str, list[float]] = {runner: [] for runner in sessions}
            for round_ in range(1, repeats + 1):
                order = list(sessions)[round_ % len(sessions):] + list(sessions)[:round_ % len(sessions)]
                for runner in order:
                    write_chain(root / runner, round_)
                    start = time.perf_counter()
                    record = sessions[runner].run("chain", cancel=INTERRUPTED)
                    times[runner].append(time.perf_counter() - start)
                    inside[runner].append(sum(stage.duration_s for stage in record.stages))
                    states = stage_states(record)
                    if set(states.values()) != {"succeeded"} or len(states) != CHAIN:
                        raise SystemExit(f"{runner} round {round_}: {states} ({record.reason})")
        finally:
            for session in sessions.values():
                close_runner(session)
    ms = {runner: per_stage_ms(seconds) for runner, seconds in times.items()}
    labels = {"local": "local runner", "docker": "docker warm", "cluster": "cluster (1 worker)"}
    for runner, value in ms.items():
        spread = [s / CHAIN * 1000 for s in times[runner]]
        in_stage = per_stage_ms(inside[runner])
        print(f"  {labels[runner]:<20}{value:7.0f} ms per stage   (min {min(spread):.0f}, max {max(spread):.0f}; "
              f"in the stage {in_stage:.0f}, around it {value - in_stage:.0f})")
    if "cluster" in ms:
        for base in ("docker", "local"):
            if base in ms:
                print(f"  cluster - {labels[base]:<16}{ms['cluster'] - ms[base]:+7.0f} ms per stage   "
                      f"ratio {ms['cluster'] / ms[base]:.2f}x" + ("   (target < 150 ms)" if base == "docker" else ""))
        around = {runner: ms[runner] - per_stage_ms(inside[runner]) for runner in ms}
        print("  around the stage, cluster - " + ", ".join(
            f"{labels[base]}: {around['cluster'] - around[base]:+.0f} ms" for base in ("docker", "local") if base in ms)
            + "   (the cluster's own cost: submit, handshakes, log relay, outputs back)")


# -- bytes ------------------------------------------------------------------------------------

def edit_learning_rate(params: Path) -> None:
    text = params.read_text()
    edited = text.replace("learning_rate = 0.03", "learning_rate = 0.05", 1)
    if edited == text:
        raise SystemExit(f"{params}: no `learning_rate = 0.03` to edit")
    params.write_text(edited)


def sent_bytes(root: Path) -> None:
    from workbench.adapters.cluster_cache import folder_manifest
    from workbench.services.session import WorkbenchSession

    print("== bytes: telco-churn on 1 worker, run, edit train.learning_rate, run again")
    shutil.copytree(EXAMPLE, root / "ws" / "telco-churn")
    project = root / "ws" / "telco-churn"
    manifest = folder_manifest(project)
    size = sum((project / rel).stat().st_size for rel in manifest)
    with dask_cluster(root / "cluster", workers=1) as address:
        session = WorkbenchSession(root / "ws", runner="cluster", scheduler=address)
        try:
            runner = session.runner
            figures = []
            for label in ("run 1", "run 2"):
                if label == "run 2":
                    edit_learning_rate(project / "params.toml")
                objects, sent = len(runner.sent), runner.sent_bytes
                record = session.run("telco-churn", cancel=INTERRUPTED)
                figures.append((len(runner.sent) - objects, runner.sent_bytes - sent))
                print(f"  {label}: {record.status} {stage_states(record)}; sent {figures[-1][0]} objects, "
                      f"{figures[-1][1]:,} bytes")
        finally:
            close_runner(session)
    (first_n, first_b), (second_n, second_b) = figures
    print(f"  the project: {len(manifest)} files, {size:,} bytes; the edited params.toml: "
          f"{(project / 'params.toml').stat().st_size:,} bytes")
    print(f"  run 2 / run 1: {second_n} / {first_n} objects, {second_b:,} / {first_b:,} bytes = "
          f"{second_b / first_b:.5f} ({first_b / max(second_b, 1):,.0f}x less)")


# -- sweep ------------------------------------------------------------------------------------

def steady_rate(marks: list[float]) -> float:
    """Trials per minute over trials 2..N, from the trials' start times and the sweep's end
    (the last mark): with trials overlapping, the gaps between starts are the throughput."""
    gaps = [b - a for a, b in zip(marks, marks[1:])]
    return 60 / (sum(gaps[1:]) / len(gaps[1:]))


def cpu_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the whole machine so far, from /proc/stat (this benchmark's
    processes and everyone else's)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Cores busy on average between two cpu_ticks() readings."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return busy / total * (os.cpu_count() or 1) if total else 0.0


SLEEPY_MANIFEST = """
[project]
name = "sleepy"
primary_metric = "score"

[environment]
memory = "256m"
cpus = 1.0

[stages.train]
command = "python train.py"
inputs = ["train.py"]
params = ["train"]
outputs = ["model.txt"]
"""

SLEEPY_TRAIN = """
import math, time, wb
params = wb.load_params("params.toml", "train")
time.sleep({seconds!r})  # the stage waits rather than computes: trials at once need no more cores
open(wb.output_path("model.txt"), "w").write(repr(params))
wb.log_artifact("model.txt", "model")
wb.log_metrics({{"score": -abs(math.log(params["learning_rate"] / 0.05)) - params["num_leaves"] / 1000}})
"""


def write_sleepy(workspace: Path, seconds: float) -> None:
    """A one-stage project with the example's swept params whose stage sleeps `seconds`: what
    the cluster's capacity does for a sweep when the trials are not bound by this machine's
    cores."""
    project = workspace / "sleepy"
    project.mkdir(parents=True)
    (project / "workbench.toml").write_text(SLEEPY_MANIFEST)
    (project / "train.py").write_text(SLEEPY_TRAIN.format(seconds=seconds))
    (project / "params.toml").write_text("[train]\nlearning_rate = 0.03\nnum_leaves = 15\n")


def sweep_on(root: Path, project: str, workers: int, trials: int, seconds: float
             ) -> tuple[float, float, Counter, float, float]:
    """(trials/min over the whole sweep, over trials 2..N, trials' train stages per worker,
    cores busy on the machine meanwhile, CPU seconds of this process per trial)."""
    from workbench.adapters.cluster_runner import cluster_status
    from workbench.services.session import WorkbenchSession
    from workbench.services.sweep import SweepService
    from workbench.services.sweep_plan import SweepRequest

    if project == "telco-churn":
        shutil.copytree(EXAMPLE, root / "ws" / "telco-churn")
    else:
        write_sleepy(root / "ws", seconds)
    with dask_cluster(root / "cluster", workers) as address:
        session = WorkbenchSession(root / "ws", runner="cluster", scheduler=address)
        try:
            service = SweepService(session)
            plan = service.plan(SweepRequest(project, SWEEP_SPECS, trials=trials, sampler="random", seed=1,
                                             name="bench", jobs=2))
            marks: list[float] = []
            ticks, cpu = cpu_ticks(), time.process_time()
            start = time.perf_counter()
            report = service.start(plan, cancel=INTERRUPTED, jobs=2,
                                   on_trial_start=lambda _n, _v: marks.append(time.perf_counter()))
            wall = time.perf_counter() - start
            cores, client_cpu = busy_cores(ticks, cpu_ticks()), (time.process_time() - cpu) / trials
            marks.append(start + wall)
            names = {w.address: w.name for w in cluster_status(address)}
            ran_on = getattr(session.runner, "ran_on", {})
            where = Counter(names.get(ran_on[(t.run_id, "train")][0], "?") for t in report.trials
                            if (t.run_id, "train") in ran_on)
        finally:
            close_runner(session)
    failed = [(t.number, t.state, t.reason) for t in report.trials if t.state != "complete"]
    if failed:
        print(f"  {workers} worker(s): trials not complete: {failed}")
    return trials / wall * 60, steady_rate(marks), where, cores, client_cpu


def sweep(root: Path, projects: list[str], trials: int, seconds: float, rounds: int) -> None:
    for project in projects:
        what = "telco-churn (validate, then train and evaluate per trial)" if project == "telco-churn" else \
            f"sleepy (one stage per trial that sleeps {seconds:g} s)"
        print(f"== sweep: {trials} trials of {what}; jobs=2, workers --nthreads 1 --resources cpus=1; "
              f"{rounds} round(s) of 1 then 2 workers")
        rates: dict[int, list[float]] = {1: [], 2: []}
        for round_ in range(1, rounds + 1):  # alternated, so a busy moment of the machine hits both
            for workers in (1, 2):
                whole, steady, where, cores, client_cpu = sweep_on(root / f"{project}-{round_}-{workers}", project,
                                                                   workers, trials, seconds)
                rates[workers].append(steady)
                places = ", ".join(f"{w}: {n}" for w, n in sorted(where.items()))
                print(f"  {workers} worker(s): {whole:5.1f} trials/min whole sweep, {steady:5.1f} trials/min "
                      f"trials 2..N   (train stages per worker: {places}; machine busy {cores:.2f} of "
                      f"{os.cpu_count()} cores, everyone's processes; the client {client_cpu:.2f} CPU s per trial)")
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        print(f"  2 workers / 1 worker (trials 2..N, median of {rounds}): {two:.1f} / {one:.1f} trials/min = "
              f"{two / one:.2f}x")


# -- main -------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--repeats", type=int, default=7, help="overhead: timed runs per runner")
    parser.add_argument("--trials", type=int, default=9,
                        help="sweep: trials per sweep (odd: trials 2..N then run in pairs, none alone at the end)")
    parser.add_argument("--sweep-projects", nargs="+", choices=SWEEP_PROJECTS, default=list(SWEEP_PROJECTS),
                        help="sweep: the example, and/or a project whose one stage sleeps")
    parser.add_argument("--sleep", type=float, default=3.0, help="sweep: seconds the sleepy project's stage sleeps")
    parser.add_argument("--sweep-rounds", type=int, default=2, help="sweep: sweeps on 1 and on 2 workers, alternated")
    parser.add_argument("--dir", default=None, help="where the temp workspaces and worker caches go")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.trials < 3:
        parser().error("--trials must be at least 3 (the steady state is trials 2..N, two at once)")
    if args.repeats < 1 or args.sweep_rounds < 1:
        parser().error("--repeats and --sweep-rounds must be at least 1")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=args.dir))
    print(f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    try:
        if "overhead" in args.section:
            overhead(root / "overhead", args.repeats)
        if "bytes" in args.section:
            sent_bytes(root / "bytes")
        if "sweep" in args.section:
            sweep(root / "sweep", args.sweep_projects, args.trials, args.sleep, args.sweep_rounds)
    except KeyboardInterrupt:
        sys.exit(f"interrupted; the cluster is stopped, its logs and the workspaces are kept in {root}")
    except BaseException:
        print(f"the cluster is stopped; its logs and the workspaces are kept in {root}", file=sys.stderr)
        raise
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Issue 15, sweeps: throughput of `workbench sweep` on the example, and its overhead per trial
against the same training in a loop in one warm Python process.

    python benchmarks/bench_sweep.py [--trials 8] [--runner local|docker] [--cold] [--jobs 1 2] [--dir /tmp]

A copy of projects/telco-churn in a temp workspace; a sweep of --trials trials (random sampler,
seed 1) over train.learning_rate=0.01..0.3:log and train.num_leaves=15,31,63, run in process
through SweepService (what `workbench sweep` calls), once for each --jobs value (trials at once;
each in a fresh copy, so each sweep runs validate and starts its warm worker once). Printed:

  - trials per minute over the whole sweep (the first trial also runs validate and, on Docker,
    starts the project's warm worker), and over trials 2..N (validate reused: the steady state);
  - the baseline: the same trials' values, trained in a loop in this process (the example's
    common.load_split once, then lightgbm.train and the held-out AUC per trial, what the train
    stage does and the evaluate stage's AUC) -- no snapshot, no lineage, no per-trial process;
  - for each --jobs after the first: its trials per minute against the first's (the ratio);
  - the workbench's overhead per trial: steady-state seconds per trial minus the loop's. It
    includes what the evaluate stage does beyond the AUC (a predictions file, single-row latency,
    SHAP), which the loop leaves out: an upper bound on what the workbench itself costs. The
    time in the stages themselves (from the lineage) is printed too; the rest is the workbench's
    own work around them (params copy, snapshot, plan, lineage writes, registry, the study).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "projects" / "telco-churn"
SPECS = ("train.learning_rate=0.01..0.3:log", "train.num_leaves=15,31,63")


def sweep(workspace: Path, trials: int, runner: str, cold: bool, jobs: int = 1
          ) -> tuple[float, list[float], list[float], list[dict]]:
    """(wall seconds, seconds between trial starts, seconds in its stages per trial, each
    trial's values). With jobs > 1 trials overlap: the gaps between starts, not one trial's
    length, are what the steady-state throughput is."""
    os.environ.setdefault("WORKBENCH_MLFLOW_SYNC", "off")
    from workbench.services.session import WorkbenchSession
    from workbench.services.sweep import SweepService
    from workbench.services.sweep_plan import SweepRequest

    session = WorkbenchSession(workspace, runner=runner, cold=cold)
    service = SweepService(session)
    plan = service.plan(SweepRequest("telco-churn", SPECS, trials=trials, sampler="random", seed=1, name="bench",
                                     jobs=jobs))
    marks: list[float] = []
    start = time.perf_counter()
    report = service.start(plan, on_trial_start=lambda _n, _v: marks.append(time.perf_counter()), jobs=jobs)
    wall = time.perf_counter() - start
    marks.append(start + wall)
    per_trial = [b - a for a, b in zip(marks, marks[1:])]
    failed = [t for t in report.trials if t.state != "complete"]
    if failed:
        sys.exit(f"trials failed: {[(t.number, t.reason) for t in failed]}")
    in_stages = [sum(s.duration_s for s in session.get_run(t.run_id).stages) for t in report.trials]
    return wall, per_trial, in_stages, [t.params for t in report.trials]


def loop(values: list[dict]) -> list[float]:
    """Seconds per trial, training the same values in this process."""
    import tomllib

    sys.path[:0] = [str(EXAMPLE / "stages"), str(REPO / "workbench" / "runtime")]  # common.py imports wb
    cwd = os.getcwd()
    os.chdir(EXAMPLE)  # common.load reads data/churn.csv relative to the project
    try:
        import common
        import lightgbm as lgb
        from sklearn.metrics import roc_auc_score

        params_file = tomllib.loads((EXAMPLE / "params.toml").read_text())
        split = common.load_split(params_file["split"])
        train_df, test_df = split
        X, y = common.features(train_df), common.target(train_df)
        Xt, yt = common.features(test_df), common.target(test_df)
        times = []
        for trial in values:
            params = dict(params_file["train"])
            params.update({k.removeprefix("train."): v for k, v in trial.items()})
            rounds = params.pop("num_boost_round")
            start = time.perf_counter()
            booster = lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=rounds)
            roc_auc_score(yt, booster.predict(Xt))
            times.append(time.perf_counter() - start)
        return times
    finally:
        os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--runner", choices=["local", "docker"], default="local")
    parser.add_argument("--cold", action="store_true", help="Docker: a fresh container per stage")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="trials at once, one sweep each")
    parser.add_argument("--dir", default=None, help="where the temp workspace goes")
    args = parser.parse_args()
    if args.trials < 2:
        parser.error("--trials must be at least 2 (the steady state is trials 2..N)")
    mode = args.runner + (" cold" if args.cold else " warm" if args.runner == "docker" else "")
    rates: dict[int, float] = {}
    for jobs in args.jobs:
        root = Path(tempfile.mkdtemp(prefix="bench-sweep-", dir=args.dir))
        try:
            shutil.copytree(EXAMPLE, root / "telco-churn")
            wall, per_trial, in_stages, values = sweep(root, args.trials, args.runner, args.cold, jobs)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        # Trials 2..N: from the second trial's start to the end, per trial (with jobs > 1 the
        # first trial runs alone, then they overlap).
        steady = sum(per_trial[1:]) / (args.trials - 1)
        rates[jobs] = 60 / steady
        print(f"sweep of {args.trials} trials on telco-churn, runner {mode}, --jobs {jobs}")
        print(f"  whole sweep        {wall:7.1f} s   {args.trials / wall * 60:6.1f} trials/min "
              f"(first trial {per_trial[0]:.1f} s: validate, and the worker's start on Docker)")
        print(f"  trials 2..N        {steady:7.2f} s/trial   {rates[jobs]:6.1f} trials/min")
        stages = statistics.mean(in_stages[1:])
        print(f"  in stages          {stages:7.2f} s/trial   (the stage processes, from the lineage; summed over "
              f"stages, so with --jobs > 1 above the wall time per trial)")
    first = args.jobs[0]
    for jobs in args.jobs[1:]:
        print(f"--jobs {jobs} against --jobs {first}: {rates[jobs]:.1f} against {rates[first]:.1f} trials/min, "
              f"ratio {rates[jobs] / rates[first]:.2f}x")
    in_loop = loop(values)
    baseline = statistics.mean(in_loop)
    steady = 60 / rates[first]
    print(f"loop in-process      {baseline:7.2f} s/trial   {60 / baseline:6.1f} trials/min  (train + AUC only)")
    print(f"overhead per trial   {steady - baseline:7.2f} s (--jobs {first})   ratio {steady / baseline:.1f}x")


if __name__ == "__main__":
    main()

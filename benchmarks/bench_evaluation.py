"""What the evaluation the workbench computes (issue 12 item 3) adds to a run of the example.

    python benchmarks/bench_evaluation.py [--runner docker|local] [--repeats 5]

Copies projects/telco-churn into a temporary workspace, runs it once, then reruns only its
evaluate stage `--repeats` times with `predictions` declared and as many times without (each
rerun forced by a comment appended to stages/evaluate.py, so train is reused and the stage's
own work is identical either way), alternating the two so load on the machine hits both alike.
Prints the median run time of each and their difference, and the median of the evaluation
alone (read predictions.parquet, compute, record) timed in-process on the last run's file.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.core.evaluation import evaluate, evaluation_metrics  # noqa: E402
from workbench.services.session import WorkbenchSession  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "projects" / "telco-churn"
DECLARATION = 'predictions = "predictions.parquet"\n'


def _timed_run(session: WorkbenchSession, project: Path, counter: int) -> tuple[float, object]:
    with open(project / "stages" / "evaluate.py", "a") as script:
        script.write(f"# bench {counter}\n")
    started = time.perf_counter()
    record = session.run("telco-churn")
    elapsed = time.perf_counter() - started
    if str(record.status) not in ("succeeded", "gate_failed"):
        raise SystemExit(f"run {record.id} {record.status}: {record.reason}")
    return elapsed, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", choices=["docker", "local"], default="docker")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wb-bench-eval-") as folder:
        root = Path(folder)
        project = root / "telco-churn"
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".workbench", "__pycache__"))
        manifest = project / "workbench.toml"
        with_predictions = manifest.read_text()
        assert DECLARATION in with_predictions, "the example no longer declares its predictions"
        without = with_predictions.replace(DECLARATION, "")
        session = WorkbenchSession(root, runner=args.runner)
        _timed_run(session, project, 0)  # image, warm worker, train: not measured
        times: dict[bool, list[float]] = {True: [], False: []}
        last = None
        for i in range(args.repeats):
            for declared in (True, False):
                manifest.write_text(with_predictions if declared else without)
                elapsed, record = _timed_run(session, project, 2 * i + declared + 1)
                times[declared].append(elapsed)
                if declared:
                    last = record
        evaluate_dir = Path(next(s for s in last.stages if s.stage == "evaluate").output_dir)
        inner = _evaluation_alone(session, evaluate_dir, last.id, args.repeats * 4)

    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"runner {args.runner}, {args.repeats} runs each, evaluate stage rerun (train reused), cpus {os.cpu_count()}")
    print(f"  with predictions declared     median {on:.3f} s  ({', '.join(f'{t:.2f}' for t in times[True])})")
    print(f"  without                       median {off:.3f} s  ({', '.join(f'{t:.2f}' for t in times[False])})")
    print(f"  difference                    {1000 * (on - off):+.0f} ms")
    print(f"  evaluation alone (in-process) median {1000 * inner:.1f} ms "
          "(read predictions.parquet, compute, record the payload)")


def _evaluation_alone(session: WorkbenchSession, evaluate_dir: Path, run_id: int, repeats: int) -> float:
    from workbench.adapters.predictions_file import read_predictions

    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        preds = read_predictions(evaluate_dir / "predictions.parquet", "predictions.parquet", "churn",
                                 ("female", "senior_citizen"))
        payload = evaluate(preds, "classification", 0.5)
        evaluation_metrics(payload)
        session.store.save_evaluation(run_id, "evaluate", payload)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


if __name__ == "__main__":
    main()

"""Change-to-result latency: a params edit until the evaluate stage's metrics are recorded.

    python benchmarks/bench_warm.py [--repeats 7] [--skip-mlflow]

Side by side, on the example project and on a synthetic 50,000 x 20 LightGBM job:
  (a) warm: the project's warm worker container forks a child per stage;
  (b) cold: a fresh container per stage;
  (c) floor: the same stage code run in one already-warm host Python process (no container,
      no new process, no workbench), with the stage's thread budget (OMP_NUM_THREADS=1, as
      the projects' `cpus = 1.0` gives a stage);
  (d) `mlflow run --build-image` with a docker_env, the synthetic job only.
Prints medians and the ratios (b)/(a) (target >= 2.5), (a)/(c) (target <= 1.15) and (d)/(a).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workbench.adapters.docker_runner import DockerRunner  # noqa: E402
from workbench.adapters.warm_worker import thread_limits  # noqa: E402
from workbench.adapters.duckdb_store import DuckDBLineageStore  # noqa: E402
from workbench.core.model import RunStatus  # noqa: E402
from workbench.runtime import RUNTIME_DIR  # noqa: E402
from workbench.services.pipeline import PipelineService  # noqa: E402
from workbench.services.workspace import Workspace  # noqa: E402

SYNTH_MANIFEST = """
[project]
name = "synthetic"
primary_metric = "auc"

[environment]
requirements = "requirements.txt"
memory = "2g"
preload = ["lightgbm", "numpy"]

[stages.train]
command = "python train.py"
inputs = ["train.py", "params.toml", "data.npz"]
outputs = ["model.txt"]

[stages.evaluate]
command = "python evaluate.py"
inputs = ["evaluate.py", "data.npz"]
depends_on = ["train"]
"""
SYNTH_TRAIN = """
import sys, tomllib
import lightgbm as lgb
import numpy as np
import wb
params = wb.load_params("params.toml", "train") if "wb" in sys.modules else tomllib.load(open("params.toml", "rb"))["train"]
data = np.load("data.npz")
booster = lgb.train({**params, "objective": "binary", "verbose": -1, "num_threads": 1, "deterministic": True,
                     "seed": 7}, lgb.Dataset(data["X"][:40000], data["y"][:40000]), num_boost_round=100)
booster.save_model(wb.output_path("model.txt"))
"""
SYNTH_EVALUATE = """
import lightgbm as lgb
import numpy as np
import wb
data = np.load("data.npz")
booster = lgb.Booster(model_file=wb.upstream("train", "model.txt"))
score, y = booster.predict(data["X"][40000:]), data["y"][40000:]
order = np.argsort(score)
ranks = np.empty(len(score)); ranks[order] = np.arange(1, len(score) + 1)
pos = y == 1
auc = (ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum())
wb.log_metrics({"auc": auc})
"""
MLPROJECT = """
name: synthetic
docker_env:
  image: {image}
entry_points:
  main:
    command: "python train_mlflow.py"
"""
MLFLOW_TRAIN = """
import tomllib
import lightgbm as lgb
import numpy as np
params = tomllib.load(open("params.toml", "rb"))["train"]
data = np.load("data.npz")
booster = lgb.train({**params, "objective": "binary", "verbose": -1, "num_threads": 1, "deterministic": True,
                     "seed": 7}, lgb.Dataset(data["X"][:40000], data["y"][:40000]), num_boost_round=100)
score, y = booster.predict(data["X"][40000:]), data["y"][40000:]
print("trained", len(score))
"""


def make_synthetic(folder: Path) -> None:
    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50_000, 20))
    y = ((X[:, :5].sum(axis=1) + rng.normal(scale=2, size=50_000)) > 0).astype(int)
    np.savez(folder / "data.npz", X=X, y=y)
    (folder / "workbench.toml").write_text(SYNTH_MANIFEST)
    (folder / "train.py").write_text(textwrap.dedent(SYNTH_TRAIN))
    (folder / "evaluate.py").write_text(textwrap.dedent(SYNTH_EVALUATE))
    (folder / "params.toml").write_text("[train]\nlearning_rate = 0.1\nnum_leaves = 31\n")
    shutil.copy(REPO / "projects" / "telco-churn" / "requirements.txt", folder / "requirements.txt")


EDITS = itertools.count()


def edit_params(path: Path, _i: int) -> None:
    """A real edit each time, never a value seen before, so train and evaluate rerun."""
    i = next(EDITS)
    text = path.read_text()
    key = "learning_rate = "
    start = text.index(key) + len(key)
    end = text.index("\n", start)
    path.write_text(text[:start] + f"{0.05 + 0.0001 * i:.4f}" + text[end:])


def pipeline_latency(root: Path, name: str, runner: DockerRunner, repeats: int) -> list[float]:
    workspace = Workspace(root)
    store = DuckDBLineageStore(workspace.ensure_state_dir() / "lineage.duckdb")
    pipeline = PipelineService(workspace, store, runner)
    project = workspace.project(name)
    params = project.path / "params.toml"
    times = []
    for i in range(repeats + 1):  # the first builds the image / starts the worker: not counted
        edit_params(params, i)
        start = time.perf_counter()
        record = pipeline.run(project)
        elapsed = time.perf_counter() - start
        if record.status is not RunStatus.SUCCEEDED or record.reused_stages[-1:] == ["evaluate"]:
            raise SystemExit(f"{name}: run {record.id} did not rerun evaluate: {record.reason}")
        if i:
            times.append(elapsed)
    return times


def floor_latency(project: Path, stages: list[str], repeats: int) -> list[float]:
    """The stage scripts, in this already-warm process: the cost of the work itself, with the
    thread budget the stage gets in its container (see `main`)."""
    import lightgbm  # noqa: F401  (imports paid once, before timing, as in the warm worker)
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import sklearn.metrics  # noqa: F401

    sys.path.insert(0, str(RUNTIME_DIR))
    out = Path(tempfile.mkdtemp())
    cwd = os.getcwd()
    os.chdir(project)
    times = []
    try:
        for i in range(repeats + 1):
            edit_params(project / "params.toml", i)
            start = time.perf_counter()
            for stage in stages:
                quiet = contextlib.redirect_stdout(io.StringIO())
                os.environ.update(WB_PROJECT_DIR=str(project), WB_OUTPUT_DIR=str(out / stage),
                                  WB_UPSTREAM_DIR=str(out), WB_STAGE=stage)
                script = next(p for p in (project / "stages" / f"{stage}.py", project / f"{stage}.py") if p.exists())
                sys.argv = [str(script)]
                if str(script.parent) not in sys.path:
                    sys.path.insert(0, str(script.parent))  # as `python script.py` does
                with quiet:
                    runpy.run_path(str(script), run_name="__main__")
            if i:
                times.append(time.perf_counter() - start)
    finally:
        os.chdir(cwd)
    return times


def mlflow_latency(project: Path, image: str, repeats: int) -> list[float]:
    (project / "MLproject").write_text(MLPROJECT.format(image=image))
    (project / "train_mlflow.py").write_text(textwrap.dedent(MLFLOW_TRAIN))
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{project.parent}/mlflow.db")
    times = []
    for i in range(repeats):
        edit_params(project / "params.toml", i)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "mlflow", "run", str(project), "--build-image",
                               "--experiment-name", "bench"], capture_output=True, text=True, env=env,
                              cwd=project.parent)  # mlflow puts ./mlruns artifacts in the cwd
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            print(f"  mlflow run failed: {done.stderr.strip().splitlines()[-1:]}")
            return []
    return times


def report(label: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"  {label:<44} {median * 1000:8.0f} ms   (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    # The floor gets the thread pools a stage gets in its container (OMP_NUM_THREADS from the
    # manifest's `cpus`, 1.0 in both projects), so (a)/(c) measures the workbench, not the CPU
    # limit. libgomp reads this when lightgbm is first imported, which is after this line.
    assert "lightgbm" not in sys.modules
    os.environ.update(thread_limits(1.0))
    n = args.repeats
    warm, cold = DockerRunner(mode="warm"), DockerRunner(mode="cold")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "projects" / "telco-churn", root / "example" / "telco-churn",
                        ignore=shutil.ignore_patterns(".workbench"))
        make_synthetic(root / "synth" / "synthetic")
        floor_copy = root / "floor"
        shutil.copytree(root / "example" / "telco-churn", floor_copy / "telco-churn")
        shutil.copytree(root / "synth" / "synthetic", floor_copy / "synthetic")

        results = {}
        for name, folder, stages in (("telco-churn", root / "example", ["train", "evaluate"]),
                                     ("synthetic", root / "synth", ["train", "evaluate"])):
            print(f"\n{name}: params edit -> evaluate metrics recorded, median of {n}")
            a = report("(a) warm worker", pipeline_latency(folder, name, warm, n))
            b = report("(b) fresh container per stage (--cold)", pipeline_latency(folder, name, cold, n))
            c = report("(c) floor: stage code in a warm host process", floor_latency(floor_copy / name, stages, n))
            d = None
            if name == "synthetic" and not args.skip_mlflow:
                image = warm.prepare(str(folder / name), Workspace(folder).project(name).manifest.environment,
                                     lambda _l: None, project=name).image_tag
                times = mlflow_latency(floor_copy / name, image, max(3, n // 2))
                d = report("(d) mlflow run --build-image (docker_env)", times) if times else None
            results[name] = (a, b, c, d)
            print(f"  (b)/(a) = {b / a:.2f}  (target >= 2.5: {'ok' if b / a >= 2.5 else 'MISSED'})")
            print(f"  (a)/(c) = {a / c:.2f}  (target <= 1.15: {'ok' if a / c <= 1.15 else 'MISSED'})")
            if d:
                print(f"  (d)/(a) = {d / a:.2f}")
    warm.close()


if __name__ == "__main__":
    main()

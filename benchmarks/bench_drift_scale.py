"""Drift at scale (issue 13): `workbench drift` on a 1,000,000-row reference and 200,000-row
batches of 50 columns, and on 100,000 x 1,000, against Evidently 0.7's DataDriftPreset on the
same files in the same run.

    python benchmarks/bench_drift_scale.py [--repeats 3] [--data DIR] [--evidently-venv DIR]
                                           [--no-evidently] [--no-wide] [--profile DIR] [--quick]
    # another tree's engine, without merging it: its workbench is imported from PYTHONPATH, here
    # and in every process the benchmark starts
    cd /work/wt/fastdrift && PYTHONPATH=$PWD python /path/to/benchmarks/bench_drift_scale.py

The data is generated once, deterministically (numpy, seeded; written by DuckDB in chunks of
about 5 million cells, so generating stays near 1 GB of memory), and cached under --data (default
/tmp/wb-bench-drift-scale) in files named by their parameters: a rerun reads them. 40 numeric
columns (normal, lognormal, integer counts, and normal with 5% missing) and 10 categorical ones
(strings, 3 to 50 categories); each batch drifts like a real one: one column shifted by one
standard deviation, another by a quarter, one category mix reversed. The wide case has 950
numeric and 50 categorical columns, its batch 100,000 rows too.

Each figure is a separate `python -m workbench -w WS drift scale BATCH --json --no-retrain`
process, start-up included, as a user runs it: wall time, and peak RSS from the kernel's
accounting of that child (os.wait4). Per repeat a fresh workspace whose project's [data] paths is
the reference (no run yet: the reference is the data file as it is now) checks two different
batches (a batch is checked once per content, so every check has its own seed):

  first check    the reference is read (or profiled, and the profile stored)
  cached check   a second batch against the same reference, in a new process: what a reference
                 cache kept on disk (.workbench/drift) saves shows here

Evidently runs in its own virtual environment (--evidently-venv, default /tmp/wb-evidently-venv;
made on demand with `pip install "evidently==0.7.*" "pandas<3" pyarrow`: Evidently 0.7 needs
pandas < 3), in a process that reads both Parquet files with pandas and runs
Report([DataDriftPreset()]) with the columns' types given. Medians over --repeats; Evidently is
not run on the wide case unless --evidently-wide (it takes minutes there).

Targets (issue 13): the cached check under 3 s and under 1 GB peak, over 30 times faster than
Evidently; the wide case's cached check within 10 s. --quick: 100,000 / 20,000 rows x 50 and
5,000 x 200, one repeat, no Evidently, under a minute (the targets are for the full sizes).
A check over --rss-cap-gb (default 8) is killed and reported as such: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

REPO = Path(__file__).resolve().parents[1]
# The workbench under test: PYTHONPATH's when set (another tree's engine), else this repository's.
WORKBENCH_PATH = os.environ.get("PYTHONPATH") or str(REPO)

GENERATOR = 1
"""Part of every data file's name: bump it when the generated data changes."""
CHUNK_CELLS = 5_000_000
PROJECT = "scale"
TARGET_CACHED_S, TARGET_PEAK_MB, TARGET_RATIO, TARGET_WIDE_S = 3.0, 1024.0, 30.0, 10.0
NUMERIC_KINDS = ("normal", "normal", "lognormal", "counts", "normal", "lognormal", "counts", "missing")
CATEGORY_SIZES = (3, 5, 8, 12, 20, 30, 50, 4, 6, 10)


@dataclass(frozen=True)
class Shape:
    name: str
    reference_rows: int
    batch_rows: int
    numeric: int
    categorical: int

    @property
    def label(self) -> str:
        return f"{self.reference_rows:,} / {self.batch_rows:,} rows x {self.numeric + self.categorical:,} columns"


MAIN = Shape("main", 1_000_000, 200_000, 40, 10)
WIDE = Shape("wide", 100_000, 100_000, 950, 50)
QUICK_MAIN = Shape("main", 100_000, 20_000, 40, 10)
QUICK_WIDE = Shape("wide", 5_000, 5_000, 190, 10)


# -- data ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    """normal, lognormal, counts, missing (normal with 5% null) or category."""
    a: float
    b: float
    categories: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()


def columns(shape: Shape) -> list[Column]:
    """The columns' distributions, the same for the reference and every batch of a shape."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(shape.numeric):
        kind = NUMERIC_KINDS[i % len(NUMERIC_KINDS)]
        if kind == "lognormal":
            a, b = rng.uniform(2, 6), rng.uniform(0.3, 1.0)  # mu, sigma of the log
        elif kind == "counts":
            a, b = rng.uniform(0.5, 40), 0.0  # Poisson mean
        else:
            a, b = rng.uniform(-100, 100), rng.uniform(1, 50)
        out.append(Column(f"num_{i:03d}", kind, float(a), float(b)))
    for j in range(shape.categorical):
        size = CATEGORY_SIZES[j % len(CATEGORY_SIZES)]
        weights = rng.dirichlet(np.full(size, 2.0))
        out.append(Column(f"cat_{j:02d}", "category", 0, 0, tuple(f"c{j:02d}_{k:02d}" for k in range(size)),
                          tuple(float(w) for w in weights)))
    return out


def drifted(column: Column) -> Column:
    """A batch's version of the column: num_000 shifted by 1 sd, num_004 by 0.25 sd, cat_00's
    mix reversed; the rest as in the reference."""
    if column.name == "num_000":
        return Column(column.name, column.kind, column.a + column.b, column.b)
    if column.name == "num_004":
        return Column(column.name, column.kind, column.a + 0.25 * column.b, column.b)
    if column.name == "cat_00":
        return Column(column.name, column.kind, 0, 0, column.categories, column.weights[::-1])
    return column


def values(column: Column, rng: np.random.Generator, rows: int) -> np.ndarray:
    if column.kind == "category":
        return np.array(column.categories, dtype=object)[rng.choice(len(column.categories), rows, p=column.weights)]
    if column.kind == "lognormal":
        return np.round(rng.lognormal(column.a, column.b, rows), 2)
    if column.kind == "counts":
        return rng.poisson(column.a, rows).astype(np.int64)
    out = np.round(rng.normal(column.a, column.b, rows), 4)
    if column.kind == "missing":
        out[rng.random(rows) < 0.05] = np.nan  # DuckDB writes a NaN from numpy as null
    return out


def table_file(data: Path, shape: Shape, role: str, seed: int) -> Path:
    """The Parquet file of a shape's reference (role "reference") or of a batch, generated on
    first use (to a temporary name, then renamed: an interrupted run leaves no half file)."""
    rows = shape.reference_rows if role == "reference" else shape.batch_rows
    ncols = shape.numeric + shape.categorical
    path = data / f"g{GENERATOR}-{role}-{rows}x{ncols}-{shape.numeric}n-seed{seed}.parquet"
    if path.exists():
        return path
    data.mkdir(parents=True, exist_ok=True)
    spec = columns(shape)
    if role == "batch":
        spec = [drifted(c) for c in spec]
    rng = np.random.default_rng(seed)
    step = max(1, CHUNK_CELLS // ncols)
    parts = Path(tempfile.mkdtemp(prefix=f".{path.stem}-", dir=data))
    try:
        con = duckdb.connect(":memory:")
        con.execute("SET memory_limit = '1GB'")
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET temp_directory = '{parts / 'spill'}'")  # not .tmp in the current folder
        for k, start in enumerate(range(0, rows, step)):
            chunk = {c.name: values(c, rng, min(step, rows - start)) for c in spec}
            con.register("chunk", chunk)
            con.execute(f"COPY (SELECT * FROM chunk) TO '{parts / f'part-{k:05d}.parquet'}' (FORMAT parquet)")
            con.unregister("chunk")
            del chunk
        tmp = parts / "all.parquet"
        # A row group of DuckDB's default 122,880 rows x 1,000 columns does not fit the memory
        # limit (the merge thrashed for minutes); 20 million cells a group does.
        group = min(122_880, max(10_000, 20_000_000 // ncols))
        con.execute(f"COPY (SELECT * FROM read_parquet('{parts}/part-*.parquet')) TO '{tmp}' "
                    f"(FORMAT parquet, ROW_GROUP_SIZE {group})")
        con.close()
        os.replace(tmp, path)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return path


# -- measuring a process -------------------------------------------------------------------------

@dataclass(frozen=True)
class Measured:
    wall_s: float
    peak_mb: float
    code: int
    stdout: str
    stderr: str
    killed: str = ""
    """Why the benchmark killed it (over the memory cap, past the timeout), else empty."""


def measure(cmd: list[str], env: dict[str, str], cap_mb: float, timeout_s: float) -> Measured:
    """Run `cmd`; its wall time and peak RSS (the kernel's, for this child alone, by wait4).
    A watcher kills it past `cap_mb` of RSS or `timeout_s`."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        done, killed = threading.Event(), []

        def watch() -> None:
            while not done.wait(0.05):
                rss = _rss_mb(proc.pid)
                over = f"over the {cap_mb:,.0f} MB cap" if rss > cap_mb else (
                    f"past {timeout_s:,.0f} s" if time.perf_counter() - start > timeout_s else "")
                if over:
                    killed.append(f"killed {time.perf_counter() - start:.1f} s in, {over}")
                    os.kill(proc.pid, signal.SIGKILL)
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Measured(wall, usage.ru_maxrss / 1024, proc.returncode, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"), killed[0] if killed else "")


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# -- the workbench -------------------------------------------------------------------------------

MANIFEST = f"""\
[project]
name = "{PROJECT}"

[data]
paths = ["data/reference.parquet"]
incoming = "data/incoming"

[stages.train]
command = "python train.py"

[watch]
ignore = ["data/incoming/**"]
"""


def workspace(root: Path, reference: Path) -> Path:
    """A workspace with one project whose data file is `reference` (hard-linked: no copy)."""
    project = root / PROJECT
    (project / "data" / "incoming").mkdir(parents=True)
    (project / "workbench.toml").write_text(MANIFEST)
    (project / "train.py").write_text("raise SystemExit('the drift benchmark never trains')\n")
    _link(reference, project / "data" / "reference.parquet")
    return root


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=WORKBENCH_PATH, WORKBENCH_MLFLOW_SYNC="off")
    env.pop("WORKBENCH_WORKSPACE", None)
    return env


def check(ws: Path, batch: Path, args, profile: Path | None = None) -> tuple[Measured, str]:
    """`workbench drift` of `batch` (linked into the incoming folder first); the figure and a
    one-line summary of the verdict."""
    incoming = ws / PROJECT / "data" / "incoming"
    _link(batch, incoming / batch.name)
    cmd = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else []) + [
        "-m", "workbench", "-w", str(ws), "drift", PROJECT, batch.name, "--json", "--no-retrain", "--runner", "local"]
    result = measure(cmd, child_env(), args.rss_cap_gb * 1024, args.timeout)
    if result.killed:
        return result, result.killed
    if result.code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {result.code}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    try:
        shown = json.loads(result.stdout)
    except json.JSONDecodeError:
        return result, f"(no JSON: {result.stdout[:200]!r})"
    return result, shown.get("summary") or str(shown.get("verdict"))


# -- Evidently -----------------------------------------------------------------------------------

EVIDENTLY_SCRIPT = """\
import json, sys, time
start = time.perf_counter()
import pandas as pd
import pyarrow.parquet as pq
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

reference_file, batch_file = sys.argv[1], sys.argv[2]
imported = time.perf_counter()
reference, batch = pd.read_parquet(reference_file), pd.read_parquet(batch_file)
read = time.perf_counter()
schema = pq.read_schema(reference_file)
text = {f.name for f in schema if str(f.type) in ("string", "large_string")}
definition = DataDefinition(numerical_columns=[c for c in reference.columns if c not in text],
                            categorical_columns=[c for c in reference.columns if c in text])
snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(batch, data_definition=definition),
                                           Dataset.from_pandas(reference, data_definition=definition))
ran = time.perf_counter()
drifted = next(m["value"] for m in snapshot.dict()["metrics"] if m["metric_name"].startswith("DriftedColumnsCount"))
print(json.dumps({"import_s": imported - start, "read_s": read - imported, "run_s": ran - read,
                  "drifted": drifted["count"], "share": drifted["share"]}))
"""


def evidently_python(venv: Path) -> Path:
    """The venv's python with Evidently 0.7 importable, made on first use."""
    python = venv / "bin" / "python"
    probe = "import evidently, pandas, pyarrow; assert evidently.__version__.startswith('0.7.'), evidently.__version__"
    if python.exists() and subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0:
        return python
    print(f"making Evidently's virtual environment in {venv} (a few minutes, once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    log = venv / "pip-install.log"
    with open(log, "w") as fh:
        done = subprocess.run([str(python), "-m", "pip", "install", "evidently==0.7.*", "pandas<3", "pyarrow"],
                              stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode != 0 or subprocess.run([str(python), "-c", probe]).returncode != 0:
        raise SystemExit(f"could not install Evidently 0.7 into {venv}: see {log}")
    return python


def evidently(python: Path, script: Path, reference: Path, batch: Path, args) -> tuple[Measured, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = measure([str(python), str(script), str(reference), str(batch)], env, args.rss_cap_gb * 1024,
                     args.timeout)
    if result.killed:
        return result, result.killed
    if result.code != 0:
        raise SystemExit(f"Evidently exited {result.code}:\n{result.stderr[-4000:]}")
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    return result, (f"{shown['drifted']:.0f} columns drifted ({shown['share']:.0%}); import {shown['import_s']:.1f} s, "
                    f"read {shown['read_s']:.1f} s, preset {shown['run_s']:.1f} s")


# -- the run -------------------------------------------------------------------------------------

@dataclass
class Figure:
    case: str
    what: str
    runs: list[Measured]
    note: str = ""

    @property
    def complete(self) -> bool:
        return bool(self.runs) and not any(r.killed for r in self.runs)

    @property
    def wall(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def peak(self) -> float:
        return statistics.median(r.peak_mb for r in self.runs)

    def row(self) -> str:
        walls = [r.wall_s for r in self.runs]
        spread = f"({min(walls):.2f}-{max(walls):.2f})" if len(walls) > 1 else ""
        flag = "" if self.complete or "killed" in self.note else "  [a run was killed]"
        return (f"  {self.what:<34} {self.wall:>8.2f} s {spread:<15} {self.peak:>8,.0f} MB   "
                f"{self.note}{flag}")


def run_case(shape: Shape, args, data: Path, python: Path | None, script: Path, profile_dir: Path | None,
             with_evidently: bool) -> dict[str, Figure]:
    print(f"\n{shape.name}: {shape.label} — generating or reading the cached data ...", flush=True)
    start = time.perf_counter()
    reference = table_file(data, shape, "reference", 1)
    firsts = [table_file(data, shape, "batch", 1000 + i) for i in range(args.repeats)]
    seconds = [table_file(data, shape, "batch", 2000 + i) for i in range(args.repeats)]
    print(f"  data ready in {time.perf_counter() - start:.1f} s: reference {reference.stat().st_size / 2**20:,.0f} MB,"
          f" each batch {firsts[0].stat().st_size / 2**20:,.0f} MB (Parquet) in {data}", flush=True)
    figures = {k: Figure(shape.name, w, []) for k, w in (("first", "workbench first check"),
                                                         ("cached", "workbench cached check"))}
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="wb-bench-drift-ws-", dir=args.work) as tmp:
            ws = workspace(Path(tmp), reference)
            for key, batch in (("first", firsts[i]), ("cached", seconds[i])):
                result, note = check(ws, batch, args)
                figures[key].runs.append(result)
                figures[key].note = note
                stored = len(list((ws / ".workbench" / "drift" / "profiles").glob("*")))
                print(f"  repeat {i + 1}: {figures[key].what}: {result.wall_s:.2f} s, {result.peak_mb:,.0f} MB peak"
                      f" — {note} [{stored} reference profile file(s) in .workbench/drift/profiles]", flush=True)
    if with_evidently and python is not None:
        figures["evidently"] = Figure(shape.name, "Evidently 0.7 DataDriftPreset", [])
        for i in range(args.repeats):
            result, note = evidently(python, script, reference, seconds[i], args)
            figures["evidently"].runs.append(result)
            figures["evidently"].note = note
            print(f"  repeat {i + 1}: Evidently: {result.wall_s:.2f} s, {result.peak_mb:,.0f} MB peak — {note}",
                  flush=True)
            if result.killed:
                break
    if profile_dir is not None:
        profile(shape, args, data, reference, profile_dir)
    return figures


def profile(shape: Shape, args, data: Path, reference: Path, profile_dir: Path) -> None:
    """Both checks again under cProfile (batches of their own), and where their time goes."""
    import pstats

    profile_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wb-bench-drift-ws-", dir=args.work) as tmp:
        ws = workspace(Path(tmp), reference)
        for key, seed in (("first", 3000), ("cached", 3001)):
            out = profile_dir / f"{shape.name}-{key}.prof"
            result, note = check(ws, table_file(data, shape, "batch", seed), args, profile=out)
            print(f"\n  cProfile of the {key} check ({result.wall_s:.2f} s under the profiler; {out}):")
            if not out.exists():
                print(f"    no profile written: {note}")
                continue
            stats = pstats.Stats(str(out))
            stats.sort_stats("cumulative").print_stats(22)
            stats.sort_stats("tottime").print_stats(12)


def code_under_test() -> str:
    env = child_env()
    where = subprocess.run([sys.executable, "-c", "import workbench; print(workbench.__file__)"], env=env,
                           capture_output=True, text=True).stdout.strip()
    tree = Path(where).parents[1] if where else REPO
    commit = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.splitlines()
    edits = f", with {len(dirty)} uncommitted file(s) changed" if dirty else ""
    return f"{where} (commit {commit[:90] or 'unknown'}{edits})"


def verdicts(figures: dict[str, dict[str, Figure]], quick: bool) -> list[str]:
    lines = []

    def target(text: str, ok: bool | None, measured: str) -> None:
        mark = "n/a " if ok is None else ("pass" if ok else "MISS")
        lines.append(f"  {mark}  {text:<48} {measured}")

    main = figures.get("main", {})
    cached = main.get("cached")
    if cached:
        target(f"main: cached check under {TARGET_CACHED_S:g} s", cached.complete and cached.wall < TARGET_CACHED_S,
               f"{cached.wall:.2f} s" + ("" if cached.complete else " (killed)"))
        target(f"main: cached check under {TARGET_PEAK_MB:,.0f} MB peak",
               cached.complete and cached.peak < TARGET_PEAK_MB, f"{cached.peak:,.0f} MB")
        ev = main.get("evidently")
        if ev and ev.complete and cached.complete:
            ratio = ev.wall / cached.wall
            first = ev.wall / main["first"].wall if main["first"].complete else float("nan")
            target(f"main: over {TARGET_RATIO:g}x faster than Evidently", ratio > TARGET_RATIO,
                   f"{ratio:.1f}x ({ev.wall:.1f} s / {cached.wall:.2f} s; first check: {first:.1f}x)")
        else:
            target(f"main: over {TARGET_RATIO:g}x faster than Evidently", None, "Evidently not run")
    wide = figures.get("wide", {}).get("cached")
    if wide:
        target(f"wide: cached check within {TARGET_WIDE_S:g} s", wide.complete and wide.wall <= TARGET_WIDE_S,
               f"{wide.wall:.2f} s, {wide.peak:,.0f} MB peak" + ("" if wide.complete else " (killed)"))
    if quick:
        lines.append("  (--quick sizes: the targets are for the full sizes; these marks only show the wiring)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("/tmp/wb-bench-drift-scale"),
                        help="where generated Parquet files are cached (default /tmp/wb-bench-drift-scale)")
    parser.add_argument("--evidently-venv", type=Path, default=Path("/tmp/wb-evidently-venv"))
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--evidently-wide", action="store_true", help="run Evidently on the wide case too")
    parser.add_argument("--no-wide", action="store_true", help="skip the 100,000 x 1,000 case")
    parser.add_argument("--no-main", action="store_true", help="skip the 1,000,000 / 200,000 x 50 case")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also run each case's checks under cProfile, write DIR/CASE-CHECK.prof, print the top")
    parser.add_argument("--rss-cap-gb", type=float, default=8.0, help="kill a check past this RSS (default 8)")
    parser.add_argument("--timeout", type=float, default=900.0, help="kill a check after this many seconds")
    parser.add_argument("--work", type=Path, default=None, help="where temporary workspaces go (default $TMPDIR)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat, no Evidently: under a minute")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.no_evidently = 1, True
    shapes = [s for s, skip in ((QUICK_MAIN if args.quick else MAIN, args.no_main),
                                (QUICK_WIDE if args.quick else WIDE, args.no_wide)) if not skip]
    print(f"workbench: {code_under_test()}")
    print(f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; repeats {args.repeats}")
    python = None if args.no_evidently else evidently_python(args.evidently_venv)
    figures: dict[str, dict[str, Figure]] = {}
    with tempfile.TemporaryDirectory(prefix="wb-bench-evidently-") as tmp:
        script = Path(tmp) / "evidently_drift.py"
        script.write_text(EVIDENTLY_SCRIPT)
        for shape in shapes:
            with_evidently = shape.name == "main" or args.evidently_wide
            figures[shape.name] = run_case(shape, args, args.data, python, script, args.profile, with_evidently)
    print("\nmedians (wall time of the process, start-up included; peak RSS):")
    for shape in shapes:
        print(f"{shape.name}: {shape.label}")
        for figure in figures[shape.name].values():
            print(figure.row())
    print("\ntargets (issue 13):")
    print("\n".join(verdicts(figures, args.quick)))


if __name__ == "__main__":
    main()

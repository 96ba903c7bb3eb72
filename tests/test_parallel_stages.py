"""Parallel stages on the local runner, with a real DuckDB file and real processes: two
independent stages run at once, a failing branch lets the other finish and skips its
dependents, --fail-fast cancels the rest, and the record keeps the manifest's order."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workbench.core.events import StageFinished, StageLog, StageStarted
from workbench.core.model import RunStatus, StageStatus
from workbench.services.session import WorkbenchSession

# a -> (left, right) -> join. Each branch sleeps as long as its `sleep` file says, and fails
# when its `fail` file says so; the join reads both branches' outputs.
MANIFEST = """
[project]
name = "diamond"

[environment]
{environment}

[stages.a]
command = "python stage.py a"
inputs = ["stage.py"]

[stages.left]
command = "python stage.py left"
inputs = ["stage.py", "left.*"]
depends_on = ["a"]

[stages.right]
command = "python stage.py right"
inputs = ["stage.py", "right.*"]
depends_on = ["a"]

[stages.join]
command = "python stage.py join"
inputs = ["stage.py"]
depends_on = ["left", "right"]
"""

STAGE = """
import os, sys, time, wb
name = sys.argv[1]
def setting(suffix, default):
    path = f"{name}.{suffix}"
    return open(path).read().strip() if os.path.exists(path) else default
print(f"{name} starts", flush=True)
time.sleep(float(setting("sleep", "0")))
if setting("fail", "no") == "yes":
    sys.exit(f"{name} was told to fail")
if name == "join":
    for up in ("left", "right"):
        open(wb.upstream(up, "done.txt")).read()
print(f"{name} ends", flush=True)
open(wb.output_path("done.txt"), "w").write(name)
"""


def write_diamond(root: Path, sleep: float = 0.0, fail: str | None = None, environment: str = "") -> Path:
    project = root / "diamond"
    project.mkdir(parents=True)
    (project / "workbench.toml").write_text(MANIFEST.format(environment=environment))
    (project / "stage.py").write_text(textwrap.dedent(STAGE))
    for branch in ("left", "right"):
        (project / f"{branch}.sleep").write_text(str(sleep))
    if fail:
        (project / f"{fail}.fail").write_text("yes")
    return project


def run(workspace: Path, **kwargs):
    events = []
    session = WorkbenchSession(workspace, runner="local")
    record = session.run("diamond", on_event=events.append, **kwargs)
    return record, events


def by_stage(record):
    return {s.stage: s for s in record.stages}


@pytest.mark.slow
def test_two_independent_stages_run_at_once(tmp_path):
    write_diamond(tmp_path, sleep=2.0)
    start = time.monotonic()
    record, events = run(tmp_path, jobs=2)
    elapsed = time.monotonic() - start
    assert record.status is RunStatus.SUCCEEDED, record.reason
    # 2 s each: one after the other would take 4 s and more.
    assert elapsed < 3.5, f"the run took {elapsed:.1f} s: the branches did not overlap"
    stages = by_stage(record)
    left, right = stages["left"], stages["right"]
    assert left.started_at < right.finished_at and right.started_at < left.finished_at
    assert stages["join"].started_at >= max(left.finished_at, right.finished_at)


@pytest.mark.slow
def test_jobs_1_runs_one_stage_at_a_time(tmp_path):
    write_diamond(tmp_path, sleep=1.0)
    record, _events = run(tmp_path, jobs=1)
    stages = by_stage(record)
    assert record.status is RunStatus.SUCCEEDED, record.reason
    assert stages["right"].started_at >= stages["left"].finished_at


def test_a_failing_branch_lets_the_other_finish_and_skips_its_dependents(tmp_path):
    write_diamond(tmp_path, sleep=0.5, fail="left")
    record, _events = run(tmp_path, jobs=2)
    stages = by_stage(record)
    assert record.status is RunStatus.FAILED
    assert record.reason.startswith("stage left failed")
    assert stages["left"].status is StageStatus.FAILED
    assert stages["right"].status is StageStatus.SUCCEEDED
    assert stages["join"].status is StageStatus.SKIPPED
    assert stages["join"].reason == "not run: upstream stage left failed"


def test_fail_fast_cancels_the_running_branch_and_the_rest(tmp_path):
    project = write_diamond(tmp_path, fail="left")
    (project / "right.sleep").write_text("30")
    start = time.monotonic()
    record, _events = run(tmp_path, jobs=2, fail_fast=True)
    assert time.monotonic() - start < 15, "fail-fast did not stop the sleeping branch"
    stages = by_stage(record)
    assert record.status is RunStatus.FAILED and record.reason.startswith("stage left failed")
    assert stages["right"].status is StageStatus.CANCELLED
    assert stages["right"].reason == "fail-fast: stage left failed"
    assert stages["join"].status is StageStatus.CANCELLED


def test_the_record_keeps_the_manifests_order_whatever_order_stages_finish(tmp_path):
    project = write_diamond(tmp_path)
    (project / "left.sleep").write_text("1.0")  # right finishes first
    record, events = run(tmp_path, jobs=2)
    finished = [e.result.stage for e in events if isinstance(e, StageFinished)]
    assert finished == ["a", "right", "left", "join"]
    assert [s.stage for s in record.stages] == ["a", "left", "right", "join"]
    again = WorkbenchSession(tmp_path, runner="local").get_run(record.id)
    assert [s.stage for s in again.stages] == ["a", "left", "right", "join"]


def test_each_log_line_names_its_stage_when_stages_interleave(tmp_path):
    write_diamond(tmp_path, sleep=0.3)
    _record, events = run(tmp_path, jobs=2)
    lines = [(e.stage, e.line) for e in events if isinstance(e, StageLog)]
    for stage in ("left", "right"):
        assert (stage, f"{stage} starts") in lines and (stage, f"{stage} ends") in lines
    started = [e.stage for e in events if isinstance(e, StageStarted)]
    assert sorted(started[1:3]) == ["left", "right"]


def test_environment_jobs_in_the_manifest_is_the_default(tmp_path):
    write_diamond(tmp_path, sleep=0.5, environment="jobs = 1")
    record, _events = run(tmp_path)
    stages = by_stage(record)
    assert stages["right"].started_at >= stages["left"].finished_at


def test_cli_run_jobs_and_fail_fast(tmp_path):
    project = write_diamond(tmp_path, fail="right")
    (project / "left.sleep").write_text("30")
    done = subprocess.run(
        [sys.executable, "-m", "workbench.cli.main", "-w", str(tmp_path), "run", "diamond", "--runner", "local",
         "--jobs", "2", "--fail-fast"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "right │ right starts" in done.stdout  # each line says its stage
    assert "left cancelled" in done.stdout and "fail-fast: stage right failed" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "workbench.cli.main", "-w", str(tmp_path), "run", "diamond",
                          "--jobs", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 64 and "--jobs/-j: must be at least 1, got 0" in bad.stderr


def test_a_bad_jobs_value_in_the_manifest_names_the_key(tmp_path):
    write_diamond(tmp_path, environment="jobs = 0")
    with pytest.raises(Exception, match=r"environment\.jobs.*between 1 and 64"):
        run(tmp_path)


def test_the_tuis_live_run_shows_every_running_stage(tmp_path):
    """The runs table's status of a live run names both parallel stages, with the count of the
    one that reports progress (the TUI draws it from the same events as the CLI)."""
    from workbench.core.events import RunStarted, StageProgress
    from workbench.ui.live import LiveRun

    live = LiveRun.from_event(RunStarted(1, "diamond", ("a", "left", "right", "join"), "local", "manual"))
    live.apply(StageStarted(1, "left"))
    live.apply(StageStarted(1, "right"))
    live.apply(StageProgress(1, "right", 3, 10, "rounds"))
    assert live.summary() == "left + right 3/10"


def test_the_lineage_store_takes_writes_from_parallel_stage_threads(tmp_path):
    """What parallel stages do to the store at the same moment (look for a reusable result,
    save an evaluation; the run's profiler beside them), from many threads on one real file:
    no error, nothing lost. One DuckDB instance per process, one transaction at a time."""
    import threading

    from workbench.adapters.duckdb_store import DuckDBLineageStore

    store = DuckDBLineageStore(tmp_path / "lineage.duckdb")
    run_id, _started = store.start_run("diamond", str(tmp_path), "manual", "local", [], [])
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def stage(n: int) -> None:
        try:
            barrier.wait()
            for i in range(10):
                assert store.find_reusable_stage("diamond", f"s{n}", f"key{i}") is None
                store.save_evaluation(run_id, f"s{n}-{i}", {"n": n, "i": i})
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=stage, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    saved = store.evaluations(run_id)
    assert len(saved) == 80 and saved["s7-9"] == {"n": 7, "i": 9}


SOLO = """
[project]
name = "{name}"

[environment]
cpus = 2

[stages.work]
command = "python -c 'import time; time.sleep(1.0)'"
"""


@pytest.mark.slow
def test_runs_of_one_session_share_its_cpus(tmp_path):
    """Two watched projects run at the same time (each on a thread, as watch and the TUI do),
    under the session's one budget: with 2 CPUs and stages of 2 CPUs each, they take turns,
    and the one that waits says why."""
    import threading

    from workbench.services.stage_budget import StageBudget

    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "workbench.toml").write_text(SOLO.format(name=name))
    session = WorkbenchSession(tmp_path, runner="local")
    session.stage_budget = StageBudget(cpus=2)
    session.store  # opened once, before the threads
    records, events = {}, []

    def run_project(name: str) -> None:
        records[name] = session.run(name, on_event=events.append)

    threads = [threading.Thread(target=run_project, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = sorted((records["one"].stages[0], records["two"].stages[0]), key=lambda s: s.started_at)
    assert first.status is second.status is StageStatus.SUCCEEDED
    assert second.started_at >= first.finished_at, "the two stages ran at once beyond the budget"
    waits = [e.line for e in events if isinstance(e, StageLog) and "waiting for CPUs" in e.line]
    assert waits == ["waiting for CPUs: stages of other runs use 2 of the 2 this workbench has, "
                     "and this stage needs 2"]
    assert session.stage_budget.used == 0


def test_a_cancelled_run_stops_waiting_for_cpus(tmp_path):
    from workbench.core.ports import CancelToken
    from workbench.services.stage_budget import StageBudget

    budget = StageBudget(cpus=1)
    assert budget.acquire(1, CancelToken(), print)
    token, said = CancelToken(), []
    token.cancel("superseded")
    assert budget.acquire(1, token, said.append) is False
    assert said == [] and budget.used == 1
    budget.release(1)
    assert budget.acquire(4, CancelToken(), said.append), "wider than the budget: runs alone"

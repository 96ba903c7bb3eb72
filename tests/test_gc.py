"""`workbench gc` on real workspaces: real DuckDB, real files, runs made by the local runner
(and one drift retrain on the example project). After gc every pointer resolves, the audit
verifies, kept runs and their outputs read, `reproduce` of the production version works,
deleted runs are gone, and the bytes reported are the bytes the disk got back; a dry run
deletes nothing and names what gc then deletes; gc waits for a run in progress and a TUI
open on the workspace refreshes without the deleted runs."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_pipeline_local import write_project
from tests.test_tui import private_config  # noqa: F401 (autouse fixture: no developer config)
from workbench.adapters.duckdb_gc import AnchorBehind
from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.adapters.gc_files import StateFiles
from workbench.adapters.gc_lock import gc_lock
from workbench.core.gc_plan import GcFacts, RunFact, VersionFact, plan_runs
from workbench.services.gc import GcService
from workbench.services.session import WorkbenchSession
from workbench.services.workspace import Workspace

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
REPO = Path(__file__).resolve().parents[1]
P = "tiny"
PARTS = ("objects", "snapshots", "runs", "deploy", "drift", "workers")


def ok(done, code: int = 0):
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def scale(ws: Path, value: float, extra: str = "") -> None:
    (ws / P / "params.toml").write_text(f"[fit]\nscale = {value}\n{extra}")


def state_bytes(ws: Path) -> int:
    """The bytes gc may free: every inode under the parts gc deletes from, once."""
    sizes = StateFiles(ws / ".workbench").size()
    return sum(sizes[p] for p in PARTS)


def listing(ws: Path) -> set[str]:
    state = ws / ".workbench"
    return {str(p.relative_to(state)) for part in PARTS for p in (state / part).rglob("*")}


ENV = {"WORKBENCH_USER": "ana", "WORKBENCH_MLFLOW_SYNC": "off"}
"""Synced by `mirror sync` when a test wants it, not by background processes racing it."""


@pytest.fixture(scope="module")
def history_template(tmp_path_factory) -> Path:
    """Six runs of `tiny`: versions 1-5, staging and production moved and rolled back, and the
    newest run reusing prep from run 1 and fit from run 3 (a reused stage keeps the original
    run's output folder); everything sent to MLflow. Built once; each test gets a copy."""
    root = tmp_path_factory.mktemp("history")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ENV.items():
            mp.setenv(name, value)
        mp.setenv("WORKBENCH_MLFLOW_URI", f"sqlite:///{root / 'mlflow.db'}")
        ws = root / "ws"
        write_project(ws)
        (ws / P / "workbench.toml").write_text((ws / P / "workbench.toml").read_text() +
                                               "\n[promotion]\ntolerance = 10\n")
        session = WorkbenchSession(ws, runner="local")
        for value in (1.5, 1.6, 1.7, 1.8, 1.9):
            scale(ws, value)
            record = session.run(P)
            assert str(record.status) == "succeeded", record.reason
        registry = session.registry
        for version, alias in ((1, "staging"), (1, "production"), (2, "staging"), (2, "production")):
            assert registry.promote(P, version, alias, reason="test").allowed
        assert registry.rollback(P, reason="back").allowed  # production: 1 again; staging: 2
        scale(ws, 1.7)  # the params of run 3: fit is reused from it
        reused = session.run(P)
        assert {s.stage: s.reused_from_run for s in reused.stages} == {"prep": 1, "fit": 3}, reused.stages
        # What the MLflow outbox still has to send is kept until it is sent.
        pending = json.loads(ok(wb(ws, "gc", "--keep", "1", "--dry-run", "--json")).stdout)
        assert pending["runs"] == {} and "waiting for the MLflow mirror" in pending["kept_runs"]["4"]
        ok(wb(ws, "mirror", "sync"))
    return root


@pytest.fixture
def history(history_template: Path, tmp_path: Path, monkeypatch) -> Path:
    """A copy of the template workspace (`cp -a` keeps the snapshots' hard links to objects,
    and the workspace's paths are relative: a copy works) and of its MLflow store."""
    subprocess.run(["cp", "-a", str(history_template / "ws"), str(tmp_path / "ws")], check=True)
    shutil.copy(history_template / "mlflow.db", tmp_path / "mlflow.db")
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path / "ws"


@pytest.mark.slow
def test_gc_keeps_what_pointers_the_audit_and_kept_runs_need(history):
    ws = history
    before_runs = {r["id"] for r in json.loads(ok(wb(ws, "runs", "--json", "--limit", "0")).stdout)}
    assert before_runs == {1, 2, 3, 4, 5, 6}
    files_before = listing(ws)
    dry = json.loads(ok(wb(ws, "gc", "--keep", "1", "--grace", "0", "--dry-run", "--json")).stdout)
    assert listing(ws) == files_before  # a dry run deletes nothing
    assert {r["id"] for r in json.loads(ok(wb(ws, "runs", "--json", "--limit", "0")).stdout)} == before_runs
    # Kept: 6 (newest), 1 (production, audit), 2 (staging, audit), 3 (run 6 reused its fit),
    # 5 (the newest version: its number is never handed out again). Run 4 and version 4 go.
    assert dry["runs"] == {P: [4]}, dry["kept_runs"]
    assert dry["versions"] == [{"project": P, "version": 4}]
    kept = {int(k): v for k, v in dry["kept_runs"].items()}
    assert set(kept) == {1, 2, 3, 5, 6}
    assert kept[3] == "run 6 reused its outputs" and kept[1].startswith("version 1: in production")
    assert dry["snapshots"] and dry["objects"] and dry["bytes"] > 0

    size_before = state_bytes(ws)
    real = json.loads(ok(wb(ws, "gc", "--keep", "1", "--grace", "0", "--json")).stdout)
    assert {k: v for k, v in real.items() if k not in ("dry_run", "notes")} == \
        {k: v for k, v in dry.items() if k not in ("dry_run", "notes")}
    assert state_bytes(ws) == size_before - real["bytes"]
    assert not (ws / ".workbench" / "runs" / "4").exists()

    runs = json.loads(ok(wb(ws, "runs", "--json", "--limit", "0")).stdout)
    assert {r["id"] for r in runs} == {1, 2, 3, 5, 6}
    assert "run 4 not found" in ok(wb(ws, "show", "4"), 3).stderr
    for run_id in (1, 2, 3, 5, 6):  # every kept run's detail and outputs read
        record = json.loads(ok(wb(ws, "show", str(run_id), "--json")).stdout)
        for stage in record["stages"]:
            assert Path(stage["output_dir"]).is_dir(), (run_id, stage["stage"])
            for artifact in stage["artifacts"]:
                assert Path(artifact["path"]).is_file()
    models = {m["version"]: m for m in json.loads(ok(wb(ws, "models", P, "--json")).stdout)}
    assert set(models) == {1, 2, 3, 5}
    assert (models[1]["status"], models[2]["status"]) == ("production", "staging")
    verified = ok(wb(ws, "history", P, "--verify"))
    assert verified.stdout.startswith("✓ audit trail intact"), verified.stdout
    for alias, version in (("production", 1), ("staging", 2)):
        meta = json.loads((ws / ".workbench" / "deploy" / P / alias / "metadata.json").read_text())
        assert meta["version"] == version
        assert (ws / ".workbench" / "deploy" / P / alias / meta["model_file"]).is_file()

    reproduced = json.loads(ok(wb(ws, "reproduce", "1", "--runner", "local", "--json")).stdout)
    assert reproduced["matched"], reproduced

    # The reproduction (run 7) is now the newest: run 6, and run 3 it kept, go next time.
    again = json.loads(ok(wb(ws, "gc", "--keep", "1", "--grace", "0", "--json")).stdout)
    assert again["runs"] == {P: [3, 6]} and again["versions"] == [{"project": P, "version": 3}], again
    nothing = json.loads(ok(wb(ws, "gc", "--keep", "1", "--grace", "0", "--json")).stdout)
    assert nothing["runs"] == {} and nothing["bytes"] == 0 and nothing["snapshots"] == nothing["objects"] == []
    assert ok(wb(ws, "history", P, "--verify")).stdout.startswith("✓ audit trail intact")
    # The next version gets a number nobody had: 6, not 4 or 5 again.
    scale(ws, 2.5)
    assert "registered as version 6" in ok(wb(ws, "run", P, "--runner", "local", "-q")).stdout


def test_keep_from_the_manifest_and_what_doctor_reports(history):
    ws = history
    manifest = ws / P / "workbench.toml"
    manifest.write_text(manifest.read_text() + "\n[gc]\nkeep_runs = 100\n")
    nothing = json.loads(ok(wb(ws, "gc", "--grace", "0", "--dry-run", "--json")).stdout)
    assert nothing["runs"] == {} and nothing["bytes"] == 0
    manifest.write_text(manifest.read_text().replace("keep_runs = 100", "keep_runs = 1"))
    plan = json.loads(ok(wb(ws, "gc", "--grace", "0", "--dry-run", "--json")).stdout)
    assert plan["runs"] == {P: [4]}
    text = ok(wb(ws, "gc", "--dry-run")).stdout  # the default grace keeps what was made a moment ago
    assert text.startswith("dry run: nothing deleted; would delete 1 run, 1 model version, 0 snapshots"), text
    doctor = {c["name"]: c for c in json.loads(wb(ws, "doctor", "--json").stdout)}
    assert "`workbench gc` would free" in doctor["size"]["detail"]
    assert "(1 of 6 runs" in doctor["size"]["detail"], doctor["size"]
    assert "keep_runs" not in doctor["size"]["detail"]  # something to free: no advice
    manifest.write_text(manifest.read_text().replace("keep_runs = 1", "keep_runs = 100"))
    doctor = {c["name"]: c for c in json.loads(wb(ws, "doctor", "--json").stdout)}
    # Nothing to free: the setting that decided it, and how to see more.
    assert "would free 0 B (0 of 6 runs" in doctor["size"]["detail"], doctor["size"]
    assert "newest `[gc] keep_runs` runs" in doctor["size"]["detail"]
    assert "workbench gc --keep N --dry-run" in doctor["size"]["detail"]


@pytest.mark.slow
def test_with_the_mirror_off_its_queue_pins_nothing_and_is_closed_for_what_goes(history, monkeypatch):
    ws = history
    scale(ws, 3.0)
    ok(wb(ws, "run", P, "--runner", "local", "-q"))  # run 7: its items wait in the outbox
    scale(ws, 3.1)
    ok(wb(ws, "run", P, "--runner", "local", "-q"))  # run 8
    pinned = json.loads(ok(wb(ws, "gc", "--keep", "1", "--grace", "0", "--dry-run", "--json")).stdout)
    assert pinned["runs"] == {P: [3, 4, 5, 6]}, pinned
    off = json.loads(ok(wb(ws, "gc", "--keep", "1", "--grace", "0", "--json",
                           env={"WORKBENCH_MLFLOW_URI": "off"})).stdout)
    assert off["runs"] == {P: [3, 4, 5, 6, 7]}, off
    status = json.loads(ok(wb(ws, "mirror", "status", "--json")).stdout)
    assert status["pending"] == 2, status  # run 8's log_run and register_version, nothing of run 7
    ok(wb(ws, "mirror", "sync"))
    assert json.loads(ok(wb(ws, "mirror", "status", "--json")).stdout)["pending"] == 0


@pytest.mark.slow
def test_bad_inputs_are_clear_errors(history):
    ws = history
    assert "--keep must be zero or more" in ok(wb(ws, "gc", "--keep", "-1"), 3).stderr
    assert "no project 'nope'" in ok(wb(ws, "gc", "nope"), 3).stderr
    assert ok(wb(ws, "gc", "--keep", "many"), 64).stderr
    with gc_lock(ws / ".workbench", exclusive=False):  # a run in progress, as far as gc can tell
        busy = ok(wb(ws, "gc", "--keep", "1", "--wait", "0.5"), 3).stderr
    assert "runs are in progress on this workspace" in busy and "waited 0.5 s" in busy, busy
    assert {r["id"] for r in json.loads(ok(wb(ws, "runs", "--json")).stdout)} == {1, 2, 3, 4, 5, 6}
    # An anchor a crash left behind (the promotion committed, its anchor write lost): opening
    # the workspace repairs it (it verifies with the key), and gc, which re-anchors when it
    # deletes a version, leaves a chain that verifies.
    anchor = ws / ".workbench" / "audit" / "anchor.json"
    behind = anchor.read_bytes()
    ok(wb(ws, "promote", P, "5", "--to", "staging", "--yes"))
    anchor.write_bytes(behind)
    # Without that repair (the store opened bare, as a process mid-promotion would leave it),
    # gc does not guess: it deletes nothing and says what to do.
    bare = GcService(Workspace(ws), DuckDBLineageStore(ws / ".workbench" / "lineage.duckdb"))
    with pytest.raises(AnchorBehind, match="nothing was deleted"):
        bare.collect(keep=1, grace_s=0)
    repaired = ok(wb(ws, "gc", "--keep", "1", "--grace", "0"))
    assert "re-verified and repaired" in repaired.stderr and "tiny version 4" in repaired.stdout, repaired.stderr
    assert ok(wb(ws, "history", P, "--verify")).stdout.startswith("✓ audit trail intact")
    manifest = ws / P / "workbench.toml"
    manifest.write_text(manifest.read_text() + "\n[gc]\nkeep_runs = -3\n")
    bad = ok(wb(ws, "gc", P), 3).stderr
    assert "gc.keep_runs: must be between 0 and 1000000, got -3" in bad, bad
    # Every project: the one whose setting is unknown keeps all its runs, and says why.
    kept = json.loads(ok(wb(ws, "gc", "--json")).stdout)
    assert kept["runs"] == {} and "gc.keep_runs: must be between" in kept["notes"][0]


def test_leftovers_go_and_drift_profiles_follow_their_objects(history):
    ws = history
    state = ws / ".workbench"
    session = WorkbenchSession(ws, runner="local")
    doomed_snapshot = session.get_run(4).snapshot_id
    kept_snapshot = session.get_run(1).snapshot_id
    objects = {p.parent.name + p.name: p for p in (state / "objects").glob("*/*")}
    inodes_kept = {f.stat().st_ino for f in (state / "snapshots" / kept_snapshot).rglob("*") if f.is_file()}
    gone = next(sha for sha, p in objects.items() if p.stat().st_ino not in inodes_kept and
                any(f.stat().st_ino == p.stat().st_ino for f in (state / "snapshots" / doomed_snapshot).rglob("*")))
    stays = next(sha for sha, p in objects.items() if p.stat().st_ino in inodes_kept)
    profiles = state / "drift" / "profiles"
    profiles.mkdir(parents=True)
    for sha in (gone, stays):
        (profiles / f"{sha}-reference.npz").write_bytes(b"x" * 100)
        (profiles / f"{sha}-reference.json").write_text("{}")
    (state / "runs" / "999" / "fit").mkdir(parents=True)  # a run folder the store never heard of
    half = state / "deploy" / P / "releases" / "9-unfinished"  # a promotion that died copying
    half.mkdir(parents=True)
    (half / "model.json").write_text("{}")
    dead, alive = state / "workers" / "abc-111-dead", state / "workers" / "abc-222-alive"
    for folder in (dead, alive):  # warm workers' control folders: one's process is gone
        (folder / "slot" / "in").mkdir(parents=True)
        (folder / "owner.lock").touch()
        (folder / "slot" / "in" / "data.txt").write_text("rows\n")
    owner = os.open(alive / "owner.lock", os.O_RDWR)
    fcntl.flock(owner, fcntl.LOCK_EX)

    try:
        report = GcService(session.workspace, session.store).collect(keep=1, grace_s=0)
    finally:
        os.close(owner)
    assert "workers/abc-111-dead (its process is gone)" in report.folders and not dead.exists()
    assert alive.exists() and not any("alive" in f for f in report.folders)
    assert report.profiles == [f"{gone}-reference.json", f"{gone}-reference.npz"]
    assert sorted(p.name for p in profiles.iterdir()) == [f"{stays}-reference.json", f"{stays}-reference.npz"]
    assert gone in report.objects and stays not in report.objects
    assert report.releases == [f"{P}/9-unfinished"] and not half.exists()
    assert "runs/999 (no such run)" in report.folders and not (state / "runs" / "999").exists()
    assert report.snapshots == [doomed_snapshot]


# -- the plan alone ------------------------------------------------------------------------

def test_plan_keeps_newest_pins_and_what_kept_runs_reused():
    runs = (RunFact(1, "a", "succeeded", snapshot_id="s1"), RunFact(2, "a", "succeeded", snapshot_id="s2"),
            RunFact(3, "a", "failed", snapshot_id="s3"),
            RunFact(4, "a", "succeeded", snapshot_id="s4", reused_from=frozenset({2})),
            RunFact(5, "a", "running"), RunFact(6, "b", "succeeded", snapshot_id="s1"),
            RunFact(7, "a", "succeeded", trigger="reproduce", snapshot_id="s1"),
            RunFact(8, "a", "succeeded", trigger="reproduce", snapshot_id="s1"))
    facts = GcFacts(runs, (VersionFact("a", 1, 1), VersionFact("a", 2, 3), VersionFact("a", 3, 4)),
                    {("a", 1): "in production"}, {})
    plan = plan_runs(facts, {"a": 1}, 0)
    # 8 is the newest of a; 5 runs; 1 holds production; 4 the newest version; 2 reused by 4;
    # 8 (already kept) is run 1's newest reproduction; 7 and 3 go, with version 2; b keeps none.
    assert set(plan.kept) == {1, 2, 4, 5, 8}
    assert plan.deleted == (3, 6, 7) and plan.deleted_versions == (("a", 2),)
    assert plan.kept[2] == "run 4 reused its outputs" and plan.kept[5] == "running"
    assert plan.kept_snapshots == frozenset({"s1", "s2", "s4"})
    only_b = plan_runs(facts, {"a": 1}, 0, only_project="b")
    assert only_b.deleted == (6,)
    with pytest.raises(ValueError):
        plan_runs(facts, {}, -1)


# -- concurrency: a watch process's run in progress, a TUI open, and gc --------------------

SLEEPY_FIT = """
import json, time, wb
params = wb.load_params("params.toml", "fit")
data = open(wb.upstream("prep", "clean.txt")).read()
time.sleep(params.get("sleep", 0))
json.dump({"data": data, "scale": params["scale"]}, open(wb.output_path("model.json"), "w"))
wb.log_artifact("model.json", "model")
wb.log_metrics({"score": params["scale"] * 0.5})
"""


def _process(ws: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workbench", "-w", str(ws), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHONPATH": str(REPO), "WORKBENCH_MLFLOW_SYNC": "off"})


@pytest.mark.slow
def test_gc_waits_for_a_watch_run_in_progress_and_an_open_tui_refreshes(tmp_path, monkeypatch):
    import asyncio

    from tests.test_tui import make_app, wait_for

    monkeypatch.setenv("WORKBENCH_MLFLOW_SYNC", "off")
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    ws = tmp_path / "ws"
    write_project(ws, **{"fit.py": SLEEPY_FIT})
    session = WorkbenchSession(ws, runner="local")
    for value in (1.5, 1.6, 1.7):
        scale(ws, value)
        assert str(session.run(P).status) == "succeeded"
    ok(wb(ws, "mirror", "sync"))  # what is not sent yet is kept: sent, runs 2 and 3 may go

    async def scenario() -> None:
        app = make_app(ws)
        async with app.run_test(size=(120, 36)) as pilot:
            main = app.main_screen
            await wait_for(pilot, lambda: main.table.loaded and main.table.total == 3, what="the app")
            main.table.focus()
            await pilot.press("down")  # run 2, which gc will delete, shown in the detail pane
            await wait_for(pilot, lambda: main.table.current is not None and main.table.current.id == 2,
                           what="run 2 selected")
            watch = _process(ws, "watch", P, "--runner", "local", "-q")
            try:
                await asyncio.sleep(3)  # the watcher is up
                scale(ws, 2.0, "sleep = 6\n")  # the watch's run: prep reused from run 1, fit sleeps 6 s
                await wait_for(pilot, lambda: main.table.total == 4 and main.table.row(0) is not None
                               and main.table.row(0).status == "running", timeout=30, what="the watch's run")
                gc = await asyncio.to_thread(
                    subprocess.run, [sys.executable, "-m", "workbench", "-w", str(ws), "gc", "--keep", "1",
                                     "--grace", "0", "--json"], capture_output=True, text=True, timeout=120,
                    env=os.environ | {"PYTHONPATH": str(REPO)})
                assert gc.returncode == 0, gc.stderr
                assert "waiting for the runs in progress to finish" in gc.stderr
                report = json.loads(gc.stdout)
                # gc waited: the watch's run 4 was recorded first, and is the newest; run 1 is
                # what it reused; runs 2 and 3 go.
                assert report["runs"] == {P: [2, 3]}, report
                await wait_for(pilot, lambda: main.table.total == 2, timeout=5, what="the TUI without runs 2, 3")
                await wait_for(pilot, lambda: {main.table.row(i).id for i in range(2) if main.table.row(i)} == {1, 4},
                               timeout=5, what="runs 4 and 1 listed")
                await wait_for(pilot, lambda: main.detail.run_id in (1, 4), timeout=5,
                               what="the detail pane on a run that still exists")
                await pilot.press("up", "down", "down")
                await pilot.pause(0.5)
            finally:
                watch.send_signal(2)
                out, err = watch.communicate(timeout=60)
            assert [n for n in app.notes if n[0] == "error"] == [], app.notes
            assert "Traceback" not in err and "error" not in err.lower(), err
            assert "succeeded" in out, out

    asyncio.run(scenario())
    run = session.get_run(4)
    assert str(run.status) == "succeeded" and str(run.trigger) == "watch"
    prep, fit = run.stages
    assert prep.reused_from_run == 1 and Path(prep.output_dir, "clean.txt").is_file()
    assert Path(fit.output_dir, "model.json").is_file()
    assert {r.id for r in session.runs(P, limit=10)} == {1, 4}


@pytest.mark.slow
def test_a_drift_retrain_its_batch_and_reference_survive_gc(tmp_path, monkeypatch):
    from tests.test_drift import batch, in_production, sales
    from tests.test_drift import write_project as write_shop

    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WORKBENCH_MLFLOW_SYNC", "off")
    ws = tmp_path / "ws"
    write_shop(ws)
    session = WorkbenchSession(ws, runner="local")
    in_production(session)  # run 1: version 1 in staging and production

    def rerun(n: int) -> None:
        evaluate = ws / "shop" / "evaluate.py"
        evaluate.write_text(evaluate.read_text() + f"# edit {n}\n")
        assert str(session.run("shop").status) == "succeeded"

    rerun(2), rerun(3)
    batch(ws, "drifted.csv", sales(400, seed=8, shift=15, mix=(0.1, 0.2, 0.7)))
    drift = ok(wb(ws, "drift", "shop", "drifted.csv", "--runner", "local", "-q"))
    assert "registered as version 2" in drift.stdout and "trigger drift" in drift.stdout
    rerun(5), rerun(6)
    ok(wb(ws, "mirror", "sync"))

    report = json.loads(ok(wb(ws, "gc", "--keep", "1", "--grace", "0", "--json")).stdout)
    kept = {int(k): v for k, v in report["kept_runs"].items()}
    assert report["runs"] == {"shop": [2, 3, 5]}, kept
    assert kept[4].startswith("version 2") or kept[4] == "drift batch 1's retrain", kept
    assert kept[1].startswith("version 1: in production")
    listed = ok(wb(ws, "drift", "shop")).stdout
    assert "run 4 ✓ → v2 registered" in listed, listed
    assert any((ws / ".workbench" / "runs").glob("drift-*/score/metrics.json"))  # the check's scoring stays
    assert ok(wb(ws, "history", "shop", "--verify")).stdout.startswith("✓ audit trail intact")
    retrain = json.loads(ok(wb(ws, "show", "4", "--json")).stdout)
    assert retrain["trigger"] == "drift" and all(Path(s["output_dir"]).is_dir() for s in retrain["stages"])
    reproduced = json.loads(ok(wb(ws, "reproduce", "4", "--runner", "local", "--json")).stdout)
    assert reproduced["matched"], reproduced  # its snapshot, with the training data plus the batch, is kept


@pytest.mark.docker
@pytest.mark.slow
def test_gc_on_the_example_in_docker_then_reproduce_production(tmp_path, monkeypatch, docker_base_image):
    """The example project in real containers (warm worker; `reproduce` cold): three runs,
    version 1 in production, gc keeps it and the newest, and production still reproduces."""
    monkeypatch.setenv("WORKBENCH_BASE_IMAGE", docker_base_image)
    monkeypatch.setenv("WORKBENCH_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WORKBENCH_MLFLOW_SYNC", "off")
    ws, name = tmp_path / "ws", "telco-churn"
    shutil.copytree(REPO / "projects" / name, ws / name, ignore=shutil.ignore_patterns(".workbench"))
    manifest = ws / name / "workbench.toml"
    # Single-row latency on a busy shared host is not what this test is about.
    manifest.write_text(manifest.read_text().replace('latency_p95_ms = "<= 50"', 'latency_p95_ms = "<= 1000"'))
    params = ws / name / "params.toml"
    for rounds in (200, 150, 120):
        params.write_text(re.sub(r"num_boost_round = \d+", f"num_boost_round = {rounds}", params.read_text()))
        ok(wb(ws, "run", name, "--runner", "docker", "-q"))
    for alias in ("staging", "production"):
        ok(wb(ws, "promote", name, "1", "--to", alias, "--yes"))
    ok(wb(ws, "mirror", "sync"))
    size_before = state_bytes(ws)
    report = json.loads(ok(wb(ws, "gc", "--keep", "1", "--grace", "0", "--json")).stdout)
    assert report["runs"] == {name: [2]} and report["versions"] == [{"project": name, "version": 2}], report
    assert state_bytes(ws) == size_before - report["bytes"]
    assert ok(wb(ws, "history", name, "--verify")).stdout.startswith("✓ audit trail intact")
    meta = json.loads((ws / ".workbench" / "deploy" / name / "production" / "metadata.json").read_text())
    assert meta["version"] == 1
    reproduced = json.loads(ok(wb(ws, "reproduce", "1", "--runner", "docker", "--json")).stdout)
    assert reproduced["matched"], reproduced

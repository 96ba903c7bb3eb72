"""Watch mode end to end: real watchdog, real files, the local runner, a real DuckDB file.

Every test asserts what ran, from the lineage store, not only the events. Waits poll with a
timeout (no fixed sleeps), so the set stays fast and does not flake on a slow machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.test_pipeline_local import MANIFEST, write_project
from workbench.core.events import (
    ChangeDetected, ChangeIgnored, ManifestInvalid, ManifestReloaded, RunFinished, RunStarted, RunSuperseded,
    StageStarted, WatchError, WatchStarted, WatchStopped,
)
from workbench.core.model import RunStatus, Trigger
from workbench.services.session import WorkbenchSession
from workbench.services.watch import WatchService

REPO = Path(__file__).resolve().parent.parent
DEBOUNCE_MS = 150
# fit also reads a folder, for the folder tests; prep sleeps while its data says "slow", so a
# test can change files while a run is in flight.
WATCH_MANIFEST = MANIFEST.replace('inputs = ["fit.py", "params.toml"]', 'inputs = ["fit.py", "params.toml", "conf"]') \
    + f"\n[watch]\ndebounce_ms = {DEBOUNCE_MS}\n"
SLOW_PREP = """
import time, wb
text = open("data.txt").read()
if "slow" in text:
    print("sleeping", flush=True)
    time.sleep(60)
open(wb.output_path("clean.txt"), "w").write(text.strip().upper())
wb.log_metrics({"rows": len(text.splitlines())})
"""


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Events:
    """Collects events from the service's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.all: list = []

    def __call__(self, event) -> None:
        with self._lock:
            self.all.append(event)

    def position(self, event) -> int:
        with self._lock:
            return next(i for i, e in enumerate(self.all) if e is event)

    def of(self, kind) -> list:
        with self._lock:
            return [e for e in self.all if isinstance(e, kind)]

    def wait_for(self, kind, predicate=lambda e: True, count: int = 1, timeout: float = 10.0):
        found = wait_until(lambda: (lambda m: m if len(m) >= count else None)(
            [e for e in self.of(kind) if predicate(e)]), timeout, f"{count} {kind.__name__}")
        return found[count - 1]


class Watched:
    def __init__(self, root: Path):
        self.root = root
        self.project = root / "tiny"
        self.session = WorkbenchSession(root, runner="local")
        self.events = Events()
        self.service = WatchService(self.session, self.events)

    def start(self) -> "Watched":
        self.service.watch("tiny")
        self.events.wait_for(WatchStarted)
        return self

    def runs(self) -> list:
        return self.session.runs()  # not by name: that reads the manifest, which a test may break

    def run_after(self, change: ChangeDetected):
        """The run a change started, once it is recorded."""
        after = self.events.position(change)
        started = self.events.wait_for(RunStarted, lambda e: self.events.position(e) > after)
        self.events.wait_for(RunFinished, lambda e: e.record.id == started.run_id)
        return self.session.get_run(started.run_id)

    def write(self, name: str, text: str) -> None:
        (self.project / name).write_text(text)

    def editor_save(self, name: str, text: str) -> None:
        """What vim, VS Code and most editors do: write a temp file, rename it over the target."""
        tmp = self.project / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.project / name)


@pytest.fixture
def watched(tmp_path: Path):
    write_project(tmp_path, **{"workbench.toml": WATCH_MANIFEST, "prep.py": SLOW_PREP})
    (tmp_path / "tiny" / "conf").mkdir()
    (tmp_path / "tiny" / "conf" / "a.txt").write_text("a\n")
    w = Watched(tmp_path)
    first = w.session.run("tiny")  # everything has run once: a change reruns only what it affects
    assert first.status is RunStatus.SUCCEEDED, first.reason
    w.start()
    yield w
    w.service.close()
    assert all(r.status != "running" for r in w.runs())


def statuses(record) -> dict[str, str]:
    return {s.stage: str(s.status) for s in record.stages}


def test_editor_style_save_reruns_the_stage_that_reads_the_file(watched):
    watched.editor_save("params.toml", "[fit]\nscale = 3.0\n")
    change = watched.events.wait_for(ChangeDetected)
    assert change.paths == ("params.toml",) and change.stages == ("fit",)
    run = watched.run_after(change)
    assert statuses(run) == {"prep": "reused", "fit": "succeeded"}
    assert run.trigger is Trigger.WATCH and run.changed_paths == ["params.toml"] and run.stage_filter == ["fit"]
    assert run.metrics["score"] == 1.5
    assert len(watched.runs()) == 2


def test_overwrite_of_data_reruns_its_stage_and_everything_downstream(watched):
    watched.write("data.txt", "x\ny\nz\nw\n")
    run = watched.run_after(watched.events.wait_for(ChangeDetected))
    assert statuses(run) == {"prep": "succeeded", "fit": "succeeded"}
    assert run.changed_paths == ["data.txt"] and run.metrics["rows"] == 4.0


def test_touch_and_save_without_edit_start_nothing(watched):
    path = watched.project / "data.txt"
    os.utime(path)
    watched.editor_save("data.txt", path.read_text())
    ignored = watched.events.wait_for(ChangeIgnored)
    assert ignored.reason == "content unchanged" and "data.txt" in ignored.paths
    assert watched.events.of(ChangeDetected) == [] and len(watched.runs()) == 1


def test_a_file_no_stage_reads_starts_nothing(watched):
    watched.write("NOTES.md", "ideas\n")
    (watched.project / "__pycache__").mkdir()
    (watched.project / "__pycache__" / "x.pyc").write_bytes(b"\0")
    ignored = watched.events.wait_for(ChangeIgnored)
    assert ignored.paths == ("NOTES.md",) and ignored.reason == "no stage reads it"
    assert len(watched.runs()) == 1


def test_deleting_an_input_reruns_the_stage_that_read_it(watched):
    (watched.project / "params.toml").unlink()
    change = watched.events.wait_for(ChangeDetected)
    assert change.paths == ("params.toml",)
    run = watched.run_after(change)
    assert statuses(run) == {"prep": "reused", "fit": "failed"}  # fit.py needs its params
    assert run.changed_paths == ["params.toml"]


def test_renaming_a_file_reports_both_names(watched):
    os.rename(watched.project / "conf" / "a.txt", watched.project / "conf" / "b.txt")
    change = watched.events.wait_for(ChangeDetected)
    assert change.paths == ("conf/a.txt", "conf/b.txt") and change.stages == ("fit",)
    run = watched.run_after(change)
    assert statuses(run) == {"prep": "reused", "fit": "succeeded"}
    fit = run.stages[1]
    assert "conf/b.txt" in {f.path for f in fit.inputs} and "conf/a.txt" not in {f.path for f in fit.inputs}


def test_renaming_a_folder_is_a_change_to_everything_in_it(watched):
    (watched.project / "conf" / "deep").mkdir()
    (watched.project / "conf" / "deep" / "c.txt").write_text("c\n")
    first = watched.run_after(watched.events.wait_for(ChangeDetected))
    assert statuses(first) == {"prep": "reused", "fit": "succeeded"}
    os.rename(watched.project / "conf", watched.project / "settings")  # out of what fit reads
    change = watched.events.wait_for(ChangeDetected, count=2)
    assert change.paths == ("conf/a.txt", "conf/deep/c.txt")
    run = watched.run_after(change)
    assert statuses(run) == {"prep": "reused", "fit": "succeeded"}
    assert {f.path for f in run.stages[1].inputs} == {"fit.py", "params.toml"}


def test_a_burst_of_200_files_is_one_change_and_one_run(watched):
    for i in range(200):
        (watched.project / "conf" / f"f{i:03}.txt").write_text(str(i))
    change = watched.events.wait_for(ChangeDetected)
    run = watched.run_after(change)
    assert len(change.paths) == 200 and len(run.changed_paths) == 200
    assert statuses(run) == {"prep": "reused", "fit": "succeeded"}
    time.sleep(DEBOUNCE_MS / 1000 * 2)  # nothing else is on its way
    assert len(watched.events.of(ChangeDetected)) == 1 and len(watched.runs()) == 2


def test_a_change_during_a_run_supersedes_it_and_the_last_edit_wins(watched, capsys):
    watched.write("data.txt", "slow\n")
    first_change = watched.events.wait_for(ChangeDetected)
    first_id = watched.events.wait_for(RunStarted).run_id
    watched.events.wait_for(StageStarted, lambda e: e.run_id == first_id and e.stage == "prep")
    cancelled_at = time.monotonic()
    watched.editor_save("data.txt", "final\n")

    link = watched.events.wait_for(RunSuperseded)
    final = watched.run_after(watched.events.wait_for(ChangeDetected, lambda e: e is not first_change))
    superseded = watched.session.get_run(first_id)
    assert superseded.status is RunStatus.SUPERSEDED and superseded.superseded_by == final.id
    assert (link.run_id, link.by_run_id) == (first_id, final.id)
    assert superseded.reason == "superseded by a newer change"
    assert statuses(superseded) == {"prep": "cancelled", "fit": "cancelled"}
    assert superseded.finished_at is not None and time.monotonic() - cancelled_at < 10  # not the 60 s sleep
    assert final.status is RunStatus.SUCCEEDED and final.superseded_by is None
    assert Path(final.stages[0].output_dir, "clean.txt").read_text() == "FINAL"
    assert [r.status for r in watched.runs()][:2] == ["succeeded", "superseded"]
    from workbench.cli.main import main

    assert main(["-w", str(watched.root), "show", str(first_id)]) == 0
    assert f"superseded by run {final.id}" in capsys.readouterr().out


def test_run_now_queues_through_the_scheduler_and_cancel_records_cancelled(watched):
    watched.write("data.txt", "slow\n")
    run_id = watched.events.wait_for(RunStarted).run_id
    watched.events.wait_for(StageStarted, lambda e: e.run_id == run_id)
    assert watched.service.busy("tiny")
    assert watched.service.cancel("tiny")
    watched.events.wait_for(RunFinished, lambda e: e.record.id == run_id)
    assert watched.session.get_run(run_id).status is RunStatus.CANCELLED
    wait_until(lambda: not watched.service.busy("tiny"), what="the scheduler to settle")
    assert not watched.service.cancel("tiny")

    watched.write("data.txt", "quick\n")  # no longer slow; runs as a manual run below
    watched.events.wait_for(ChangeDetected, count=2)
    watch_run = watched.events.wait_for(RunStarted, count=2)
    watched.events.wait_for(RunFinished, lambda e: e.record.id == watch_run.run_id)
    watched.service.run_now("tiny", ["prep"])
    again = watched.events.wait_for(RunStarted, count=3)
    record = watched.events.wait_for(RunFinished, lambda e: e.record.id == again.run_id).record
    assert record.trigger is Trigger.MANUAL and statuses(record) == {"prep": "reused"}


def test_an_invalid_manifest_is_reported_and_the_fix_reloads_and_runs(watched):
    good = (watched.project / "workbench.toml").read_text()
    watched.editor_save("workbench.toml", good.replace('command = "python prep.py"', 'comand = "python prep.py"'))
    invalid = watched.events.wait_for(ManifestInvalid)
    assert "workbench.toml" in invalid.message and "stages.prep" in invalid.message
    assert watched.service.is_watching("tiny")

    watched.write("data.txt", "while broken\n")  # seen, but no run until the manifest is valid
    held = watched.events.wait_for(ChangeDetected)
    assert held.paths == ("data.txt",)
    watched.events.wait_for(ManifestInvalid, count=2)
    assert len(watched.runs()) == 1

    watched.editor_save("workbench.toml", good + "\n# fixed\n")
    watched.events.wait_for(ManifestReloaded)
    run = watched.run_after(watched.events.wait_for(ChangeDetected, count=2))
    assert run.status is RunStatus.SUCCEEDED and run.trigger is Trigger.WATCH
    assert set(run.changed_paths) == {"data.txt", "workbench.toml"}
    assert statuses(run) == {"prep": "succeeded", "fit": "succeeded"}
    assert Path(run.stages[0].output_dir, "clean.txt").read_text() == "WHILE BROKEN"
    assert len(watched.runs()) == 2


def test_unwatch_stops_reacting_and_close_is_idempotent(watched):
    watched.service.unwatch("tiny")
    watched.events.wait_for(WatchStopped)
    assert not watched.service.is_watching("tiny") and watched.service.watched() == []
    watched.write("data.txt", "after unwatch\n")
    time.sleep(DEBOUNCE_MS / 1000 * 3)
    assert watched.events.of(ChangeDetected) == [] and len(watched.runs()) == 1
    watched.service.close()
    watched.service.close()


def test_a_deleted_project_folder_is_reported_and_watching_stops(tmp_path):
    write_project(tmp_path, **{"workbench.toml": WATCH_MANIFEST})
    w = Watched(tmp_path).start()
    try:
        import shutil

        shutil.rmtree(w.project)
        stopped = w.events.wait_for(WatchStopped)
        assert "deleted or moved" in stopped.reason and not w.service.is_watching("tiny")
    finally:
        w.service.close()


def test_ctrl_c_during_a_run_stops_cleanly_and_leaves_nothing_running(tmp_path):
    write_project(tmp_path, **{"workbench.toml": WATCH_MANIFEST, "prep.py": SLOW_PREP})
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), COLUMNS="200")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "--workspace", str(tmp_path), "watch", "tiny", "--runner", "local"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("◉ watching tiny" in line for line in lines), 15, "the watcher to start")
        (tmp_path / "tiny" / "data.txt").write_text("slow\n")
        wait_until(lambda: any("sleeping" in line for line in lines), 15, "the slow stage to start")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    assert "stopped watching · 1 run (1 cancelled)" in "".join(lines)
    (run,) = WorkbenchSession(tmp_path, runner="local").runs("tiny")
    assert run.status == "cancelled" and run.trigger == "watch"


def test_watch_without_projects_watches_every_enabled_one(tmp_path):
    write_project(tmp_path, **{"workbench.toml": WATCH_MANIFEST})
    other = write_project(tmp_path / "more", **{"workbench.toml": WATCH_MANIFEST.replace(
        'name = "tiny"', 'name = "other"').replace(f"debounce_ms = {DEBOUNCE_MS}", "enabled = false")})
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "workbench.toml").write_text("[project]\nname = 'broken'\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO), COLUMNS="200")
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "-w", str(tmp_path), "watch", "--runner", "local"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("◉ watching tiny" in line for line in lines), 15, "the watcher to start")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    out = "".join(lines)
    assert other.exists() and "watching other" not in out
    assert "not watching broken" in out and "stages: at least one stage is required" in out
    assert "stopped watching · 0 runs" in out


def test_watch_with_nothing_to_watch_says_so(tmp_path, capsys):
    from workbench.cli.main import main

    assert main(["-w", str(tmp_path), "watch"]) == 3
    assert "no project to watch" in capsys.readouterr().err


class FakeWatcher:
    """The FileWatcher port without the operating system: a test says which events happened."""

    def __init__(self, root: str, sink, on_error):
        self.root, self.sink, self.on_error = root, sink, on_error
        self.trouble: str | None = None
        self.running = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def problem(self) -> str | None:
        return self.trouble


@pytest.fixture
def faked(tmp_path: Path):
    write_project(tmp_path, **{"workbench.toml": WATCH_MANIFEST})
    session = WorkbenchSession(tmp_path, runner="local")
    session.run("tiny")
    events, watchers = Events(), []
    service = WatchService(session, events, watcher_factory=lambda *a: watchers.append(FakeWatcher(*a)) or watchers[-1])
    service.watch("tiny")
    events.wait_for(WatchStarted)
    yield tmp_path / "tiny", session, events, watchers[0]
    service.close()
    assert not watchers[0].running


def test_lost_events_make_the_watcher_rescan_and_find_the_change(faked):
    project, session, events, watcher = faked
    (project / "params.toml").write_text("[fit]\nscale = 4.0\n")  # the kernel dropped its events
    watcher.sink("", "overflow", True)
    change = events.wait_for(ChangeDetected)
    assert change.paths == ("params.toml",)
    run = session.get_run(events.wait_for(RunFinished).record.id)
    assert statuses(run) == {"prep": "reused", "fit": "succeeded"} and run.changed_paths == ["params.toml"]


def test_a_watcher_that_stops_working_is_reported_and_unwatched(faked):
    project, session, events, watcher = faked
    watcher.trouble = "the file watcher stopped (see the log)"
    watcher.on_error(watcher.trouble)
    stopped = events.wait_for(WatchStopped)
    assert stopped.reason == watcher.trouble and not watcher.running
    assert [e.message for e in events.of(WatchError)] == [watcher.trouble]


def test_stat_hasher_reads_a_file_only_when_its_stat_changed(tmp_path, monkeypatch):
    from workbench.adapters import hash_cache

    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    # The racy window counts from the ctime too, which no utime can set back: close it, so a
    # file written a moment ago has a stat that can be trusted.
    monkeypatch.setattr(hash_cache, "RACY_WINDOW_NS", 0)
    old = time.time() - 10
    os.utime(path, (old, old))  # so the touch below surely moves the mtime
    hasher = hash_cache.StatHasher()
    first = hasher.digest(path)
    reads = []
    monkeypatch.setattr(hash_cache, "hash_file", lambda p: reads.append(p) or "rehashed")
    assert hasher.digest(path) == first and reads == []           # untouched: a stat, no read
    os.utime(path)
    assert hasher.digest(path) == "rehashed" and reads == [path]  # touched: read again
    assert hasher.digest(tmp_path / "missing") is None and hasher.digest(tmp_path) is None


def test_linking_a_run_that_does_not_exist_says_so(tmp_path):
    from workbench.adapters.duckdb_store import DuckDBLineageStore
    from workbench.core.errors import RunNotFound

    with pytest.raises(RunNotFound, match="run 41 not found"):
        DuckDBLineageStore(tmp_path / "lineage.duckdb").set_superseded_by(41, 42)

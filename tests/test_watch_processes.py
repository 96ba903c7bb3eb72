"""Watchers in separate processes on one workspace (issue 10 item 7): a change is run once however
many watchers see it, the second watcher says who runs it and shows those runs, and takes over
when the first one stops. Also: a watch run says when it registers a model version (issue 11
item 9). Real `workbench watch` processes, the local runner, a real DuckDB file.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.test_pipeline_local import write_project
from tests.test_signals import Lines, cli_env, runs_json, workbench
from tests.test_watch import SLOW_PREP, WATCH_MANIFEST


def start_watch(root: Path):
    proc = workbench("-w", str(root), "watch", "tiny", "--runner", "local", env=cli_env())
    return proc, Lines(proc.stdout)


def wait_runs(root: Path, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        runs = [r for r in runs_json(root) if r["status"] != "running"]
        if len(runs) >= count or time.monotonic() > deadline:
            return runs
        time.sleep(0.3)


@pytest.mark.slow
def test_two_watchers_run_a_change_once_and_the_second_takes_over(tmp_path):
    write_project(tmp_path, **{"workbench.toml": WATCH_MANIFEST, "prep.py": SLOW_PREP})
    first, first_out = start_watch(tmp_path)
    second = None
    try:
        first_out.wait_for("◉ watching tiny", 30)
        second, second_out = start_watch(tmp_path)
        second_out.wait_for("Ctrl-C to stop", 30)

        (tmp_path / "tiny" / "data.txt").write_text("one\ntwo\n")
        assert wait_runs(tmp_path, 1), "no watcher ran the change"
        time.sleep(3)  # room for a second watcher's run of the same change, had there been one
        runs = runs_json(tmp_path)
        assert len(runs) == 1, f"the change ran {len(runs)} times: {runs}"
        assert runs[0]["trigger"] == "watch" and runs[0]["status"] == "succeeded", runs[0]
        run_id = runs[0]["id"]

        second_out.wait_for(f"tiny is watched by pid {first.pid} (workbench watch); its runs will show here", 5)
        second_out.wait_for(f"tiny: run {run_id} (watch) by pid {first.pid}", 10)
        # Whoever runs it says which model version the run registered.
        first_out.wait_for(f"→ registered tiny v1 (run {run_id}", 10)
        assert "◉ watching tiny" not in "".join(second_out.lines)

        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 143
        second_out.wait_for("◉ watching tiny", 10)  # took over
        (tmp_path / "tiny" / "params.toml").write_text("[fit]\nscale = 1.8\n")
        runs = wait_runs(tmp_path, 2)
        assert len(runs) == 2 and runs[0]["status"] == "succeeded", runs
        second_out.wait_for(f"→ registered tiny v2 (run {runs[0]['id']}", 10)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except Exception:
                    proc.kill()


@pytest.mark.slow
def test_the_tui_shows_a_project_watched_by_another_process_and_does_not_run_its_changes(tmp_path, monkeypatch):
    from tests.test_tui import asyncio_test, make_app, opened, shown, wait_for

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("WORKBENCH_CONFIG", raising=False)
    root = tmp_path / "ws"
    write_project(root, **{"workbench.toml": WATCH_MANIFEST, "prep.py": SLOW_PREP})
    watch, watch_out = start_watch(root)

    @asyncio_test
    async def drive():
        app = make_app(root, watch_on_start=True)
        async with app.run_test(size=(120, 36)) as pilot:
            main = await opened(pilot)
            await shown(pilot, f"! pid {watch.pid} watches")
            assert not app.watch.is_watching("tiny")
            holder = app.watch.watched_elsewhere("tiny")
            assert holder is not None and (holder.pid, holder.what) == (watch.pid, "workbench watch")
            (root / "tiny" / "data.txt").write_text("one\ntwo\n")
            await wait_for(pilot, lambda: main.table.total >= 1 and main.table.row(0) is not None
                           and main.table.row(0).status == "succeeded", 30, "the other process's run to show")
            await pilot.pause(2)  # room for a second run of the same change, had the TUI run it too
            assert main.table.total == 1 and not main.live, "the TUI ran a change another process runs"

    try:
        watch_out.wait_for("◉ watching tiny", 30)
        drive()
    finally:
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=15)
    assert len(runs_json(root)) == 1

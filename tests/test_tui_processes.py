"""Two processes, one workspace: the TUI (a headless app in its own process, pressing `r`)
records runs while CLI commands (`workbench runs --json`, `workbench run`) work on the same
lineage store. DuckDB lets one process hold the file for writing; the store attaches it per
operation and retries while another process holds it. Nobody may see "database is locked",
and no run may be lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.test_pipeline_local import write_project
from tests.test_tui import private_config  # noqa: F401 (autouse fixture: no developer config)
from workbench.services.session import WorkbenchSession

REPO = Path(__file__).resolve().parents[1]
TUI_RUNS = 6
CLI_RUNS = 2
TUI_PROCESS = r"""
import asyncio, json, sys, time
from pathlib import Path
from workbench.ui.app import WorkbenchApp
from workbench.ui.config import UiConfig

root, wanted = Path(sys.argv[1]), int(sys.argv[2])
errors = []

class App(WorkbenchApp):
    def notify(self, message, *, severity="information", **kwargs):
        if severity == "error":
            errors.append(str(message))
        return super().notify(message, severity=severity, **kwargs)

async def until(pilot, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        await pilot.pause(0.05)

async def main():
    app = App(root, "local", config=UiConfig(root / "tui-config.toml"), watch_on_start=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.main_screen
        await until(pilot, lambda: screen.projects.option_count and screen.table.loaded)
        for done in range(1, wanted + 1):
            await pilot.press("r")
            await until(pilot, lambda: sum(l.finished for l in screen.live.values()) >= done)
        ids = sorted(screen.live)
    print(json.dumps({"runs": ids, "errors": errors}))

asyncio.run(main())
"""


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", "-w", str(root), *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)})


def test_tui_and_cli_share_the_workspace(tmp_path):
    root = tmp_path / "ws"
    write_project(root, **{"data.txt": "".join(f"row {i}\n" for i in range(200))})
    WorkbenchSession(root, runner="local").store  # the schema exists before the race starts

    tui = subprocess.Popen([sys.executable, "-c", TUI_PROCESS, str(root), str(TUI_RUNS)], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=os.environ | {"PYTHONPATH": str(REPO)})
    results: list[subprocess.CompletedProcess] = []
    listings: list[int] = []
    stop = threading.Event()

    def list_runs() -> None:
        while not stop.is_set():
            done = cli(root, "runs", "--json", "--limit", "0")
            results.append(done)
            if done.returncode == 0:
                listings.append(len(json.loads(done.stdout)))

    def run_from_cli() -> None:
        for _ in range(CLI_RUNS):
            (root / "tiny" / "params.toml").write_text(f"[fit]\nscale = {1 + len(results) % 7}\n")
            results.append(cli(root, "run", "tiny", "--runner", "local", "-q"))

    threads = [threading.Thread(target=list_runs), threading.Thread(target=run_from_cli)]
    for thread in threads:
        thread.start()
    try:
        out, err = tui.communicate(timeout=180)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=180)
        if tui.poll() is None:
            tui.kill()

    assert tui.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["errors"] == [] and len(report["runs"]) == TUI_RUNS
    assert len(listings) >= 2, "the listing never ran beside the TUI"
    for done in results:
        assert done.returncode == 0, (done.args, done.stderr[-2000:])
        assert "lock" not in done.stderr.lower() and "busy" not in done.stderr.lower(), done.stderr
    assert "lock" not in err.lower()

    runs = WorkbenchSession(root, runner="local").runs("tiny", limit=100)
    assert len(runs) == TUI_RUNS + CLI_RUNS, "a run was lost"
    assert all(r.status == "succeeded" for r in runs), [(r.id, r.status) for r in runs]
    assert set(report["runs"]) <= {r.id for r in runs}
    assert listings == sorted(listings)  # each listing saw every run recorded before it

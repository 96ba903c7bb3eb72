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


def test_a_cli_run_and_promotion_show_in_an_open_tui_within_two_seconds(tmp_path):
    """Issue 11 item 6: runs and promotions made by the CLI never appeared in an open TUI (after
    30 s and cursor moves). The TUI polls what the store holds once a second and reads again
    the panes that changed: a CLI run and a CLI promotion show within two seconds."""
    import asyncio

    from tests.test_tui import make_app, wait_for
    from workbench.ui.widgets.models import ModelsView

    root = tmp_path / "ws"
    write_project(root)
    WorkbenchSession(root, runner="local").store  # noqa: B018 (the schema exists)

    async def scenario() -> None:
        app = make_app(root)
        async with app.run_test(size=(120, 36)) as pilot:
            main = app.main_screen
            await wait_for(pilot, lambda: main.projects.option_count and main.table.loaded, what="the app")
            assert main.table.total == 0

            done = await asyncio.to_thread(cli, root, "run", "tiny", "--runner", "local", "-q")
            assert done.returncode == 0, done.stderr
            started = time.monotonic()
            await wait_for(pilot, lambda: main.table.total == 1 and main.table.row(0) is not None
                           and main.table.row(0).status == "succeeded", timeout=2.0, what="the CLI's run")
            await wait_for(pilot, lambda: main.projects.rows["tiny"].last_status == "succeeded"
                           and main.query_one("#runs-pane").border_title.endswith("· 1"), timeout=2.0,
                           what="the project's status and the runs count")
            models = main.query_one(ModelsView)
            await wait_for(pilot, lambda: [v.version for v in models.versions] == [1], timeout=2.0,
                           what="the CLI run's version in Models")
            run_seen = time.monotonic() - started

            done = await asyncio.to_thread(cli, root, "promote", "tiny", "1", "--to", "staging", "--yes")
            assert done.returncode == 0, done.stdout + done.stderr
            started = time.monotonic()
            await wait_for(pilot, lambda: main.projects.rows["tiny"].staging == 1, timeout=2.0,
                           what="the CLI's promotion in the Projects pane")
            await wait_for(pilot, lambda: models.versions and "staging" in models.versions[0].aliases,
                           timeout=2.0, what="the CLI's promotion in Models")
            promotion_seen = time.monotonic() - started
            print(f"CLI run seen after {run_seen:.2f} s, promotion after {promotion_seen:.2f} s")

    asyncio.run(scenario())

"""The Textual workbench, driven by Pilot: keys are pressed and what changed is asserted (the
runs table, the lineage store, the detail tabs, notifications, the config file).

Runs use the local runner on a tiny project and a real DuckDB file; watching uses real
watchdog. Waits poll with a timeout, never fixed sleeps. The developer's own config and themes
stay out: HOME and XDG_CONFIG_HOME point into the test's folder.
"""

from __future__ import annotations

import asyncio
import functools
import io
import time
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import DataTable, Static

from tests.test_pipeline_local import MANIFEST, write_project
from tests.test_watch import SLOW_PREP
from workbench.core.model import RunStatus, Trigger
from workbench.services.session import WorkbenchSession
from workbench.ui.actions import ACTIONS
from workbench.ui.app import WorkbenchApp
from workbench.ui.config import load_config
from workbench.ui.screens.diff import DiffScreen
from workbench.ui.screens.help import HelpScreen, key_display

SIZE = (120, 36)
WATCHED_MANIFEST = MANIFEST + "\n[watch]\ndebounce_ms = 100\n"


def asyncio_test(test):
    """Run an async test on a fresh event loop (Textual needs asyncio; no plugin needed)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    """No test reads or writes the developer's config, themes or time zone."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("WORKBENCH_CONFIG", raising=False)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield home / ".config" / "workbench"
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    write_project(root, **{"workbench.toml": WATCHED_MANIFEST, "prep.py": SLOW_PREP})
    return root


class RecordingApp(WorkbenchApp):
    """The app, with its notifications kept for the assertions."""

    def __init__(self, *args, **kwargs) -> None:
        self.notes: list[tuple[str, str, str]] = []
        super().__init__(*args, **kwargs)

    def notify(self, message, *, title="", severity="information", timeout=None, markup=True):
        self.notes.append((severity, str(message), title))
        return super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)


def make_app(root: Path, **kwargs) -> RecordingApp:
    kwargs.setdefault("watch_on_start", False)
    return RecordingApp(root, "local", config=load_config(), **kwargs)


async def wait_for(pilot, predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            # What the app said meanwhile (a failed read is a notification): a rare CI timeout
            # should say why, not only that it waited.
            notes = "; ".join(f"{title}: {message}" for _severity, message, title in getattr(pilot.app, "notes", []))
            raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (notified: {notes})" if notes else ""))
        await pilot.pause(0.05)


def screen_text(app) -> str:
    """The screen as plain text, as a terminal would show it."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system="truecolor", legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


async def shown(pilot, *needles: str, timeout: float = 15.0) -> str:
    """The screen's text once every needle is drawn: a busy machine draws a moment late."""
    last = [""]

    def drawn():
        last[0] = text = screen_text(pilot.app)
        return text if all(needle in text for needle in needles) else None
    try:
        return await wait_for(pilot, drawn, timeout, what=f"{', '.join(map(repr, needles))} on screen")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the screen:\n{last[0]}") from None


def static_text(widget: Static, width: int = 160) -> str:
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


def table_rows(table: DataTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def opened(pilot, runs: int | None = None, timeout: float = 15.0):
    """Wait until the main screen shows its projects and (at least `runs`) runs."""
    main = pilot.app.main_screen
    await wait_for(pilot, lambda: main.projects.option_count and main.table.loaded, timeout, "projects and runs")
    if runs is not None:
        await wait_for(pilot, lambda: main.table.total >= runs, timeout, f"{runs} runs")
    return main


async def finished_run(pilot, main, count: int):
    """Wait until the table lists `count` runs and the newest has finished."""
    await wait_for(pilot, lambda: main.table.total >= count and main.table.row(0) is not None
                   and main.table.row(0).status != "running", timeout=30, what=f"run {count} to finish")
    return main.table.row(0)


# -- running, the detail tabs, lineage ------------------------------------------------------


@asyncio_test
async def test_run_now_key_runs_the_project_and_the_detail_shows_it(workspace):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot)
        assert list(main.projects.rows) == ["tiny"]
        assert main.table.total == 0
        await pilot.press("r")
        run = await finished_run(pilot, main, 1)
        assert run.status == "succeeded" and run.trigger == "manual" and run.primary_metric == 0.75

        stored = app.session.get_run(run.id)
        assert stored.status is RunStatus.SUCCEEDED
        await wait_for(pilot, lambda: main.detail.record is not None and main.detail.record.id == run.id
                       and main.detail.record.status is RunStatus.SUCCEEDED, what="the run's detail")
        stages = table_rows(main.detail.query_one("#stages-table", DataTable))
        assert [(r[0], r[1]) for r in stages] == [("prep", "✓ succeeded"), ("fit", "✓ succeeded")]
        metrics = table_rows(main.detail.query_one("#metrics-table", DataTable))
        assert ["score", "0.75", "fit"] in metrics and ["rows", "3", "prep"] in metrics
        gates = table_rows(main.detail.query_one("#gates-table", DataTable))
        assert gates == [["score >= 0.5", "✓ pass", "0.75 >= 0.5"]]
        lineage = static_text(main.detail.query_one("#lineage-view", Static))
        fit_py = next(f for s in stored.stages for f in s.inputs if f.path == "fit.py")
        assert fit_py.sha256[:16] in lineage and "scale = 1.5" in lineage and "model.json (model)" in lineage
        # the log tab holds what the stages printed, the trend the run's metric
        assert main.detail.log.run_id == run.id
        assert main.query_one("TrendLine").values == (0.75,)
        assert main.projects.rows["tiny"].last_status == "succeeded"


@asyncio_test
async def test_runs_started_elsewhere_show_and_the_newest_is_followed(workspace):
    session = WorkbenchSession(workspace, runner="local")
    session.run("tiny")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot, runs=1)
        await pilot.press("r")
        run = await finished_run(pilot, main, 2)
        assert main.table.cursor == 0 and main.table.current.id == run.id
        assert run.reused == 2  # nothing changed: both stages reused


@asyncio_test
async def test_filter_with_slash(workspace):
    session = WorkbenchSession(workspace, runner="local")
    session.run("tiny")
    session.run("tiny", trigger=Trigger.WATCH)
    session.run("tiny")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot, runs=3)
        await pilot.press("tab", "slash")
        assert app.focused.id == "filter"
        await pilot.press(*"watch")
        await wait_for(pilot, lambda: main.table.match == "watch" and main.table.loaded and main.table.total == 1,
                       what="the filtered listing")
        assert main.table.current.trigger == "watch"
        assert "matching “watch”" in main.query_one("#runs-pane").border_title
        await pilot.press("escape")
        await wait_for(pilot, lambda: main.table.match is None and main.table.total == 3, what="the filter cleared")


@asyncio_test
async def test_help_screen_lists_every_binding_and_keys_are_remappable(workspace, private_config):
    private_config.mkdir(parents=True)
    (private_config / "config.toml").write_text('[keys]\nrun_now = "f5"\n')
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await shown(pilot, ACTIONS[0].id)
        # the whole table, not only what fits the screen (the help screen scrolls)
        text = static_text(app.screen.query_one("#help-table"), width=200)
        for action in ACTIONS:
            assert action.id in text, action.id
            assert action.description[:40] in text, action.description
        assert "F5" in text and key_display("question_mark,f1") == "? F1"
        await pilot.press("escape")
        assert app.screen is main
        await pilot.press("r")  # no longer bound
        await pilot.pause(0.3)
        assert main.table.total == 0 and not main.live
        await pilot.press("f5")
        await finished_run(pilot, main, 1)
        # every action of the main screen and the app is in its command palette too
        titles = [c.title for c in app.get_system_commands(main)]
        assert len([t for t in titles if t not in ("Screenshot", "Maximize", "Minimize")]) == len(
            [a for a in ACTIONS if a.scope in ("screen", "app")])


@asyncio_test
async def test_cancel_key_cancels_a_slow_run(workspace):
    (workspace / "tiny" / "data.txt").write_text("slow\n")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: any(l.current_stage == "prep" for l in main.live.values()), what="prep running")
        run_id = next(iter(main.live))
        await wait_for(pilot, lambda: ("prep", "sleeping") in main.live[run_id].log, what="the log line")
        await pilot.press("c")
        run = await finished_run(pilot, main, 1)
        assert run.id == run_id and run.status == "cancelled"
        assert app.session.get_run(run_id).status is RunStatus.CANCELLED


@asyncio_test
async def test_watch_triggered_run_appears_live(workspace):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot)
        await pilot.press("w")
        await wait_for(pilot, lambda: main.projects.rows["tiny"].watching and app.watch.is_watching("tiny"),
                       what="watching")
        await pilot.pause(0.3)  # the watcher takes its starting hashes
        (workspace / "tiny" / "params.toml").write_text("[fit]\nscale = 0.5\n")
        run = await finished_run(pilot, main, 1)
        assert run.trigger == "watch" and run.status == "gate_failed" and run.primary_metric == 0.25
        assert any("params.toml changed" in note for _sev, note, _title in app.notes)
        stored = app.session.get_run(run.id)
        assert stored.changed_paths == ["params.toml"]
        # a broken manifest while watching: one notification, the project says so, nothing crashes
        (workspace / "tiny" / "workbench.toml").write_text(WATCHED_MANIFEST.replace("command =", "comand =", 1))
        await wait_for(pilot, lambda: main.projects.rows["tiny"].note == "manifest invalid", what="the note")
        assert any(sev == "error" and "workbench.toml: stages.prep.command" in note for sev, note, _t in app.notes)
        (workspace / "tiny" / "workbench.toml").write_text(WATCHED_MANIFEST)
        await wait_for(pilot, lambda: main.projects.rows["tiny"].note == "", what="the manifest fixed")
        # the selected project is read again (it showed the broken manifest): then w acts on it
        await wait_for(pilot, lambda: main.project.error is None, what="the project read again")
        await pilot.press("w")
        await wait_for(pilot, lambda: not main.projects.rows["tiny"].watching, what="unwatched")


@asyncio_test
async def test_diff_screen_shows_a_params_change(workspace):
    session = WorkbenchSession(workspace, runner="local")
    first = session.run("tiny")
    (workspace / "tiny" / "params.toml").write_text("[fit]\nscale = 0.5\n")
    second = session.run("tiny")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot, runs=2)
        await pilot.press("tab", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen), what="the diff screen")
        diff = app.screen.diff
        assert (diff.base, diff.run) == (first.id, second.id)
        assert [(c.name, c.before, c.after) for c in diff.params] == [("fit.scale", "1.5", "0.5")]
        assert [c.name for c in diff.code] == ["params.toml"]
        assert "-scale = 1.5" in diff.text_diffs["params.toml"] and "+scale = 0.5" in diff.text_diffs["params.toml"]
        await shown(pilot, "fit.scale", "1.5 → 0.5", "+scale = 0.5")
        await pilot.press("escape")
        # mark the newest, move to the older one: d now compares against the mark
        await pilot.press("m", "down", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen), what="the diff screen")
        assert (app.screen.diff.base, app.screen.diff.run) == (second.id, first.id)


@asyncio_test
async def test_rerun_cold_reproduces_the_selected_run(workspace):
    original = WorkbenchSession(workspace, runner="local").run("tiny")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot, runs=1)
        await pilot.press("tab", "R")
        run = await finished_run(pilot, main, 2)
        assert run.trigger == "reproduce" and run.reused == 0 and run.status == "succeeded"
        await wait_for(pilot, lambda: any(title == "reproduced" for _s, _n, title in app.notes), what="the verdict")
        assert any(f"run {original.id} reproduced by run {run.id}" in note for _s, note, _t in app.notes)


# -- themes and config ------------------------------------------------------------------------


@asyncio_test
async def test_theme_switch_from_the_palette_is_remembered(workspace, private_config):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot)
        assert app.theme == "workbench-dark"
        await pilot.press("t")
        await pilot.press(*"workbench-light")
        await wait_for(pilot, lambda: "workbench-light" in screen_text(app), what="the theme in the palette")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.theme == "workbench-light", what="the light theme")
        config = private_config / "config.toml"
        await wait_for(pilot, lambda: config.exists() and 'theme = "workbench-light"' in config.read_text(),
                       what="the theme saved")
    again = make_app(workspace)
    async with again.run_test(size=SIZE) as pilot:
        await opened(pilot)
        assert again.theme == "workbench-light"


@asyncio_test
async def test_a_malformed_theme_is_one_notification_and_the_app_runs_on(workspace, private_config):
    themes = private_config / "themes"
    themes.mkdir(parents=True)
    (themes / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    (themes / "mine.json").write_text('{"name": "mine", "primary": "#ff8800", "dark": true}')
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot)
        about_themes = [n for n in app.notes if "theme" in n[1]]
        assert len(about_themes) == 1
        severity, message, _title = about_themes[0]
        assert severity == "error" and "broken.toml" in message and "primary" in message and "not-a-colour" in message
        assert "mine" in app.available_themes and "broken" not in app.available_themes
        app.theme = "mine"
        await pilot.press("r")
        await finished_run(pilot, main, 1)


# -- errors stay on screen ----------------------------------------------------------------------


@asyncio_test
async def test_broken_manifest_and_store_errors_are_shown_not_raised(workspace):
    broken = workspace / "broken"
    broken.mkdir()
    (broken / "workbench.toml").write_text('[project]\nname = "broken"\n[stages.a]\ncomand = "x"\n')
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot)
        assert main.projects.rows["broken"].error
        main.projects.highlighted = list(main.projects.rows).index("broken")
        await pilot.pause(0.2)
        await pilot.press("r")
        await wait_for(pilot, lambda: any("fix the manifest" in n[1] for n in app.notes), what="the refusal")
        await shown(pilot, "manifest invalid")

    (workspace / ".workbench" / "lineage.duckdb").write_bytes(b"this is not a database" * 100)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main_screen
        await wait_for(pilot, lambda: any(n[0] == "error" for n in app.notes), what="an error notification")
        await wait_for(pilot, lambda: main.table.error is not None or "✗" in screen_text(app), what="the pane error")
        await pilot.press("question_mark")  # still answering keys
        assert isinstance(app.screen, HelpScreen)


@asyncio_test
async def test_quit_asks_while_a_run_is_in_flight(workspace):
    (workspace / "tiny" / "data.txt").write_text("slow\n")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: main.busy_projects() == ["tiny"], what="the run in flight")
        await pilot.press("q")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the question")
        await pilot.press("n")
        assert app.screen is main and app.is_running
    # leaving the app cancels and records the run in flight, in words true of a run the TUI
    # started (the project was not watched: "the watcher stopped" would be false)
    session = WorkbenchSession(workspace, runner="local")
    run = session.get_run(session.runs("tiny")[0].id)
    assert run.status == "cancelled"
    assert "the TUI was closed" in run.reason and "watcher" not in run.reason


def test_event_bridge_batches_log_lines_in_order():
    from workbench.core.events import RunStarted, StageLog, StageProgress
    from workbench.ui.messages import EventBridge, LogLines, ServiceEvent

    posted = []

    class Target:
        def post_message(self, message):
            posted.append(message)
            return True

    bridge = EventBridge(Target())
    bridge(RunStarted(1, "p", ("a",), "local", "manual"))
    for i in range(1000):
        bridge(StageLog(1, "a", f"line {i}"))
        if i % 100 == 0:
            bridge(StageProgress(1, "a", i, 1000, "rows"))
    assert len(posted) == 1  # one wake-up for the whole burst
    bridge._last_drain = 0
    assert bridge.drain() is None
    messages = posted[1:]
    assert [type(m) for m in messages] == [ServiceEvent, LogLines, ServiceEvent]
    assert [line for _s, line in messages[1].lines] == [f"line {i}" for i in range(1000)]
    assert messages[2].event.done == 900  # progress coalesced to the latest


def test_the_ui_imports_no_io_library():
    import subprocess
    import sys

    code = ("import sys, pkgutil, importlib, workbench.ui as ui\n"
            "import workbench.ui.app, workbench.ui.screens.main\n"
            "for m in pkgutil.walk_packages(ui.__path__, 'workbench.ui.'): importlib.import_module(m.name)\n"
            "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not {"duckdb", "docker", "mlflow", "lightgbm"} & set(loaded)


def test_cli_without_a_command_opens_the_tui(monkeypatch, workspace):
    from workbench.cli import main as cli

    opened_on = []
    monkeypatch.setattr("workbench.cli.commands.cmd_tui",
                        lambda args, printer, ws: opened_on.append((args.command, ws, args.runner)) or 0)
    assert cli.main(["-w", str(workspace)]) == 0
    assert opened_on == [("tui", workspace, None)]  # None: the workspace's runner (workspace.toml), else auto




@pytest.mark.parametrize("text, problem", [
    ('primary = "#123456"\nprimry = "#000000"\n', "primry: unknown key"),
    ('primary = "blurple"\n', "primary: 'blurple' is not a colour"),
    ('secondary = "#123456"\n', "primary: missing"),
    ('primary = "#123456"\ndark = "yes"\n', "dark: 'yes' must be true or false"),
    ('primary = "#123456"\n[variables]\nfooter-key-foreground = "bold"\n', "variables.footer-key-foreground"),
    ('primary = "#123456"\n[variables]\nno-such-variable = "#fff"\n', "not a Textual theme variable"),
    ('primary = "#123456\n', "not valid TOML"),
])
def test_theme_files_are_validated_in_one_place(tmp_path, text, problem):
    from workbench.ui.themes import load_themes

    (tmp_path / "bad.toml").write_text(text)
    (tmp_path / "good.json").write_text('{"primary": "#0178d4", "variables": {"block-cursor-text-style": "bold"}}')
    themes = load_themes([tmp_path])
    assert list(themes.themes) == ["good"]
    assert len(themes.problems) == 1 and "bad.toml" in themes.problems[0] and problem in themes.problems[0]


def test_config_is_validated_and_the_theme_line_is_rewritten_in_place(tmp_path):
    from workbench.ui.config import load_config, save_theme

    path = tmp_path / "config.toml"
    path.write_text('# mine\nwatch_on_start = false\n\n[keys]\nrun_now = "f5"\nlaunch = "x"\ncancel_run = "c c"\n')
    config = load_config(path)
    assert config.keys == {"run_now": "f5"} and config.watch_on_start is False
    assert len(config.problems) == 2 and all(p.startswith(f"config {path}: keys.") for p in config.problems)
    assert "keys.launch: unknown action id (ids: run_now, toggle_watch" in config.problems[0]
    assert "keys.cancel_run: 'c c' is not a key" in config.problems[1]
    save_theme(path, "workbench-light")
    save_theme(path, "workbench-high-contrast")
    text = path.read_text()
    assert text.startswith("# mine\nwatch_on_start = false\n\ntheme = \"workbench-high-contrast\"\n[keys]")
    assert load_config(path).theme == "workbench-high-contrast"


# -- issue 11 --------------------------------------------------------------------------------


@asyncio_test
async def test_a_gate_failed_run_reads_as_one_in_the_runs_table_and_the_projects_pane(workspace):
    """Item 5: it showed a green `✓ succeeded`, with only the gates column saying `✗1`."""
    (workspace / "tiny" / "params.toml").write_text("[fit]\nscale = 0.2\n")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot)
        await pilot.press("r")
        run = await finished_run(pilot, main, 1)
        assert run.status == "gate_failed"
        # The runs table may read the finished run from the store a moment before the app handles
        # the run's end event, which updates the projects pane: wait for that, as a person would.
        await wait_for(pilot, lambda: main.projects.rows["tiny"].last_status == "gate_failed", timeout=10,
                       what="the projects pane to show the gate-failed run")
        text = await shown(pilot, "✗ gate failed", "✗ ○ tiny")
        runs_line = next(line for line in text.splitlines() if f" {run.id} " in line and "gate failed" in line)
        assert "✗1" in runs_line
        projects_pane = [line[:24] for line in text.splitlines()]
        assert any(line.lstrip(" │┃▊▌▎").startswith("✗ ○ tiny") for line in projects_pane), projects_pane[:6]
        from workbench.ui import format as fmt
        assert fmt.tone(run.status) == "bad"  # the error colour


@asyncio_test
async def test_cancel_key_cancels_a_cold_rerun(workspace, tmp_path):
    """Item 9: `c` did not cancel a cold rerun started with `R` (it runs beside the watch service)."""
    marker = tmp_path / "slow-now"  # outside the project: the rerun's snapshot is the original's
    (workspace / "tiny" / "prep.py").write_text(
        f"import os, time, wb\nif os.path.exists({str(marker)!r}):\n    print('sleeping', flush=True)\n"
        "    time.sleep(60)\nopen(wb.output_path('clean.txt'), 'w').write('A')\nwb.log_metrics({'rows': 1})\n")
    original = WorkbenchSession(workspace, runner="local").run("tiny")
    marker.write_text("")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot, runs=1)
        await pilot.press("tab", "R")
        await wait_for(pilot, lambda: any(("prep", "sleeping") in l.log for l in main.live.values()),
                       what="the cold rerun's prep sleeping")
        started = time.monotonic()
        await pilot.press("c")
        run = await finished_run(pilot, main, 2)
        assert run.trigger == "reproduce" and run.status == "cancelled", run
        assert run.id != original.id and time.monotonic() - started < 15
        assert any("cold rerun" in note and "cancelled" in note for _s, note, _t in app.notes), app.notes


def _seconds(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"ms": 0.001, "s": 1.0, "min": 60.0}[unit]


@asyncio_test
async def test_a_finishing_run_neither_flickers_nor_counts_backwards(workspace):
    """Item 9: at a run's end the row read `● evaluate 10.3 s` → `● starting 10.8 s` →
    `✓ succeeded 10.7 s`. The events of a run are played here as the pipeline sends them, with
    a slow recording (gates, lineage, registry) between its last stage and its end."""
    from datetime import datetime, timezone

    from workbench.core.events import RunFinished, RunStarted, StageFinished, StageStarted
    from workbench.core.formatting import duration as fmt_duration
    from workbench.core.model import RunRecord, StageResult, StageStatus

    session = WorkbenchSession(workspace, runner="local")
    app = make_app(workspace, session=session)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot)
        run_id, started = session.store.start_run("tiny", str(workspace / "tiny"), "manual", "local", [], [])
        app.bridge(RunStarted(run_id, "tiny", ("prep", "fit"), "local", "manual"))
        await wait_for(pilot, lambda: main.table.row(0) is not None and main.table.row(0).id == run_id,
                       what="the run's row")
        seen: list[tuple[str, str]] = []

        async def look(seconds: float = 0.1) -> None:
            await pilot.pause(seconds)
            cells = dict(zip([c.key for c in main.table._columns], main.table._cells(main.table.row(0))))
            seen.append((cells["status"][0], cells["duration"][0]))

        for name in ("prep", "fit"):
            app.bridge(StageStarted(run_id, name))
            await look(0.3)
            now = datetime.now(timezone.utc)
            app.bridge(StageFinished(run_id, StageResult(name, StageStatus.SUCCEEDED, "python x.py", "k", "",
                                                         started_at=now, finished_at=now, duration_s=0.3)))
            await look()
        for _ in range(10):  # recording takes a while on a busy machine
            await look()
        record = RunRecord(id=run_id, project="tiny", trigger=Trigger.MANUAL, status=RunStatus.SUCCEEDED,
                           runner="local", started_at=started, finished_at=datetime.now(timezone.utc))
        session.store.finish_run(record)
        app.bridge(RunFinished(record))
        for _ in range(5):
            await look()
        await wait_for(pilot, lambda: main.table.row(0).status == "succeeded", what="the row read again")
        await look()

    statuses = [status for status, _ in seen]
    assert not any("starting" in status for status in statuses), statuses
    assert statuses[-1] == "✓ succeeded" and statuses[1] == "● fit", statuses
    first_done = statuses.index("✓ succeeded")
    assert all(status == "✓ succeeded" for status in statuses[first_done:]), statuses
    times = [_seconds(duration) for _, duration in seen]
    assert times == sorted(times), seen  # never backwards
    assert seen[-1][1] == fmt_duration(record.duration_s)


@asyncio_test
async def test_until_the_first_read_the_panes_say_loading(workspace):
    """Item 9: at start with many runs the screen said "no runs yet" and "no primary metric"
    for half a second. A store that takes a while to count (many runs) shows that window."""

    class SlowSession(WorkbenchSession):
        def count_runs(self, *args, **kwargs):
            time.sleep(0.5)
            return super().count_runs(*args, **kwargs)

    session = SlowSession(workspace, runner="local")
    session.run("tiny")
    app = make_app(workspace, session=session)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main_screen
        screens = []
        while not main.table.loaded:
            screens.append(screen_text(app))
            await pilot.pause(0.02)
        await opened(pilot, runs=1)
    assert screens and any("loading…" in text for text in screens)
    for text in screens:
        assert "no runs yet" not in text and "no primary metric" not in text, text


@asyncio_test
async def test_every_projects_aliases_show_without_selecting_it(tmp_path):
    """Item 9: the Projects pane showed `prod — · stg —` until each project was selected."""
    from tests.test_pipeline_local import MANIFEST as TINY

    root = tmp_path / "ws"
    for name in ("alpha", "beta"):
        write_project(root, **{"workbench.toml": TINY.replace('name = "tiny"', f'name = "{name}"')})
        (root / "tiny").rename(root / name)
    session = WorkbenchSession(root, runner="local")
    for name in ("alpha", "beta"):
        assert session.run(name).status is RunStatus.SUCCEEDED
        assert session.registry.promote(name, 1, "staging").applied
    assert session.registry.promote("beta", 1, "production").applied
    app = make_app(root)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot)
        assert main.project.name == "alpha"
        await wait_for(pilot, lambda: (main.projects.rows["beta"].production, main.projects.rows["beta"].staging)
                       == (1, 1), timeout=5, what="beta's aliases while alpha is selected")
        await shown(pilot, "prod v1 · stg v1", "prod — · stg v1")
        # a promotion by another process shows too, in the project not selected
        assert WorkbenchSession(root, runner="local").registry.promote("alpha", 1, "production").applied
        await wait_for(pilot, lambda: main.projects.rows["alpha"].production == 1, timeout=3,
                       what="alpha's new production version")
        assert main.project.name == "alpha"


@asyncio_test
async def test_a_watch_note_that_arrives_before_the_projects_are_listed_is_kept():
    """The first listing is read on a worker thread, and the watch service may speak first
    (`pid N watches`): the note waits for the row instead of being lost (a CI flake showed it)."""
    from textual.app import App

    from workbench.ui.widgets.projects import ProjectRow, ProjectsList

    class Host(App):
        def compose(self):
            yield ProjectsList(id="projects")

    async with Host().run_test() as pilot:
        projects = pilot.app.query_one(ProjectsList)
        projects.update_row("tiny", watching=False, note="pid 42 watches", busy=True)
        projects.set_rows([ProjectRow("tiny", "/ws/tiny"), ProjectRow("other", "/ws/other")])
        assert projects.rows["tiny"].note == "pid 42 watches"
        assert projects.rows["tiny"].busy is False  # a run's state comes with the listing, not from before it
        assert projects.rows["other"].note == ""

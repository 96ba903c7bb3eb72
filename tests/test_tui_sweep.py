"""The TUI's sweep view (W on a trial's run): the compare view on all of the sweep's trials, their
params and metric, the best trial named and drawn as the reference row, the sweep's metric charted
against the first swept param, and the view growing as another process runs one more trial. Real
sweep (Optuna journal, local runner), real store, real CLI process for the extra trial."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.test_signals import REPO, cli_env
from tests.test_sweep import sweep, write_project
from tests.test_tui import asyncio_test, make_app, opened, private_config, wait_for  # noqa: F401 (fixture)
from workbench.ui.screens.compare import CompareScreen
from workbench.ui.screens.sweep import SweepScreen

SIZE = (120, 36)


def title(screen: CompareScreen) -> str:
    return str(screen.query_one("#compare-title").content)


async def open_view(pilot, key: str = "W") -> CompareScreen:
    main = await opened(pilot, runs=3)
    main.table.focus()
    await pilot.pause()
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, SweepScreen) and pilot.app.screen.reads >= 1,
                   what="the sweep view")
    return pilot.app.screen


@pytest.mark.slow
@asyncio_test
async def test_the_sweep_view_lists_the_trials_names_the_best_and_grows_as_a_trial_ends(tmp_path, capsys):
    write_project(tmp_path)
    assert sweep(tmp_path, "--param", "fit.scale=0.5..2", "--param", "fit.leaves=15,31,63", "--trials", "3",
                 "--seed", "3", "--name", "first", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    best = max((t for t in report["trials"] if t["run_status"] == "succeeded"), key=lambda t: t["value"])

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_view(pilot)
        table = screen.table
        assert sorted(r.run_id for r in table.rows) == [t["run_id"] for t in report["trials"]]
        assert [c.label for c in table.params] == ["fit.leaves", "fit.scale"]
        for trial in report["trials"]:
            row = next(r for r in table.rows if r.run_id == trial["run_id"])
            assert row.metrics["score"] == pytest.approx(trial["value"])
            assert float(row.params["fit.scale"]) == pytest.approx(trial["params"]["fit.scale"])
        # The best trial: named above the grid, and the grid's reference row (drawn in the accent colour).
        assert table.reference == best["run_id"]
        text = title(screen)
        assert "sweep first · tiny · 3/3 trials done · maximize score" in text
        assert f"best so far: trial {best['number']} · run {best['run_id']} · score" in text
        # The sweep's metric against the first swept param, drawn.
        chart = screen.chart
        assert chart.kind == "scatter" and chart.series.metric == "score" and chart.series.against == "fit.scale"
        assert sorted(chart.series.ys) == pytest.approx(sorted(t["value"] for t in report["trials"]))
        await pilot.press("x")  # the compare view's own keys work: after the last param, across the trials
        assert chart.series.against is None and chart.kind == "bars"
        await pilot.press("x")  # then the first param in the grid
        assert chart.series.against == "fit.leaves"

        # One more trial, by `workbench sweep --resume` in another process (its fit made slower by a
        # param the sweep does not touch): the view shows it running with its values, then its metric.
        reads = screen.reads
        params = tmp_path / "tiny" / "params.toml"
        params.write_text(params.read_text().replace("leaves = 15", "leaves = 15\nsleep = 1.5"))
        resume = [sys.executable, "-m", "workbench", "-w", str(tmp_path), "sweep", "tiny", "--resume", "first",
                  "--trials", "4", "-q", "--json"]
        process = subprocess.Popen(resume, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        try:
            running = lambda: next((r for r in screen.table.rows if r.status == "running"), None)  # noqa: E731
            await wait_for(pilot, lambda: screen.reads > reads and running() is not None and
                           "fit.scale" in running().params, timeout=30, what="the fourth trial running")
            assert "3/4 trials done, 1 running" in title(screen)
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, err
        extended = json.loads(out)
        assert len(extended["trials"]) == 4
        await wait_for(pilot, lambda: len(screen.table.rows) == 4 and
                       all(r.status != "running" for r in screen.table.rows), timeout=20, what="the fourth trial")
        assert "4/4 trials done" in title(screen)
        new_best = max((t for t in extended["trials"] if t["run_status"] == "succeeded"), key=lambda t: t["value"])
        assert screen.table.reference == new_best["run_id"]
        assert f"trial {new_best['number']} · run {new_best['run_id']}" in title(screen)
        assert chart.series.against == "fit.leaves" and len(chart.series.ys) == 4  # the chart kept its choice
        assert screen.grid.border_title == "Trials"


@asyncio_test
async def test_w_on_a_run_that_is_no_trial_says_so(tmp_path):
    write_project(tmp_path)
    from workbench.cli.main import main

    assert main(["-w", str(tmp_path), "run", "tiny", "--runner", "local", "-q"]) == 0
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        main_screen = await opened(pilot, runs=1)
        main_screen.table.focus()
        await pilot.pause()
        await pilot.press("W")
        await wait_for(pilot, lambda: any("is not a sweep trial" in message for _s, message, _t in app.notes),
                       what="the notice")
        assert not isinstance(app.screen, CompareScreen)


def test_the_best_trial_on_a_tie_is_the_earliest_as_the_study_says():
    from datetime import datetime, timezone

    from workbench.core.compare import CompareRow
    from workbench.ui.screens.sweep import best_row

    now = datetime.now(timezone.utc)
    rows = [CompareRow(5, "succeeded", now, {"a": "1"}, {"score": 0.7}),  # newest first, as listed
            CompareRow(4, "gate_failed", now, {"a": "3"}, {"score": 0.9}),  # gates failed: never the best
            CompareRow(2, "succeeded", now, {"a": "1"}, {"score": 0.7}),
            CompareRow(1, "succeeded", now, {"a": "2"}, {"score": 0.5})]
    assert best_row(rows, "score", "maximize").run_id == 2
    assert best_row(rows, "score", "minimize").run_id == 1
    assert best_row(rows, "rows", "maximize") is None

"""100,000 recorded runs: the app opens on them and scrolls to either end, holding only a few
pages of rows (benchmarks/bench_tui.py measures how fast; this checks that it works)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.test_tui import asyncio_test, make_app, opened, private_config, screen_text, wait_for  # noqa: F401
from workbench.ui.widgets.runs_table import KEEP_PAGES, PAGE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_lineage import history_workspace  # noqa: E402

RUNS = 100_000


@asyncio_test
async def test_100k_runs_open_and_scroll(tmp_path):
    root = tmp_path / "ws"
    history_workspace(root, RUNS)

    app = make_app(root)
    started = time.monotonic()
    async with app.run_test(size=(120, 40)) as pilot:
        main = await opened(pilot, runs=RUNS, timeout=60)
        table = main.table
        await wait_for(pilot, lambda: table.row(0) is not None, timeout=30, what="the first rows")
        first_paint = time.monotonic() - started
        assert table.total == RUNS and table.row(0).id == RUNS
        await wait_for(pilot, lambda: "Runs · telco-churn · 100,000" in screen_text(app), timeout=30,
                       what="the runs pane's title drawn")

        await pilot.press("tab", "end")
        await wait_for(pilot, lambda: table.current is not None and table.current.id == 1, timeout=30, what="the oldest run")
        assert table.cursor == RUNS - 1
        text = await wait_for(pilot, lambda: (lambda t: t if "      1 " in t else None)(screen_text(app)),
                              timeout=30, what="the oldest run drawn")
        assert "loading" not in text

        await pilot.press("pageup", "pageup", "up")
        await wait_for(pilot, lambda: table.current is not None, timeout=30, what="rows above the end")
        assert table.current.id == RUNS - table.cursor

        table.scroll_to(y=RUNS // 2, animate=False)  # a drag of the scrollbar to the middle
        await wait_for(pilot, lambda: table.row(RUNS // 2) is not None, timeout=30, what="rows in the middle")
        assert table.row(RUNS // 2).id == RUNS - RUNS // 2

        await pilot.press("home")
        await wait_for(pilot, lambda: table.current is not None and table.current.id == RUNS, timeout=30, what="the newest run")
        assert len(table._pages) <= KEEP_PAGES and len(table._pages) * PAGE < 5_000
    print(f"first paint with {RUNS:,} runs: {first_paint:.2f} s (headless, including app start)")

"""The TUI's compare view (C): opened on picked and marked runs, sorted by a key and by a click
on a header, cells that differ from the reference run in the theme's warning colour, and the
chart switching metric and charting a metric against a param. Real runs, real store."""

from __future__ import annotations

import pytest

from tests.test_compare_cli import write_sweep
from tests.test_tui import asyncio_test, make_app, opened, private_config, wait_for  # noqa: F401 (fixture)
from tests.test_tui_snapshots import check_text, history, normalised, render  # noqa: F401 (fixture)
from workbench.ui.screens.compare import CompareScreen
from workbench.ui.widgets.compare_grid import CompareGrid

SIZE = (120, 36)


@pytest.fixture(scope="module")
def sweep_ws(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("compare-tui"))


def cell_colour(grid: CompareGrid, run_id: int, label: str) -> str | None:
    """The foreground colour (hex) a cell of the run's row is drawn in now."""
    index = next(i for i, r in enumerate(grid.table.rows) if r.run_id == run_id)
    strip = grid.render_line(index - int(grid.scroll_y) + 1)
    x = 0
    for column_index in grid._drawn():
        column = grid.columns[column_index]
        if column.column.label == label or (column.column.kind == "run" and column.column.name == label):
            break
        x += column.width + 1
    else:
        raise AssertionError(f"column {label} not drawn")
    position = 0
    for segment in strip:
        if position <= x < position + len(segment.text):
            colour = segment.style.color if segment.style else None
            return colour.get_truecolor().hex.lower() if colour else None
        position += len(segment.text)
    raise AssertionError("cell not found")


def theme_colour(app, name: str) -> str:
    return app.get_css_variables()[name].split()[0].lower()


async def open_compare(pilot, *keys: str) -> CompareScreen:
    main = await opened(pilot, runs=3)
    main.table.focus()
    await pilot.pause()
    await pilot.press(*keys, "C")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.table is not None,
                   what="the compare view")
    await pilot.pause(0.1)
    return pilot.app.screen


async def move_to(pilot, screen: CompareScreen, label: str) -> None:
    grid = screen.grid
    target = next(i for i, c in enumerate(grid.columns) if c.column.label == label)
    while grid.cursor_column != target:
        await pilot.press("right" if grid.cursor_column < target else "left")


@asyncio_test
async def test_compare_view_on_picked_runs_sorts_and_highlights_what_differs(sweep_ws):
    app = make_app(sweep_ws)
    async with app.run_test(size=SIZE) as pilot:
        # Space picks run 3 (the newest), m marks run 1 as the reference; run 2 is left out.
        screen = await open_compare(pilot, "space", "down", "down", "m")
        table = screen.table
        assert [r.run_id for r in table.rows] == [3, 1] and table.reference == 1
        assert [c.label for c in table.columns] == ["learning_rate", "num_leaves", "auc", "metric:threshold",
                                                    "train_auc"]
        grid = screen.grid
        warning, accent = theme_colour(app, "warning"), theme_colour(app, "accent")
        assert cell_colour(grid, 3, "learning_rate") == warning  # 0.1 against the reference's 0.05
        assert cell_colour(grid, 3, "auc") == warning
        assert cell_colour(grid, 3, "metric:threshold") != warning  # 0.5 in both
        assert cell_colour(grid, 1, "learning_rate") == accent  # the reference row itself
        assert "reference run 1" in str(screen.query_one("#compare-title").content)

        await move_to(pilot, screen, "auc")
        await pilot.press("s")  # a metric sorts highest first
        assert screen.table.sort.column == "auc" and screen.table.sort.descending
        assert [r.run_id for r in screen.table.rows] == [3, 1]
        await pilot.press("s")  # again: the other way
        assert [r.run_id for r in screen.table.rows] == [1, 3]
        assert "auc ▲" in grid.header_text()
        assert cell_colour(grid, 3, "learning_rate") == warning  # still against run 1 after sorting

        # A click on a header sorts by that column.
        x = sum(c.width + 1 for c in grid.columns[:grid.columns.index(
            next(c for c in grid.columns if c.column.label == "num_leaves"))])
        await pilot.click(CompareGrid, offset=(x + 2 + 1, 1))  # +1: the border
        await pilot.pause()
        assert screen.table.sort.column == "num_leaves" and not screen.table.sort.descending
        assert [r.run_id for r in screen.table.rows] == [1, 3]

        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen), what="the main screen")


@asyncio_test
async def test_compare_chart_switches_metric_and_charts_a_metric_against_a_param(sweep_ws):
    app = make_app(sweep_ws)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_compare(pilot)  # nothing picked: the newest runs, all three
        assert [r.run_id for r in screen.table.rows] == [3, 2, 1]
        chart = screen.chart
        # the project's primary metric first, across the runs in table order
        assert chart.kind == "bars" and chart.series.metric == "auc" and chart.series.against is None
        assert chart.series.ys == [0.85, 0.9, 0.825]
        assert [label for _, label in chart.series.ticks] == ["3", "2", "1"]
        await pilot.press("m")
        assert chart.series.metric == "metric:threshold" and chart.series.ys == [0.5, 0.5, 0.5]
        await pilot.press("m")
        assert chart.series.metric == "train_auc" and chart.series.ys == [0.99, 0.9, 0.9]
        await pilot.pause()
        assert "train_auc across runs" in chart.border_title

        await move_to(pilot, screen, "learning_rate")
        await pilot.press("x")  # against the param under the cursor
        assert chart.kind == "scatter" and chart.series.against == "learning_rate"
        assert sorted(zip(chart.series.xs, chart.series.ys)) == [(0.05, 0.9), (0.1, 0.99), (0.2, 0.9)]
        await pilot.press("x")  # again on the same column: across the runs
        assert chart.series.against is None and chart.kind == "bars"

        await move_to(pilot, screen, "auc")  # the chart follows the metric column the cursor is on
        assert chart.series.metric == "auc"
        await pilot.press("x", "x")  # off a param column: each param in turn
        assert chart.series.against == "num_leaves" and chart.series.metric == "auc"
        assert sorted(zip(chart.series.xs, chart.series.ys)) == [(31, 0.825), (31, 0.9), (63, 0.85)]
        await pilot.press("x")  # past the last param: across the runs again
        assert chart.series.against is None

        # the view's keys are in the command palette while it is open, each with its id
        commands = {c.title: c.help for c in app.get_system_commands(screen)}
        assert "id compare_metric" in commands["Compare: chart the next metric"]
        next(c for c in app.get_system_commands(screen) if c.title == "Compare: chart the next metric").callback()
        assert chart.series.metric == "metric:threshold"


@asyncio_test
async def test_compare_view_text_snapshot(history):
    """The compare view over the generated history (40 runs, 5 params that all differ)."""
    app = make_app(history)
    async with app.run_test(size=(100, 30)) as pilot:
        main = await opened(pilot, runs=40)
        main.table.focus()
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.table is not None,
                       what="the compare view")
        await pilot.pause(0.2)
        text, _segments = render(app)
        check_text("compare", normalised(text, history))

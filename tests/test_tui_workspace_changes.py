"""The TUI shows changes to the workspace that record nothing in the store (a project folder
made, copied, renamed, a manifest broken or fixed) within about a second of the tick, and
acts on the current state (issue 11). Driven by Pilot on a real workspace folder."""

from __future__ import annotations

import shutil

from tests.test_tui import (  # noqa: F401 (fixtures)
    SIZE, asyncio_test, make_app, opened, private_config, screen_text, shown, wait_for, workspace,
)

SEEN_WITHIN_S = 4.0
"""The tick is 1 s and the folder listing is cached 0.5 s; the rest is a busy machine's slack."""


def _renamed(folder, name: str) -> None:
    manifest = folder / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('name = "tiny"', f'name = "{name}"'))


@asyncio_test
async def test_folders_and_manifests_changed_by_hand_show_and_the_keys_follow(workspace):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot)

        # A new project folder (nothing recorded in the store) is listed.
        shutil.copytree(workspace / "tiny", workspace / "tiny2")
        _renamed(workspace / "tiny2", "tiny2")
        await wait_for(pilot, lambda: "tiny2" in main.projects.rows and not main.projects.rows["tiny2"].error, SEEN_WITHIN_S, "tiny2 listed")

        # A copy that keeps the name: both rows show the clash, each with its folder, and the
        # selected project refuses to run.
        shutil.copytree(workspace / "tiny", workspace / "tiny-dup")
        await wait_for(pilot, lambda: sum(1 for r in main.projects.rows.values() if r.error) == 2,
                       SEEN_WITHIN_S, "the clash on both rows")
        await shown(pilot, "✗   tiny", "    tiny/", "    tiny-dup/", "name used twice")
        await shown(pilot, "no trend until the manifest is fixed")  # not "loading…" for ever
        # The runs pane wraps the error: its end says what to do. (Waited for, not read at once: the
        # trend line and the table are drawn on separate refreshes, and under CI's load the table
        # was once read a frame before it drew, still "loading…".)

        def runs_pane() -> str:
            return " ".join(main.table.render_line(y).text.strip() for y in range(1, main.table.size.height))

        await wait_for(pilot, lambda: "rename one of them" in runs_pane(), SEEN_WITHIN_S, "the runs pane's advice")
        assert main.project.name == "tiny" and main.project.error
        await pilot.press("r")
        await wait_for(pilot, lambda: any("fix the manifest" in n[1] for n in app.notes), what="the refusal")

        # Renaming the copy resolves it: within the tick the project runs again and its trend
        # is read for it (not "no primary metric" of the error row).
        _renamed(workspace / "tiny-dup", "tiny-dup")
        await wait_for(pilot, lambda: main.project.error is None and "tiny-dup" in main.projects.rows,
                       SEEN_WITHIN_S, "the clash resolved")
        await shown(pilot, "no runs yet")
        assert "no primary metric" not in screen_text(app)

        # A manifest broken by hand shows as broken; fixed, it shows fixed.
        manifest = workspace / "tiny2" / "workbench.toml"
        good = manifest.read_text()
        manifest.write_text(good.replace("[stages.prep]", "[stages.prep\n"))
        await wait_for(pilot, lambda: main.projects.rows["tiny2"].error, SEEN_WITHIN_S, "tiny2 broken")
        manifest.write_text(good)
        await wait_for(pilot, lambda: not main.projects.rows["tiny2"].error, SEEN_WITHIN_S, "tiny2 fixed")

        # A folder removed is gone from the list.
        shutil.rmtree(workspace / "tiny2")
        await wait_for(pilot, lambda: "tiny2" not in main.projects.rows, SEEN_WITHIN_S, "tiny2 gone")


@asyncio_test
async def test_a_name_clash_at_start_shows_each_folder_and_one_watch_notice(workspace):
    shutil.copytree(workspace / "tiny", workspace / "tiny-dup")
    app = make_app(workspace, watch_on_start=True)  # the manifest asks to be watched
    async with app.run_test(size=SIZE) as pilot:
        await shown(pilot, "✗   tiny", "    tiny/", "    tiny-dup/")
        await wait_for(pilot, lambda: any("cannot watch" in n[1] for n in app.notes), what="the watch notice")
        await pilot.pause(0.5)
        assert sum("cannot watch" in n[1] for n in app.notes) == 1, app.notes


@asyncio_test
async def test_a_run_with_a_reason_shows_what_changed_too(workspace):
    """A superseded watch run showed its reason where `changed: params.toml` belongs. The run is
    recorded in the store, as a watcher records it, and the TUI opens on it (a record pushed into
    the detail widget raced the app's own first read, which drew "no runs" over it)."""
    from workbench.core.model import RunStatus, Trigger
    from workbench.services.session import WorkbenchSession

    store = WorkbenchSession(workspace, runner="local").store
    run_id, started = store.start_run("tiny", str(workspace / "tiny"), str(Trigger.WATCH), "docker", [],
                                      ["params.toml"])
    record = store.get_run(run_id)
    record.status, record.reason = RunStatus.SUPERSEDED, "superseded by a newer change"
    record.finished_at = started
    store.finish_run(record)
    app = make_app(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot, runs=1)
        await shown(pilot, "superseded by a newer change · changed: params.toml")


@asyncio_test
async def test_the_trend_line_fits_at_80_columns(workspace):
    from workbench.ui.widgets.trend import TrendLine

    app = make_app(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        main = await opened(pilot)
        await pilot.pause(0.3)
        trend = main.query_one(TrendLine)
        values = [0.78 + 0.001 * (i % 7) for i in range(40)] + [0.8, 0.7990148]
        trend.show("roc_auc", True, values)
        await pilot.pause(0.1)
        line = next(l for l in screen_text(app).splitlines() if "roc_auc" in l)
        assert "▼ 0.00099 vs best" in line or "▼0.00099" in line, line


@asyncio_test
async def test_the_run_detail_footer_shows_the_run_keys_at_80_columns(workspace):
    from textual.widgets import Footer

    app = make_app(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        main = await opened(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: main.table.total >= 1 and main.table.row(0) is not None
                       and main.table.row(0).status != "running", 30, "the run to finish")
        await pilot.press("tab", "enter")  # the runs, then into the run's detail (the stages table)
        await wait_for(pilot, lambda: main.detail.has_focus_within, what="the detail focused")
        await pilot.pause(0.2)
        footer = screen_text(app).rstrip().splitlines()[-1]
        for key in ("1-9 Tabs", "R Cold", "d Diff", "m Mark", "q Quit"):
            assert key in footer, footer
        assert app.query_one(Footer)
        await pilot.press("9")  # the Models tab: its own keys, not the run's
        await pilot.pause(0.3)
        footer = screen_text(app).rstrip().splitlines()[-1]
        assert "R Cold" not in footer, footer

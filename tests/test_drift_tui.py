"""The drift pane, driven by Pilot: `D` opens the selected project's batches with their column
scores as bars (drifted columns in the theme's error colour) and the retrain each caused; a batch
landing while the project is watched shows up without a key press."""

from __future__ import annotations

from tests.test_drift import batch, in_production, sales, write_project
from tests.test_tui import asyncio_test, make_app, opened, private_config, table_rows, wait_for  # noqa: F401
from workbench.services.drift import DriftService
from workbench.services.session import WorkbenchSession
from workbench.ui.screens.drift import DriftScreen
from workbench.ui.widgets.drift import DriftPane
from workbench.ui.widgets.run_views import Palette

SIZE = (130, 40)


async def watched_drift_screen(pilot, app):
    """The main screen once "shop" is watched, and the drift pane `D` opens on it, loaded."""
    main = await opened(pilot)
    await wait_for(pilot, lambda: main.projects.rows["shop"].watching, what="watching")
    await pilot.press("D")
    await wait_for(pilot, lambda: isinstance(app.screen, DriftScreen), what="the drift screen")
    pane = app.screen.pane
    await wait_for(pilot, lambda: pane.view is not None, what="the drift checks")
    return main, pane


@asyncio_test
async def test_drift_pane_shows_batches_column_bars_and_the_retrain(tmp_path):
    write_project(tmp_path)
    session = WorkbenchSession(tmp_path, runner="local")
    in_production(session)
    service = DriftService(session)
    service.check_batch("shop", batch(tmp_path, "clean.csv", sales(300, seed=7)))
    drifted = service.check_batch("shop", batch(tmp_path, "drifted.csv", sales(300, seed=8, shift=15,
                                                                                  mix=(0.1, 0.2, 0.7))))
    retrain = service.retrain("shop", drifted)

    app = make_app(tmp_path, watch_on_start=True)
    async with app.run_test(size=SIZE) as pilot:
        main, pane = await watched_drift_screen(pilot, app)
        assert "production version 1 (run 1)" in pane.view.reference
        rows = table_rows(pane.batches_table)
        assert [r[1] for r in rows] == ["drifted.csv", "clean.csv"]
        assert "2/2 100%" in rows[0][4] and f"run {retrain.id} ✓ → v2 registered" == rows[0][6]
        assert "0/2" in rows[1][4] and rows[1][6] == "no drift and no decay"
        # The verdict's mark, not only its colour: weighed by importance, a drifted batch and a
        # clean one can show the same share of columns (seen on real data: 1/8 12% both).
        assert rows[0][4].startswith("✗ ") and rows[1][4].startswith("✓ ")
        columns = table_rows(pane.columns_table)
        # The label moved too (more buyers at higher amounts): shown, not counted in the share.
        # amount moved 1.5 sd and plan's PSI is past twice 0.25: each a major shift on its own.
        assert [(r[0], r[5]) for r in columns] == [("amount", "drifted major"), ("plan", "drifted major"),
                                                   ("bought (target)", "drifted major")]
        assert columns[0][1] == "Wasserstein" and columns[0][4] == "█" * 10
        bad = Palette.of(app).bad
        assert str(pane.columns_table.get_row_at(0)[0].style) == bad  # the theme's error colour

        await pilot.press("down")
        await wait_for(pilot, lambda: pane.batch_id != drifted.batch.id,
                       what="the clean batch's columns")
        assert [r[5] for r in table_rows(pane.columns_table)] == ["", "", ""]

        # A batch landing while the pane is open: checked by the watcher, shown without a key.
        batch(tmp_path, "later.csv", sales(300, seed=9, shift=15, mix=(0.1, 0.2, 0.7)))
        await wait_for(pilot, lambda: pane.view is not None and len(pane.view.batches) == 3, timeout=20,
                       what="the new batch in the pane")
        # The TUI polls the store too: it may show the batch while it is being checked, then
        # its verdict.
        await wait_for(pilot, lambda: "in cooldown" in table_rows(pane.batches_table)[0][6], timeout=20,
                       what="the new batch's verdict")
        newest = table_rows(pane.batches_table)[0]
        assert newest[1] == "later.csv" and "in cooldown" in newest[6]
        # The pane may reread the store (a retrain is running) before the watcher's event lands.
        await wait_for(pilot, lambda: any("later.csv: drifted" in note for _, note, _ in app.notes),
                       what="the batch's notification")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is main, what="back to the main screen")


WIDE_MANIFEST = """
[project]
name = "wide"

[data]
paths = ["data/train.csv"]
incoming = "data/incoming"

[stages.noop]
command = "python -c pass"
"""


def _wide_rows(rows: int, seed: int, shift: float = 0.0) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [{"monthly_charges": f"{v:.2f}", "contract_type": c}
            for v, c in zip(rng.normal(60 + shift, 10, rows), rng.choice(["monthly", "yearly"], rows))]


def _rendered_lines(table) -> list[str]:
    """The table as drawn: each line's text, as the terminal shows it."""
    return ["".join(segment.text for segment in table.render_line(y)).rstrip() for y in range(table.size.height)]


@asyncio_test
async def test_column_table_keeps_full_cells_after_moving_between_batches(tmp_path):
    """Issue 11 item 7: after moving to another batch, the columns table drew every cell cut to
    its header's width (`monthly_charges` as `monthl`, PSI 0.192 as `0.1`, 5-cell bars, no
    `drifted`), and stayed so on moving back."""
    from tests.test_drift import write_csv

    project = tmp_path / "wide"
    project.mkdir()
    (project / "workbench.toml").write_text(WIDE_MANIFEST)
    columns = ["monthly_charges", "contract_type"]
    write_csv(project / "data" / "train.csv", _wide_rows(2000, seed=1), columns)
    session = WorkbenchSession(tmp_path, runner="local")
    service = DriftService(session)
    incoming = project / "data" / "incoming"
    service.check_batch("wide", write_csv(incoming / "a-clean.csv", _wide_rows(400, seed=2), columns))
    drifted = service.check_batch("wide", write_csv(incoming / "b-drifted.csv", _wide_rows(400, seed=3, shift=12),
                                                    columns))
    psi = next(c.psi for c in drifted.report.columns if c.column == "monthly_charges")
    assert drifted.report.columns[0].drifted

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot)
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, DriftScreen) and app.screen.query(DriftPane)
                       and app.screen.pane.view is not None, what="the drift checks")
        pane = app.screen.pane

        async def drifted_table_is_whole(what: str) -> None:
            await wait_for(pilot, lambda: pane.batch_id == drifted.batch.id, what=what)
            await pilot.pause()
            lines = _rendered_lines(pane.columns_table)
            row = next((line for line in lines if "monthly_charges" in line), None)
            assert row is not None, f"{what}: no full column name in {lines}"
            assert f"{psi:.3f}" in row and "█" * 10 in row and row.endswith("drifted major"), f"{what}: {row!r}"

        await drifted_table_is_whole("the drifted batch first")
        await pilot.press("down")
        await wait_for(pilot, lambda: pane.batch_id != drifted.batch.id, what="the clean batch")
        await pilot.pause()
        assert any("monthly_charges" in line for line in _rendered_lines(pane.columns_table)), _rendered_lines(pane.columns_table)
        await pilot.press("up")
        await drifted_table_is_whole("back on the drifted batch")


@asyncio_test
async def test_drift_screen_shows_not_checked_and_warning_verdicts_with_their_rule(tmp_path):
    """Issue 11 items 3 and 4 in the TUI: an unusable batch is "not checked" (never a green bar),
    and one column's major shift is a warning naming the column, not "no drift"."""
    from tests.test_drift import write_csv
    from tests.test_tui import static_text

    project = tmp_path / "wide"
    project.mkdir()
    (project / "workbench.toml").write_text(WIDE_MANIFEST)
    columns = [f"feature_{i}" for i in range(6)]

    def rows(n: int, seed: int, scale: float = 1.0) -> list[dict]:
        import numpy as np

        rng = np.random.default_rng(seed)
        data = rng.normal(60, 10, (n, len(columns)))
        data[:, 0] *= scale
        return [dict(zip(columns, (f"{v:.2f}" for v in row))) for row in data]

    write_csv(project / "data" / "train.csv", rows(2000, seed=1), columns)
    session = WorkbenchSession(tmp_path, runner="local")
    service = DriftService(session)
    incoming = project / "data" / "incoming"
    unusable = service.check_batch("wide", write_csv(incoming / "a-missing.csv", rows(300, seed=2), columns[1:]))
    warning = service.check_batch("wide", write_csv(incoming / "b-pricier.csv", rows(1000, seed=3, scale=1.4),
                                                    columns))
    assert warning.batch.id != unusable.batch.id

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot)
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, DriftScreen) and app.screen.query(DriftPane)
                       and app.screen.pane.view is not None, what="the drift checks")
        pane = app.screen.pane
        batches = table_rows(pane.batches_table)
        assert [r[1] for r in batches] == ["b-pricier.csv", "a-missing.csv"]
        assert batches[0][4].endswith("1/6  17% warning") and batches[0][4].startswith("! ") and "█" in batches[0][4]
        assert batches[1][4] == "⊘ not checked"
        title = static_text(pane.query_one("#drift-columns-title"))
        assert "warning: feature_0 shifted by" in title and "below the drift rule" in title, title
        assert "drifted major" in table_rows(pane.columns_table)[0][5]

        await pilot.press("down")
        await wait_for(pilot, lambda: pane.batch_id == unusable.batch.id, what="the unusable batch")
        title = static_text(pane.query_one("#drift-columns-title"))
        assert "not checked: unusable batch: missing column: feature_0" in title and "no drift" not in title


@asyncio_test
async def test_drift_screen_at_80x24_keeps_the_retrain_column_and_ends_a_long_verdict_with_an_ellipsis(tmp_path):
    """Issue 11 (80x24): the retrain column was pushed off the right edge, and a verdict longer
    than two lines was cut with nothing saying so."""
    from tests.test_tui import screen_text, static_text

    write_project(tmp_path)
    session = WorkbenchSession(tmp_path, runner="local")
    in_production(session)
    service = DriftService(session)
    drifted = service.check_batch("shop", batch(tmp_path, "a-rather-long-batch-file-name-2026-12-01.csv",
                                                sales(300, seed=8, shift=15, mix=(0.1, 0.2, 0.7))))
    retrain = service.retrain("shop", drifted)

    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot)
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, DriftScreen) and app.screen.query(DriftPane)
                       and app.screen.pane.view is not None, what="the drift checks")
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "retrain" in text and f"run {retrain.id}" in text, text
        # A verdict longer than two lines (its rule names many columns): it ends with "…".
        pane = app.screen.pane
        first = pane.view.batches[0]
        from dataclasses import replace
        rule = "; ".join(f"column_{i} moved by {i}.5 sd" for i in range(30))
        pane.show_batch(replace(first, report=replace(first.report, rule=rule)))
        await pilot.pause(0.1)
        title = static_text(pane.query_one("#drift-columns-title"), width=78).rstrip().splitlines()
        assert len(title) == 3 and title[-1].endswith("…"), title


@asyncio_test
async def test_a_watched_batch_s_check_shows_its_columns_done_until_it_is_checked(tmp_path, monkeypatch):
    """Issue 13 item 1: a long check (a wide table) says how far it is, on the project's row and
    in its open drift screen; the line goes when the batch is checked. Each column is made to
    take 0.4 s here, as a 1,000-column table's do in total."""
    import time

    from workbench.services import drift_columns

    write_project(tmp_path)
    compare_column = drift_columns.check_column

    def slow(*args, **kwargs):
        time.sleep(0.4)
        return compare_column(*args, **kwargs)

    monkeypatch.setattr(drift_columns, "check_column", slow)
    app = make_app(tmp_path, watch_on_start=True)
    async with app.run_test(size=SIZE) as pilot:
        main, pane = await watched_drift_screen(pilot, app)
        assert pane.progress_line == ""
        batch(tmp_path, "slow.csv", sales(300, seed=9))
        line = await wait_for(pilot, lambda: pane.progress_line.endswith("/3 columns") and pane.progress_line,
                              timeout=20, what="the check's progress in the drift screen")
        assert line.startswith("checking data/incoming/slow.csv: ")
        assert main.projects.rows["shop"].note.startswith("checking data/incoming/slow.csv: ")
        drawn = main.projects._prompt(main.projects.rows["shop"]).plain
        assert "⟳ checking data/incoming/slow.csv: " in drawn and "!" not in drawn  # work under way, not a warning
        await wait_for(pilot, lambda: any("slow.csv: no drift" in note for _, note, _ in app.notes), timeout=20,
                       what="the batch's notification")
        await wait_for(pilot, lambda: pane.progress_line == "" and main.projects.rows["shop"].note == "",
                       what="the progress line gone")

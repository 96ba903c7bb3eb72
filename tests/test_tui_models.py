"""The Models tab and the promotion keys, driven by Pilot on a tiny project with the local
runner and a real DuckDB registry: each key dry-runs, the confirmation screen shows the checks,
gates and champion/challenger and takes a reason for the audit trail, only a confirmation
changes anything, and the screen fits an 80x24 terminal."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

import json

import pytest
from textual.geometry import Region
from textual.widgets import Button, Footer, Input, Static, TabbedContent

from tests.test_cli import wb
from tests.test_pipeline_local import write_project
from tests.test_registry import audit_rows, run_with_scale
from tests.test_tui import SIZE, asyncio_test, make_app, private_config, screen_text, shown, wait_for  # noqa: F401
from workbench.services.session import WorkbenchSession
from workbench.ui.screens.promote import PromoteScreen
from workbench.ui.widgets.models import ModelsView


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    write_project(root)
    return root


def two_versions(root: Path, second_scale: float) -> WorkbenchSession:
    """Version 1 (score 0.75) in staging and production; version 2 registered, nowhere."""
    session = WorkbenchSession(root, runner="local")
    run_with_scale(session, root, 1.5)
    registry = session.registry
    assert registry.promote("tiny", 1, "staging").applied and registry.promote("tiny", 1, "production").applied
    run_with_scale(session, root, second_scale)
    return session


async def open_models(pilot) -> ModelsView:
    app = pilot.app
    models = app.screen.query_one(ModelsView)
    await wait_for(pilot, lambda: len(models.versions) == 2, what="the Models tab to load")
    await pilot.press("s")  # not on the Models tab yet: it opens, nothing is previewed
    assert app.screen.query_one(TabbedContent).active == "models"
    models.table.move_cursor(row=0)  # version 2, the newest
    await pilot.pause()
    return models


async def confirm_screen(pilot, key: str) -> PromoteScreen:
    await pilot.press(key)
    screen = await wait_for(pilot, lambda: pilot.app.screen if isinstance(pilot.app.screen, PromoteScreen) else None,
                            what=f"the confirmation after {key}")
    await shown(pilot, "audit reason")  # drawn, not only mounted: the tests read the screen next
    return screen


@asynccontextmanager
async def production_confirmation(root: Path, second_scale: float, size: tuple[int, int], notifications=False):
    """The app at `size`, showing the production confirmation of version 2 (staged; its score
    from `second_scale`) against production's version 1."""
    session = two_versions(root, second_scale)
    assert session.registry.promote("tiny", 2, "staging").applied
    app = make_app(root, session=session)
    async with app.run_test(size=size, notifications=notifications) as pilot:
        await open_models(pilot)
        screen = await confirm_screen(pilot, "p")
        await pilot.pause(0.2)
        yield app, pilot, screen


async def type_reason(pilot, screen: PromoteScreen, text: str) -> None:
    """Tab from No (where focus starts) to the reason and type it, key by key."""
    assert screen.focused is screen.query_one("#no", Button)
    await pilot.press("tab")
    assert screen.focused is screen.query_one("#reason", Input)
    await pilot.press(*["space" if c == " " else c for c in text])
    assert screen.query_one("#reason", Input).value == text  # y and n went into the reason


async def closed(pilot) -> None:
    await wait_for(pilot, lambda: not isinstance(pilot.app.screen, PromoteScreen), what="the screen closed")


@asyncio_test
async def test_stage_promote_and_roll_back_through_confirmation_screens(root):
    session = two_versions(root, 1.8)  # version 2 scores 0.9: better than production's 0.75
    app = make_app(root, session=session)
    async with app.run_test(size=SIZE) as pilot:
        models = await open_models(pilot)
        assert [str(c.label) for c in models.table.columns.values()][3] == "score"

        screen = await confirm_screen(pilot, "s")
        text = screen_text(app)
        assert "Promote version 2 to staging?" in text and "staging: version 2 replaces version 1" in text
        # The rules by the names the CLI shows, not their ids.
        for rule in ("not there already", "run succeeded", "gates passed", "model file intact"):
            assert f"✓ {rule}" in text
        assert "Gates" in text and "✓ score >= 0.5" in text and "Champion/challenger" not in text
        assert session.registry.aliases("tiny") == {"staging": 1, "production": 1}  # a preview changes nothing
        await pilot.press("y")
        await wait_for(pilot, lambda: session.registry.aliases("tiny")["staging"] == 2, what="staging moved")
        await wait_for(pilot, lambda: "staging" in models.versions[0].aliases, what="the Models tab refreshed")
        assert app.screen.projects.rows["tiny"].staging == 2
        assert any("staging: version 2 promoted (was version 1)" in note for _, note, _ in app.notes)

        screen = await confirm_screen(pilot, "p")
        text = screen_text(app)
        assert "Promote version 2 to production?" in text and "✓ champion" in text and "✓ staged first" in text
        assert "Champion/challenger · score (higher is better, tolerance 0)" in text
        assert "champion (version 1, production)" in text and "0.75" in text
        assert "challenger (version 2)" in text and "0.9" in text and "+0.15" in text and "better" in text
        await pilot.press("y")
        await wait_for(pilot, lambda: session.registry.aliases("tiny")["production"] == 2, what="production moved")
        await wait_for(pilot, lambda: app.screen.projects.rows["tiny"].production == 2, what="projects pane")

        screen = await confirm_screen(pilot, "b")
        text = screen_text(app)
        assert "Roll production back to version 1?" in text and "production: version 1 replaces version 2" in text
        await pilot.press("y")
        await wait_for(pilot, lambda: session.registry.aliases("tiny")["production"] == 1, what="rolled back")
        await wait_for(pilot, lambda: "production" in models.versions[1].aliases, what="the Models tab refreshed")
        assert "MLflow" in models.query_one("#models-heading").render().plain
    assert [row[:3] for row in audit_rows(root)][-3:] == [
        ("promote", "staging", 2), ("promote", "production", 2), ("rollback", "production", 1)]


@asyncio_test
async def test_a_worse_version_is_refused_for_production_and_nothing_changes(root):
    session = two_versions(root, 1.2)  # version 2 scores 0.6: worse than production's 0.75
    assert session.registry.promote("tiny", 2, "staging").applied
    before = audit_rows(root)
    app = make_app(root, session=session)
    async with app.run_test(size=SIZE) as pilot:
        await open_models(pilot)
        screen = await confirm_screen(pilot, "p")
        text = screen_text(app)
        assert "Refused: promote version 2 to production" in text and "Nothing changes." in text
        assert "✗ champion" in text and "worse by 0.15, more than the tolerance 0" in text
        assert "verdict" in text and "worse" in text and "-0.15" in text
        assert [str(b.label) for b in screen.query(Button)] == ["Record refusal (y)", "Close (esc)"]
        await type_reason(pilot, screen, "not yet")
        await pilot.press("escape")  # a refused dry run closes without a trace
        await closed(pilot)
    assert session.registry.aliases("tiny") == {"staging": 2, "production": 1}
    assert audit_rows(root) == before


# -- the reason ------------------------------------------------------------------------------


@asyncio_test
async def test_the_reason_typed_in_the_confirmation_lands_in_the_audit_row(root):
    session = two_versions(root, 1.8)
    app = make_app(root, session=session)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_models(pilot)
        screen = await confirm_screen(pilot, "s")
        await type_reason(pilot, screen, "canary looked healthy")
        await pilot.press("enter")  # Enter in the reason answers yes
        await closed(pilot)
        await wait_for(pilot, lambda: session.registry.aliases("tiny")["staging"] == 2, what="staging moved")

        screen = await confirm_screen(pilot, "p")
        await type_reason(pilot, screen, "ship it")
        await pilot.click("#yes")  # the button takes the reason too
        await wait_for(pilot, lambda: session.registry.aliases("tiny")["production"] == 2, what="production moved")
        await wait_for(pilot, lambda: any("production: version 2 promoted" in n for _, n, _ in app.notes),
                       what="the notification")
    latest, previous = session.registry.history("tiny")[:2]
    assert (latest.action, latest.alias, latest.version, latest.reason) == ("promote", "production", 2, "ship it")
    assert (previous.action, previous.alias, previous.version, previous.reason) == (
        "promote", "staging", 2, "canary looked healthy")
    deployed = session.registry.deployed("tiny", "production")
    assert deployed["reason"] == "ship it"  # the release's metadata.json says why as well
    shown = json.loads(wb(root, "history", "tiny", "--json").stdout)  # what the CLI shows
    assert [(h["action"], h["alias"], h["reason"]) for h in shown[:2]] == [
        ("promote", "production", "ship it"), ("promote", "staging", "canary looked healthy")]


@asyncio_test
async def test_escape_with_a_reason_typed_changes_nothing_and_records_nothing(root):
    session = two_versions(root, 1.8)
    before = audit_rows(root)
    app = make_app(root, session=session)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_models(pilot)
        for key in ("s", "b"):
            screen = await confirm_screen(pilot, key)
            await type_reason(pilot, screen, "on second thoughts")
            await pilot.press("escape")
            await closed(pilot)
        screen = await confirm_screen(pilot, "s")
        await pilot.press("enter")  # focus starts on No: Enter alone never promotes
        await closed(pilot)
        await pilot.pause(0.3)
    assert session.registry.aliases("tiny") == {"staging": 1, "production": 1}
    assert audit_rows(root) == before


@asyncio_test
async def test_a_confirmed_refusal_is_recorded_with_its_reason_as_the_cli_does(root):
    session = two_versions(root, 1.8)  # version 2 is not in staging: production refuses it
    app = make_app(root, session=session)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_models(pilot)
        screen = await confirm_screen(pilot, "p")
        assert "Refused: promote version 2 to production" in screen_text(app) and "✗ staged first" in screen_text(app)
        await type_reason(pilot, screen, "hotfix")
        await pilot.press("enter")
        await closed(pilot)
        await wait_for(pilot, lambda: session.registry.history("tiny")[0].action == "refuse", what="the refusal")
        await wait_for(pilot, lambda: any("refused (recorded)" in n for _, n, _ in app.notes), what="the note")

        screen = await confirm_screen(pilot, "b")  # production never moved: nothing to roll back to
        assert "Refused" in screen_text(app)
        await type_reason(pilot, screen, "bad canary")
        await pilot.press("enter")
        await closed(pilot)
        await wait_for(pilot, lambda: session.registry.history("tiny")[0].request == "rollback", what="the refusal")
    rollback, promote = session.registry.history("tiny")[:2]
    assert (promote.action, promote.request, promote.alias, promote.version, promote.reason) == (
        "refuse", "promote", "production", 2, "hotfix")
    assert [c["rule"] for c in promote.checks if not c["passed"]] == ["staged_first"]
    assert (rollback.action, rollback.alias, rollback.reason) == ("refuse", "production", "bad canary")
    assert session.registry.aliases("tiny") == {"staging": 1, "production": 1}


@asyncio_test
async def test_a_refusal_that_would_now_go_through_is_shown_again_not_applied(root):
    session = two_versions(root, 1.8)
    app = make_app(root, session=session)
    async with app.run_test(size=SIZE) as pilot:
        await open_models(pilot)
        await confirm_screen(pilot, "p")  # refused: version 2 was never in staging
        assert session.registry.promote("tiny", 2, "staging").applied  # meanwhile, from the CLI
        before = audit_rows(root)
        await pilot.press("y")  # record the refusal... which no longer stands
        await wait_for(pilot, lambda: "Promote version 2 to production?" in screen_text(app), what="the new preview")
        assert session.registry.aliases("tiny") == {"staging": 2, "production": 1}
        assert audit_rows(root) == before
        await pilot.press("escape")
        await closed(pilot)
    assert session.registry.aliases("tiny")["production"] == 1


# -- 80x24 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("second_scale", [1.8, 1.2], ids=["allowed", "refused-wrapped-headline"])
@asyncio_test
async def test_the_confirmation_fits_80x24(root, second_scale):
    """The tallest confirmation (production: checks, gates, champion/challenger; refused, a
    headline over two lines) keeps its reason and buttons on screen, above the footer; the
    details scroll."""
    async with production_confirmation(root, second_scale, size=(80, 24)) as (app, pilot, screen):
        footer = app.main_screen.query_one(Footer).region
        assert footer.y == 23
        above_footer = Region(0, 0, 80, footer.y)
        for selector in ("#promote-dialog", "#promote-title", "#promote-what", "#reason", "#yes", "#no"):
            region = screen.query_one(selector).region
            assert above_footer.contains_region(region) and region.height > 0, f"{selector} at {region}"
        # The footer: the Models tab's keys (its table has the focus); drawn once its bindings settle.
        text = await wait_for(pilot, lambda: (t := screen_text(app)).splitlines()[-1].startswith("s Staging") and t,
                              what="the footer with the Models keys")
        assert "audit reason (optional)" in text and "(y)" in text and ("No (n)" in text or "Close (esc)" in text)
        assert "verdict" not in text  # at the end of the details, below the fold...
        await pilot.press("pagedown", "pagedown")
        await shown(pilot, "verdict")  # ...and reachable
        assert screen.query_one("#promote-detail", Static).region.height > 0


@asyncio_test
async def test_the_cursor_follows_new_versions_until_moved_to_an_older_one(root):
    session = WorkbenchSession(root, runner="local")
    run_with_scale(session, root, 1.5)
    app = make_app(root, session=session)
    async with app.run_test(size=SIZE) as pilot:
        models = app.screen.query_one(ModelsView)
        await wait_for(pilot, lambda: len(models.versions) == 1, what="the Models tab to load")

        def refresh() -> None:  # what the screen does when a run registers a version
            models.show("tiny", session.registry.models("tiny"), "score")

        run_with_scale(session, root, 1.8)
        refresh()
        assert models.current.version == 2, "the newest version is the one the keys offer"

        models.table.move_cursor(row=1)  # the user picks version 1
        run_with_scale(session, root, 1.2)
        refresh()
        assert [v.version for v in models.versions] == [3, 2, 1] and models.current.version == 1


@asyncio_test
async def test_staging_rolls_back_with_its_own_key(root):
    session = two_versions(root, 1.8)
    assert session.registry.promote("tiny", 2, "staging").applied
    app = make_app(root, session=session)
    async with app.run_test(size=SIZE) as pilot:
        models = await open_models(pilot)
        models.table.focus()
        await shown(pilot, "B Rollback stg")  # the footer shows the focused Models tab's keys
        screen = await confirm_screen(pilot, "B")
        text = screen_text(app)
        assert "Roll staging back to version 1?" in text and "staging: version 1 replaces version 2" in text
        await type_reason(pilot, screen, "staging smoke test failed")
        await pilot.press("enter")
        await wait_for(pilot, lambda: session.registry.aliases("tiny") == {"staging": 1, "production": 1},
                       what="staging rolled back, production untouched")
    rollback = session.registry.history("tiny")[0]
    assert (rollback.action, rollback.alias, rollback.version, rollback.reason) == (
        "rollback", "staging", 1, "staging smoke test failed")


@asyncio_test
async def test_the_confirmation_shows_one_sign_for_a_lower_is_better_metric(tmp_path):
    """Item 9: with a lower-is-better metric the dialog said "better (+0.008169)" above
    "delta -0.008169". The delta is now in the metric's direction too: + is better."""
    from tests.test_pipeline_local import MANIFEST

    root = tmp_path / "ws"
    write_project(root, **{"workbench.toml": MANIFEST.replace('primary_metric = "score"',
                                                             'primary_metric = "score"\nprimary_metric_goal = "minimize"')})
    session = two_versions(root, 1.2)  # version 2 scores 0.6, lower than production's 0.75: better
    assert session.registry.promote("tiny", 2, "staging").applied
    app = make_app(root, session=session)
    async with app.run_test(size=SIZE) as pilot:
        await open_models(pilot)
        await confirm_screen(pilot, "p")
        text = screen_text(app)
        assert "lower is better" in text and "better (+0.15)" in text
        delta = next(line for line in text.splitlines() if "delta" in line)
        assert "+0.15" in delta and "-0.15" not in delta, delta


@asyncio_test
async def test_home_and_end_move_the_models_cursor(root):
    """Item 9: Home and End did not move the Models table's cursor (they scrolled sideways)."""
    session = two_versions(root, 1.8)
    app = make_app(root, session=session)
    async with app.run_test(size=SIZE) as pilot:
        models = await open_models(pilot)
        assert app.focused is models.table and models.current.version == 2
        await pilot.press("end")
        assert models.table.cursor_row == 1 and models.current.version == 1
        await pilot.press("home")
        assert models.table.cursor_row == 0 and models.current.version == 2


@asyncio_test
async def test_notifications_wait_while_a_confirmation_is_open(root):
    """Item 9: toasts covered the confirmation dialog's verdict and reason field. While it is
    open they are not drawn; those still due show once it closes."""
    async with production_confirmation(root, 1.8, size=(100, 30), notifications=True) as (app, pilot, screen):
        for i in range(3):
            app.notify(f"run {i} finished elsewhere " * 2, title="another project", timeout=30)
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "audit reason (optional)" in text and "Promote (y)" in text and "No (n)" in text
        assert "finished elsewhere" not in text
        await pilot.press("escape")
        await closed(pilot)
        await shown(pilot, "finished elsewhere")

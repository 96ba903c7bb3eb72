"""The Models tab and the promotion keys, driven by Pilot on a tiny project with the local
runner and a real DuckDB registry: each key dry-runs, the confirmation screen shows the checks,
gates and champion/challenger, and only a confirmation changes anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button, TabbedContent

from tests.test_pipeline_local import write_project
from tests.test_registry import audit_rows, run_with_scale
from tests.test_tui import SIZE, asyncio_test, make_app, private_config, screen_text, wait_for  # noqa: F401
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
    return await wait_for(pilot, lambda: pilot.app.screen if isinstance(pilot.app.screen, PromoteScreen) else None,
                          what=f"the confirmation after {key}")


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
        for rule in ("not_current", "run_succeeded", "gates_passed", "model_intact"):
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
        assert "Promote version 2 to production?" in text and "✓ champion" in text and "✓ staged_first" in text
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
        assert [b.id for b in screen.query(Button)] == ["no"]  # Close only
        await pilot.press("y")  # no confirmation to give
        assert isinstance(app.screen, PromoteScreen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, PromoteScreen), what="the screen closed")
    assert session.registry.aliases("tiny") == {"staging": 2, "production": 1}
    assert audit_rows(root) == before

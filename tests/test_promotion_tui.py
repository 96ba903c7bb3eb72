"""Issue 11 item 6: a promotion key acts only on the state the screen showed.

The Models tab shows staging held by version 1; another process moves staging to version 2
before the TUI has read it again. Pressing `s` on version 2 must not open a confirmation for a
state nobody saw ("version 2 already holds staging" under a list saying v1): the list is read
again and the user is told what changed."""

from __future__ import annotations

from tests.test_cli import wb
from tests.test_tui import SIZE, asyncio_test, make_app, private_config, wait_for  # noqa: F401
from tests.test_tui_models import open_models, root, two_versions  # noqa: F401
from workbench.ui.screens import loaders
from workbench.ui.screens.promote import PromoteScreen


@asyncio_test
async def test_s_does_not_act_on_an_alias_holder_the_screen_did_not_show(root, monkeypatch):
    session = two_versions(root, 1.8)          # v1 in staging and production; v2 registered
    app = make_app(root, session=session)
    async with app.run_test(size=SIZE) as pilot:
        models = await open_models(pilot)      # cursor on version 2
        assert [v.aliases for v in models.versions] == [(), ("production", "staging")]
        # The screen goes stale (as it did in the issue): it stops reading what others record.
        monkeypatch.setattr(loaders, "read_generation", lambda _session: None)
        moved = wb(root, "promote", "tiny", "2", "--to", "staging", "--yes")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        notes = len(app._notifications)
        await pilot.press("s")
        await wait_for(pilot, lambda: len(app._notifications) > notes, what="the notice")
        text = list(app._notifications)[-1].message
        assert text.startswith("staging is held by version 2 now, not version 1 as the screen showed"), text
        assert not isinstance(app.screen, PromoteScreen)
        await wait_for(pilot, lambda: models.versions[0].aliases == ("staging",), what="the list read again")

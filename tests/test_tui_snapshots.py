"""Snapshots of the main screens in every shipped theme.

Two checks per screen and theme, so a snapshot fails for a real change and not for a new
Textual's SVG markup: the screen's text must equal the stored baseline in
tests/test_tui_snapshots/ (layout: nothing cut off, nothing overlapping), and the theme's
colours must be where they belong (a succeeded run's ✓ in the theme's success colour, a failed
run's ✗ in its error colour, panes on its surface colour, footer keys in its key colour).
The SVG of each screen is written next to the test's files for a person to look at.

    WORKBENCH_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_tui_snapshots.py   # after a deliberate change
"""

from __future__ import annotations

import io
import os
import sys
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from tests.test_tui import asyncio_test, make_app, opened, private_config, wait_for  # noqa: F401 (fixture)
from workbench.ui.screens.diff import DiffScreen
from workbench.ui.screens.help import HelpScreen

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_lineage import history_workspace  # noqa: E402

BASELINES = Path(__file__).parent / "test_tui_snapshots"
THEMES_DIR = Path(__file__).resolve().parents[1] / "themes"
THEMES = sorted(tomllib.loads(p.read_text())["name"] for p in THEMES_DIR.glob("*.toml"))
SIZE = (100, 30)


@pytest.fixture
def history(tmp_path) -> Path:
    """A workspace with 40 recorded runs whose every value is fixed (dates in 2024)."""
    root = tmp_path / "snapshot-ws"
    history_workspace(root, 40)
    return root


def render(app) -> tuple[str, list]:
    """(the screen as text, its segments)."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system="truecolor", legacy_windows=False)
    update = app.screen._compositor.render_update(full=True)
    segments = list(console.render(update))
    console.print(update)
    return console.export_text(), segments


def normalised(text: str, root: Path) -> str:
    """The text without what differs between machines: the workspace path in the status line
    (which gives way on narrow screens, so its length varies too)."""
    lines = [line.rstrip() for line in text.splitlines()]
    if lines and lines[0].startswith(" workbench "):
        words = lines[0].split()
        lines[0] = " ".join(["workbench", "<workspace>"] + words[2:])
    return "\n".join(lines) + "\n"


def check_text(name: str, text: str) -> None:
    baseline = BASELINES / f"{name}.txt"
    if os.environ.get("WORKBENCH_UPDATE_SNAPSHOTS") or not baseline.exists():
        baseline.parent.mkdir(exist_ok=True)
        baseline.write_text(text)
        if not os.environ.get("WORKBENCH_UPDATE_SNAPSHOTS"):
            pytest.fail(f"no baseline {baseline.name} yet: written; check it and run again")
    assert text == baseline.read_text(), f"{name} differs from {baseline} (WORKBENCH_UPDATE_SNAPSHOTS=1 rewrites it)"


def colours(segments, needle: str) -> set[tuple[str | None, str | None]]:
    found = set()
    for seg in segments:
        if needle in seg.text and seg.style is not None:
            fg = seg.style.color.get_truecolor().hex if seg.style.color else None
            bg = seg.style.bgcolor.get_truecolor().hex if seg.style.bgcolor else None
            found.add((fg, bg))
    return found


def theme_colour(app, name: str) -> str:
    return app.get_css_variables()[name].split()[0].lower()


@pytest.mark.parametrize("theme", THEMES)
@asyncio_test
async def test_main_screens_in_every_theme(theme, history, tmp_path):
    app = make_app(history)
    app.theme = theme
    async with app.run_test(size=SIZE) as pilot:
        main = await opened(pilot, runs=40)
        await wait_for(pilot, lambda: main.detail.record is not None and main.runner_name == "local",
                       what="the newest run's detail")
        await pilot.pause(0.2)
        text, segments = render(app)
        check_text("main", normalised(text, history))
        (tmp_path / f"main-{theme}.svg").write_text(app.export_screenshot())
        success, error, surface = (theme_colour(app, v) for v in ("success", "error", "surface"))
        assert (success, surface) in colours(segments, "✓ succeeded"), "a succeeded run is not in the success colour"
        # The focused pane (Projects at start) is drawn in the accent colour, heavy; the others are not.
        accent = theme_colour(app, "accent")
        assert accent in {fg for fg, _ in colours(segments, "Projects")}, "the focused pane's title is not in $accent"
        assert accent not in {fg for fg, _ in colours(segments, "Runs ·")}
        assert "┏" in text.splitlines()[1].split("┓")[0] and "╭─ Runs" in text
        await pilot.press("tab", "down", "down", "down", "down", "down", "down", "down", "down", "down")
        await pilot.press("down", "down", "down", "down", "down", "down", "down", "down", "down", "down")
        await pilot.pause(0.2)
        text, segments = render(app)
        assert main.table.current.status == "failed"  # run 20: the generator fails every 20th
        assert accent in {fg for fg, _ in colours(segments, "Runs ·")}, "Tab: the runs pane takes the accent"
        assert accent not in {fg for fg, _ in colours(segments, "Projects")}
        assert any(fg == error for fg, _bg in colours(segments, "✗")), "a failed run is not in the error colour"
        assert theme_colour(app, "footer-key-foreground") in {fg for fg, _ in colours(segments, "r")}

        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        await pilot.pause(0.1)
        text, _segments = render(app)
        check_text("help", normalised(text, history))
        (tmp_path / f"help-{theme}.svg").write_text(app.export_screenshot())
        await pilot.press("escape", "home", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen), what="the diff")
        await pilot.pause(0.1)
        text, _segments = render(app)
        check_text("diff", normalised(text, history))
        (tmp_path / f"diff-{theme}.svg").write_text(app.export_screenshot())


@asyncio_test
async def test_promotion_confirmation_at_80x24(tmp_path):
    """The production confirmation in the smallest supported terminal: checks, the reason and
    both buttons inside the dialog (the part of the screen compared: the runs behind it vary)."""
    from tests.test_pipeline_local import write_project
    from tests.test_tui_models import production_confirmation

    root = tmp_path / "ws"
    write_project(root)
    async with production_confirmation(root, 1.8, size=(80, 24)) as (app, _pilot, screen):
        text, _segments = render(app)
        dialog = screen.query_one("#promote-dialog").region
        rows = text.splitlines()[dialog.y:dialog.bottom]
        check_text("promote-80x24", "\n".join(row[dialog.x:dialog.right].rstrip() for row in rows) + "\n")
        (tmp_path / "promote-80x24.svg").write_text(app.export_screenshot())

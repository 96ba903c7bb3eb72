"""The Textual workbench. Thin: it wires the services, the themes, the config and the keys;
the main screen does the rest (workbench/ui/screens/main.py).

    workbench [tui] [WORKSPACE] [--runner auto|docker|local|cluster] [--scheduler ADDR]
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from workbench.core.errors import WorkbenchError
from workbench.services.session import WorkbenchSession
from workbench.ui.actions import ACTIONS, DETAIL_TABS, bindings
from workbench.ui.config import UiConfig, load_config, save_theme
from workbench.ui.messages import EventBridge, Notice
from workbench.ui.screens.confirm import ConfirmScreen
from workbench.ui.screens.help import HelpScreen, key_display
from workbench.ui.screens.main import MainScreen
from workbench.ui.themes import DEFAULT_THEME, load_themes, theme_dirs

log = logging.getLogger(__name__)
PALETTE_TITLES = {"run_now": "Run now", "toggle_watch": "Toggle watch", "cancel_run": "Cancel run",
                  "rerun_cold": "Rerun cold (reproducibility check)", "open_diff": "Open run diff",
                  "mark_run": "Mark run as diff base", "pick_run": "Pick run for compare",
                  "open_compare": "Compare runs (params x metrics, charts)",
                  "open_sweep": "Sweep of the selected trial run (live compare view)",
                  "compare_sort": "Compare: sort by the column under the cursor",
                  "compare_metric": "Compare: chart the next metric",
                  "compare_against": "Compare: chart the metric against a param",
                  "filter": "Filter runs", "switch_theme": "Switch theme",
                  "history": "Audit history of the project (verified)",
                  "serve": "Serve the project and watch it serve (req/s, latency, errors)",
                  "serving_stop": "Serving: stop the servers started here",
                  **{f"tab_{tab}": f"Run detail: {what} tab" for tab, what in DETAIL_TABS},
                  "promote_staging": "Promote model version to staging",
                  "promote_production": "Promote model version to production",
                  "rollback": "Roll back production model",
                  "help": "Help: keys", "quit": "Quit"}


class WorkbenchApp(App):
    CSS_PATH = Path(__file__).parent / "workbench.tcss"
    TITLE = "workbench"
    BINDINGS = bindings("app")

    def __init__(self, workspace: Path | str, runner: str | None = None, *, config: UiConfig | None = None,
                 theme_folders: list[Path] | None = None, watch_on_start: bool | None = None,
                 session: WorkbenchSession | None = None) -> None:
        super().__init__()
        self.config = config or load_config()
        self.problems: list[str] = list(self.config.problems)
        self.bridge = EventBridge(self)
        self.session = session or WorkbenchSession(workspace, runner=runner)
        self.session.notice = self._notice
        from workbench.services.watch import WatchService

        self.watch = WatchService(self.session, self.bridge, who="workbench TUI")
        self.watch_on_start = self.config.watch_on_start if watch_on_start is None else watch_on_start
        self.served_here: set[str] = set()
        """Server containers the Serving view started (S): removed when the app quits."""
        self.keepers: dict[str, object] = {}
        """project -> the ServingKeeper of the servers started here: each second it starts a
        crashed one again and turns production's traffic into drift batches (as `workbench serve` does)."""
        self._keeping = False
        self.main_screen = MainScreen(self.session, self.watch, self.bridge, self.watch_on_start)
        self._load_themes(theme_folders)
        self.set_keymap(self.config.keys)

    # -- themes -------------------------------------------------------------------------------

    def _load_themes(self, folders: list[Path] | None) -> None:
        themes = load_themes(folders if folders is not None else theme_dirs())
        self.problems += themes.problems
        self.theme_sources = themes.sources
        for theme in themes.themes.values():
            self.register_theme(theme)
        if themes.themes:
            # The theme picker offers the data-file themes only: Textual's twenty built-in
            # ones would bury them (copy one into a theme file to have it back).
            for name in list(self.available_themes):
                if name not in themes.themes:
                    self.unregister_theme(name)
        wanted = self.config.theme or DEFAULT_THEME
        if wanted not in self.available_themes:
            if self.config.theme:
                self.problems.append(f"config {self.config.path}: theme: no theme named {wanted!r} "
                                     f"(themes: {', '.join(sorted(themes.themes)) or 'none'})")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = wanted

    def _remember_theme(self, theme) -> None:
        if theme.name == self.config.theme:
            return
        self.config.theme = theme.name
        self.run_worker(lambda: self._save_theme(theme.name), thread=True, group="config", exit_on_error=False)

    def _save_theme(self, name: str) -> None:
        try:
            save_theme(self.config.path, name)
        except OSError as exc:
            self.post_message(Notice(f"could not remember the theme in {self.config.path}: {exc}", "error"))

    # -- lifecycle ----------------------------------------------------------------------------

    def get_default_screen(self) -> Screen:
        return self.main_screen

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        self._leave_on_signals()
        self.set_interval(1.0, self._tick_keepers)
        for problem in self.problems:
            self.notify(problem, title="config", severity="error", timeout=15)

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, title=message.title, severity=message.severity, timeout=8)

    def _notice(self, text: str) -> None:
        """The session's notices (Docker unreachable, ...) come from worker threads."""
        self.post_message(Notice(text, "warning"))

    def on_unmount(self) -> None:
        self.close_services()

    def _leave_on_signals(self) -> None:
        """Closing the terminal (SIGHUP) or SIGTERM leaves the app the way `q` does: runs in
        flight cancelled and recorded, warm workers removed; the exit code is 128 + the signal.
        Without this Python dies on the spot and the run stays "running" with its container up.
        Handled on the event loop, so the app exits by its own path, never from a signal frame."""
        try:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(signum, self._exit_on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (an app under test in a thread): nothing to hang up

    def _exit_on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:  # the terminal is gone: what is still drawn goes nowhere
            devnull = os.open(os.devnull, os.O_WRONLY)
            for fd in (1, 2):
                os.dup2(devnull, fd)
            os.close(devnull)
        self.exit(return_code=128 + signum)

    def close_services(self) -> None:
        """Stop watching and cancel runs in flight (recorded as cancelled). Idempotent."""
        self.main_screen.cancel_cold_runs()
        self.watch.close()
        self._stop_serving()
        self.session.alerts.stop_delivery_thread()

    def _stop_serving(self) -> None:
        if self.served_here:
            from workbench.services.serving import ServingService

            try:
                ServingService(self.session).stop(containers=sorted(self.served_here))
            except WorkbenchError as exc:  # the app is leaving: say it on the terminal it leaves
                log.error("could not stop the servers started here (%s): %s", ", ".join(sorted(self.served_here)), exc)
            self.served_here.clear()
        for project in list(self.keepers):
            self.forget_serving(project)

    # -- servers started here -----------------------------------------------------------------

    def keep_serving(self, project: str, keeper) -> None:
        """From the Serving view's worker, once its servers answer."""
        self.keepers[project] = keeper

    def forget_serving(self, project: str) -> None:
        """The project's servers were stopped here: a retrain in progress is cancelled."""
        keeper = self.keepers.pop(project, None)
        if keeper is not None:
            keeper.close()

    def serving_message(self, project: str, text: str, severity: str = "information") -> None:
        """A keeper's line (a traffic batch checked, a server restarted), from its threads."""
        self.call_from_thread(self.notify, text, title=f"serving {project}", severity=severity, timeout=10)

    def _tick_keepers(self) -> None:
        if self.keepers and not self._keeping:
            self._keeping = True
            self._run_keepers()

    @work(thread=True, group="serving-keepers", exit_on_error=False)
    def _run_keepers(self) -> None:
        try:
            for project, keeper in list(self.keepers.items()):
                try:
                    said, alive = keeper.tick()
                except WorkbenchError as exc:
                    said, alive = [str(exc)], True
                for line in said:
                    self.serving_message(project, line, "warning")
                if not alive:  # stopped from elsewhere (`workbench serve stop`), or given up on
                    self.keepers.pop(project, None)
                    keeper.close()
        finally:
            self._keeping = False

    # -- app-scope actions and the command palette --------------------------------------------

    @property
    def keymap(self) -> dict[str, str]:
        return dict(self.config.keys)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.keymap))

    def action_switch_theme(self) -> None:
        self.search_themes()

    async def action_quit(self) -> None:
        busy = self.main_screen.busy_projects()
        if not busy:
            self.exit()
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(ConfirmScreen(
            "Quit while runs are in flight?",
            f"{', '.join(busy)}: the run in flight is cancelled and recorded as cancelled.", "Quit"), answer)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        main = self.main_screen
        for action in ACTIONS:
            key = self.keymap.get(action.id, action.key)
            help_text = f"{action.description} · key {key_display(key)} · id {action.id}"
            if action.scope == "app":
                callback = getattr(self, f"action_{action.id}")
            elif action.scope == "screen" and screen is main:
                callback = getattr(main, f"action_{action.id}")
            elif action.scope == getattr(screen, "ACTION_SCOPE", None):  # a view's own keys (compare, serving)
                callback = getattr(screen, f"action_{action.id}")
            else:
                continue
            yield SystemCommand(PALETTE_TITLES.get(action.id, action.label), help_text, callback)
        for command in super().get_system_commands(screen):
            if command.title not in ("Theme", "Quit", "Keys"):
                yield command

"""`S`: serve the selected project and watch it serve (workbench/ui/widgets/serving.py).

Opening the screen reads the project's servers. None running: it starts them on a worker thread
(ServingService.start builds the serving image and waits for /health; progress and errors come
as notifications), production plus staging when staging holds a version, on free ports of
127.0.0.1. The containers carry this process's owner labels, and the app stops them when it quits
(WorkbenchApp.close_services); a TUI killed outright leaves orphans the next workbench removes.
Servers already running (another `workbench serve`, or this app earlier) are shown as they are:
those of another process are status only, `x` does not stop them.

Each second a worker reads the servers again and scrapes their /metrics; the table and the
charts are redrawn from that read.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer

from workbench.core.errors import WorkbenchError
from workbench.core.ports import StatusLine
from workbench.ui.actions import bindings
from workbench.ui.screens.confirm import ConfirmScreen
from workbench.ui.widgets.serving import ServersLine, ServingChart, ServingReader, ServingTable, ServingView

REFRESH_S = 1.0


class ServingScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ServingScreen { align: center middle; }
    ServingScreen > Vertical { width: 100%; height: 1fr; border: round $primary; background: $surface; }
    ServingScreen ServersLine { height: auto; padding: 0 1; }
    ServingScreen ServingTable { height: auto; max-height: 10; }
    ServingScreen #serving-charts { height: 1fr; min-height: 10; }
    """
    ACTION_SCOPE = "serving"
    BINDINGS = bindings(ACTION_SCOPE) + [Binding("escape,q", "close", "Back", id="serving_close")]

    class Read(Message):
        def __init__(self, view: ServingView) -> None:
            super().__init__()
            self.view = view

    class Problem(Message):
        def __init__(self, error: str, fatal: bool) -> None:
            super().__init__()
            self.error, self.fatal = error, fatal

    class Progress(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, session, project: str, service=None) -> None:
        super().__init__()
        self.session, self.project = session, project
        self._service = service
        self.reader: ServingReader | None = None
        self.view: ServingView | None = None
        self.starting = True
        """While the servers are read first or started: the once-a-second reads wait."""
        self._reading = False

    @property
    def owned(self) -> set[str]:
        """The server containers this app started (it stops them when it quits)."""
        return self.app.served_here

    def service(self):
        if self._service is None:
            from workbench.services.serving import ServingService

            self._service = ServingService(self.session)
        return self._service

    def compose(self) -> ComposeResult:
        with Vertical(id="serving-frame") as frame:
            frame.border_title = f"Serving · {self.project}"
            frame.border_subtitle = "x stop serving · Esc back"
            yield ServersLine(id="serving-servers")
            yield ServingTable(id="serving-table")
            with Horizontal(id="serving-charts"):
                yield ServingChart("req/s", id="serving-rate")
                yield ServingChart("p99 ms", id="serving-p99")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(ServersLine).show(None, "reading the servers…")
        for chart in self.query(ServingChart):  # axes at once, not an empty box until the servers answer
            chart.draw(ServingView(self.project, ()))
        self.open()
        self.set_interval(REFRESH_S, self._tick)

    # -- workers ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="serving-open", exit_on_error=False)
    def open(self) -> None:
        """Show the running servers, or start them."""
        try:
            service = self.service()
            self.reader = ServingReader(service, self.project, self.owned)
            view = self.reader.read()
            if any(a.problem not in ("exited", "dead") for a in view.aliases):
                self.post_message(self.Read(view))
                return
            registry = self.session.registry
            if registry.deployed(self.project, "production") is None:
                raise WorkbenchError(f"cannot serve {self.project}: no version is in production yet (promote one "
                                     f"in the Models tab, p, or `workbench promote {self.project} VERSION --to "
                                     "production`)")
            aliases = ("production",) + (("staging",) if registry.deployed(self.project, "staging") else ())
            self.post_message(self.Progress(f"starting {' and '.join(aliases)} servers of {self.project} "
                                            "(builds the serving image the first time)…"))
            started = service.start(self.project, aliases, "127.0.0.1", 0, self._on_log)
            self.owned.update(s.container for s in started)
            from workbench.services.serving_keeper import ServingKeeper

            project = self.project
            self.app.keep_serving(project, ServingKeeper(service, project, [s.container for s in started], aliases,
                                                         lambda text: self.app.serving_message(project, text)))
            self.post_message(self.Progress("; ".join(f"{s.alias} version {s.version} at {s.url}" for s in started)))
            self.post_message(self.Read(self.reader.read()))
        except WorkbenchError as exc:
            self.post_message(self.Problem(str(exc), fatal=True))
        except Exception as exc:  # a bug must say so, not leave "starting…" up forever
            self.post_message(self.Problem(f"internal error starting the servers: {exc!r}", fatal=True))
            raise
        finally:
            self.starting = False

    def _on_log(self, line) -> None:
        if isinstance(line, StatusLine):  # image builds: what is waited for
            self.post_message(self.Progress(str(line)))

    def _tick(self) -> None:
        if self.reader is not None and not self.starting and not self._reading:
            self._reading = True
            self.read()

    @work(thread=True, exclusive=True, group="serving-read", exit_on_error=False)
    def read(self) -> None:
        try:
            self.post_message(self.Read(self.reader.read()))
        except WorkbenchError as exc:
            self.post_message(self.Problem(str(exc), fatal=False))
        except Exception as exc:
            self.post_message(self.Problem(f"internal error reading the servers: {exc!r}", fatal=False))
            raise
        finally:
            self._reading = False

    # -- messages -----------------------------------------------------------------------------

    def on_serving_screen_read(self, message: Read) -> None:
        self.view = message.view
        self.query_one(ServersLine).show(message.view)
        self.query_one(ServingTable).show(message.view)
        for chart in self.query(ServingChart):
            chart.draw(message.view)

    def on_serving_screen_progress(self, message: Progress) -> None:
        self.notify(message.text, title=f"serve {self.project}", timeout=8)
        if self.view is None:
            self.query_one(ServersLine).show(None, message.text)

    def on_serving_screen_problem(self, message: Problem) -> None:
        self.notify(message.error, title=f"serve {self.project}", severity="error", timeout=12)
        if message.fatal and self.view is None:
            self.dismiss(None)

    # -- keys ---------------------------------------------------------------------------------

    def action_close(self) -> None:
        self.dismiss(None)

    def action_serving_stop(self) -> None:
        view = self.view
        mine = [a.container for a in view.aliases if a.owned] if view else []
        if not mine:
            others = view is not None and any(not a.owned for a in view.aliases)
            self.notify(f"{self.project} is served by another `workbench serve`: stop it there, or with "
                        f"`workbench serve stop {self.project}`" if others else f"{self.project} is not served here",
                        severity="warning")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._stop(mine)

        self.app.push_screen(ConfirmScreen(f"Stop serving {self.project}?",
                                           f"Removes {', '.join(mine)}: their clients get no answer.", "Stop"), answer)

    @work(thread=True, group="serving-stop", exit_on_error=False)
    def _stop(self, containers: list[str]) -> None:
        try:
            stopped = self.service().stop(self.project, containers)
            self.owned.difference_update(stopped)
            self.app.forget_serving(self.project)
            self.post_message(self.Progress(f"stopped {len(stopped)} server(s)"))
            self.post_message(self.Read(self.reader.read()))
        except WorkbenchError as exc:
            self.post_message(self.Problem(str(exc), fatal=False))

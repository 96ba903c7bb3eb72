"""`D`: the selected project's drift checks (workbench/ui/widgets/drift.py), read on a worker
thread and read again when a batch is checked or a retrain finishes (the main screen calls
`reload` on those events) and, while a retrain is queued or running, every few seconds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer

from workbench.core.errors import WorkbenchError
from workbench.ui.widgets.drift import DriftPane, DriftView

REFRESH_S = 3.0
"""How often the screen rereads while a retrain of the project is queued or running."""
RECENT = timedelta(minutes=30)
"""A retrain decided longer ago than this that never started is not waited for."""


def read_drift(session, project: str, limit: int = 30) -> DriftView:
    """A project's drift checks, for the pane (on a worker thread)."""
    from workbench.services.drift import DriftService  # scipy and DuckDB: only when asked

    service = DriftService(session)
    ref = session.project(project)
    try:
        reference = service.reference(ref).description
    except WorkbenchError as exc:
        reference = f"none: {exc}"
    drift = ref.manifest.drift
    retrain = drift.retrain
    folder = ref.manifest.data.incoming
    causes = (["drift"] if retrain.on_drift else []) + \
        ([f"decay > {retrain.max_decay:g}"] if retrain.max_decay is not None else [])
    weighted = (f"by a severe shift of a feature holding >= {drift.important_feature:.0%} of the model's importance, "
                f"by drifted columns holding >= {drift.drift_importance:.0%} of it, or "
                if drift.verdict == "weighted" else "")
    policy = (f"batches from {folder or '— (no [data] incoming)'} · drifted {weighted}at {drift.drift_share:.0%} of "
              f"columns or {drift.drift_columns}, whichever is fewer · "
              + (f"retrain on {' or '.join(causes)}, cooldown {retrain.cooldown_minutes:g} min, "
                 f"at most {retrain.max_per_day}/day, {retrain.policy}" if causes else "no automatic retrain")
              + (" · new versions go to staging" if ref.manifest.promotion.auto_staging else ""))
    return DriftView(ref.name, reference, policy, service.batches(ref.name, limit=limit, with_reports=True),
                     service.pending(ref.name))


class DriftScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    DriftScreen { align: center middle; }
    DriftScreen > Vertical { width: 100%; height: 1fr; border: round $primary; background: $surface; }
    """
    BINDINGS = [Binding("escape,q,D", "close", "Close", id="drift_close")]

    class Loaded(Message):
        def __init__(self, view: DriftView) -> None:
            super().__init__()
            self.view = view

    class Failed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, session, project: str) -> None:
        super().__init__()
        self.session, self.project = session, project

    def compose(self) -> ComposeResult:
        with Vertical(id="drift-frame") as frame:
            frame.border_title = f"Drift · {self.project}"
            frame.border_subtitle = "↑↓ batch · Esc closes"
            yield DriftPane(id="drift-pane")
        yield Footer(compact=True, show_command_palette=False)

    @property
    def pane(self) -> DriftPane:
        return self.query_one(DriftPane)

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(REFRESH_S, self._refresh_while_retraining)

    @work(thread=True, exclusive=True, group="drift-read", exit_on_error=False)
    def reload(self) -> None:
        try:
            self.post_message(self.Loaded(read_drift(self.session, self.project)))
        except WorkbenchError as exc:
            self.post_message(self.Failed(str(exc)))
        except Exception as exc:  # a bug must say so, not leave "reading drift checks…" up forever
            self.post_message(self.Failed(f"internal error reading the drift checks: {exc!r}"))
            raise

    def on_drift_screen_loaded(self, message: Loaded) -> None:
        self.pane.show(message.view)

    def on_drift_screen_failed(self, message: Failed) -> None:
        self.pane.error(message.error)

    def _refresh_while_retraining(self) -> None:
        view = self.pane.view
        recent = datetime.now(timezone.utc) - RECENT
        if view is not None and any(b.retrain and (b.retrain_run_id is None or b.retrain_status == "running")
                                    and b.checked_at is not None and b.checked_at > recent for b in view.batches):
            self.reload()

    def action_close(self) -> None:
        self.dismiss(None)

"""The model-registry side of the main screen: the Models tab and the projects pane's aliases,
the MLflow mirror's state, and the promotion keys (`promote_staging`, `promote_production`,
`rollback`, `rollback_staging`).

A promotion is a dry run on a worker first; its answer opens PromoteScreen, which shows every
rule and gate and asks (with an optional reason for the audit trail); only a yes applies it,
on another worker, against the alias holder the confirmation showed (refused if it moved).
A dry run that finds the alias held by another version than the Models tab showed opens no
confirmation: the tab is read again and the user looks again, so a key never acts on a state
the screen did not show.
"""

from __future__ import annotations

from textual.widgets import TabbedContent

from workbench.ui.screens import loaders
from workbench.ui.screens.promote import PromoteScreen
from workbench.ui.widgets.models import ModelsView


class ModelActions:
    """Mixed into MainScreen, which holds `session`, `project`, `mirror` and the panes
    (`projects`, `detail`), and provides `_in_thread`, `_runnable` and `_status`."""

    # -- reading ------------------------------------------------------------------------------

    def _load_aliases(self, project: str) -> None:
        self._in_thread("aliases", project, loaders.read_aliases, self.session, project)

    def _load_models(self, project: str) -> None:
        if self.project is not None and project == self.project.name:
            self._in_thread("models", project, loaders.read_models, self.session, project)

    def _read_mirror(self) -> None:
        self._in_thread("mirror", None, loaders.read_mirror, self.session)

    def _done_aliases(self, aliases: dict, project) -> None:
        self.projects.update_row(project, production=aliases.get("production"), staging=aliases.get("staging"))

    def _done_models(self, payload, project) -> None:
        versions, pointers = payload
        holders = {alias: v.version for v in versions for alias in v.aliases}
        self._done_aliases(holders, project)  # the versions say who holds what, too
        if self.project and project == self.project.name:
            self.query_one(ModelsView).show(project, versions, self.project.primary_metric, pointers)

    def _done_mirror(self, summary: str, _key) -> None:
        self.mirror = summary
        self.query_one(ModelsView).show_mirror(summary)
        self._status()

    # -- promotion (ids in workbench/ui/actions.py) -------------------------------------------

    def action_promote_staging(self) -> None:
        self._preview("staging")

    def action_promote_production(self) -> None:
        self._preview("production")

    def action_rollback(self) -> None:
        self._preview("production", rollback=True)

    def action_rollback_staging(self) -> None:
        self._preview("staging", rollback=True)

    def _preview(self, alias: str, rollback: bool = False) -> None:
        """Dry-run the promotion (or rollback) on a worker; the answer opens PromoteScreen
        (unless the alias's holder is not the one the Models tab shows)."""
        row = self._runnable()
        if row is None:
            return
        tabs = self.detail.query_one(TabbedContent)
        models = self.query_one(ModelsView)
        version = None
        if not rollback:
            if tabs.active != "models" or models.project != row.name or models.current is None:
                tabs.active = "models"
                models.table.focus()
                self.notify("pick a model version in Models (↑ ↓), then press the key again"
                            if models.versions else f"{row.name}: no model versions yet", severity="warning")
                return
            version = models.current.version
        # What the screen shows holding the alias, when it shows this project's versions.
        self._holder_shown = ((row.name, alias, _holder(models.versions, alias))
                              if models.project == row.name else None)
        self._in_thread("preview", row.name, loaders.preview_promotion, self.session, row.name, version, alias)

    def _done_preview(self, preview, project) -> None:
        shown, self._holder_shown = getattr(self, "_holder_shown", None), None
        if shown is not None and shown[:2] == (project, preview.alias) and shown[2] != preview.from_version:
            self.notify(f"{preview.alias} is held by {_name(preview.from_version)} now, not {_name(shown[2])} as "
                        "the screen showed: the list is read again; look, then press the key again",
                        title=project, severity="warning", timeout=10)
            self._load_models(project)
            self._load_aliases(project)
            return
        self._confirm(preview, project)

    def _confirm(self, preview, project) -> None:
        def answer(reason: str | None) -> None:
            if reason is not None:
                self._in_thread("promotion", project, loaders.apply_promotion, self.session, project, preview,
                                reason)

        self.app.push_screen(PromoteScreen(preview), answer)

    def _done_promotion(self, decision, project) -> None:
        if decision.allowed and not decision.applied:
            # A refusal the user chose to record would now go through: nothing was written;
            # show the new decision, so nobody promotes what they did not see.
            self.notify("not recorded: it would go through now, so here it is again", title=project,
                        severity="warning", timeout=8)
            self._confirm(decision, project)
            return
        if decision.applied:
            self.notify(decision.message, title=project, timeout=8)
        else:
            self.notify(f"refused (recorded): {decision.message}", title=project, severity="error", timeout=12)
        self._load_models(project)
        self._read_mirror()


def _holder(versions, alias: str) -> int | None:
    return next((v.version for v in versions if alias in v.aliases), None)


def _name(version: int | None) -> str:
    return f"version {version}" if version is not None else "nobody"

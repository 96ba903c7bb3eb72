"""The main screen's keys for the run detail's tabs (`tab_<id>`, keys 1-9) and the project's
audit history (`history`, H). Ids and default keys are in workbench/ui/actions.py."""

from __future__ import annotations

from workbench.ui.actions import DETAIL_TABS
from workbench.ui.screens.history import HistoryScreen


class DetailKeys:
    """Mixed into MainScreen, which holds `project` and `detail` (the RunDetail)."""

    def _open_tab(self, tab: str) -> None:
        self.detail.show_tab(tab)

    def action_history(self) -> None:
        if self.project is None:
            self.notify("no project selected", severity="warning")
            return
        self.app.push_screen(HistoryScreen(self.session, self.project.name))


def _tab_action(tab: str):
    def action(self) -> None:
        self._open_tab(tab)
    action.__name__ = f"action_tab_{tab}"
    action.__doc__ = f"Open the run detail's {tab} tab."
    return action


for _tab, _what in DETAIL_TABS:  # one action per tab, so each has an id a user can remap
    setattr(DetailKeys, f"action_tab_{_tab}", _tab_action(_tab))

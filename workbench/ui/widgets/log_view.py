"""A run's log: a bounded buffer that follows the tail unless the reader scrolled up.

Lines arrive in batches (see messages.EventBridge), each batch one `write_lines`, so a stage
printing 10,000 lines a second costs a few redraws a second, not 10,000.
"""

from __future__ import annotations

from textual.widgets import Log

MAX_LINES = 10_000
STAGE_WIDTH = 9


def format_line(stage: str, line: str) -> str:
    return f"{(stage or 'image')[:STAGE_WIDTH]:>{STAGE_WIDTH}} │ {line}"


class LogView(Log):
    DEFAULT_CSS = """
    LogView { background: $surface; color: $foreground; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=MAX_LINES, auto_scroll=True, highlight=False, id=id)
        self.run_id: int | None = None

    def show(self, run_id: int | None, lines: list[tuple[str, str]], note: str = "") -> None:
        """Replace the content with a run's lines (the stored tails, or what is buffered)."""
        self.run_id = run_id
        self.clear()
        if note:
            self.write_line(note)
        self.append(lines)

    def append(self, lines: list[tuple[str, str]]) -> None:
        if lines:
            self.write_lines([format_line(stage, line) for stage, line in lines])

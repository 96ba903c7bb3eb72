"""One updating line on stderr while something long runs (`workbench drift`'s columns): shown
only on a terminal and only once the work has taken longer than DELAY_S, redrawn at most every
REDRAW_S, and erased when the work ends, so a quick command prints nothing extra and a piped or
redirected stderr never sees a carriage return."""

from __future__ import annotations

import sys
import time
from typing import TextIO

DELAY_S = 0.5
"""Work quicker than this shows no progress at all."""
REDRAW_S = 0.1


class ProgressLine:
    def __init__(self, label: str, stream: TextIO | None = None):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.shown = False
        self._drawn_at = 0.0
        try:
            self.enabled = bool(self.stream.isatty())
        except (AttributeError, ValueError):  # a closed or replaced stream
            self.enabled = False

    def __call__(self, done: int, total: int, phase: str) -> None:
        """on_progress(done, total, phase): columns done of total, in a phase ("checking batch")."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started < DELAY_S or (now - self._drawn_at < REDRAW_S and done < total):
            return
        self._drawn_at = now
        if done >= total:  # the phase is over: what follows (a scoring command's log) starts on a clean line
            self.close()
            return
        self.shown = True
        # The TUI's words (BatchProgress.line): the batch's own phase goes without saying.
        said = "" if phase == "checking batch" else f" ({phase})"
        self.stream.write(f"\r\x1b[K{self.label}: {done}/{total} columns{said}")
        self.stream.flush()

    def close(self) -> None:
        """Erase the line (before the command prints its result)."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def __enter__(self) -> "ProgressLine":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

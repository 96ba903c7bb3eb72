"""SIGINT, SIGTERM, SIGHUP and a closed output pipe end a command the way Ctrl-C does.

Python's default for SIGTERM and SIGHUP is to die on the spot: the run stays "running" in the
lineage and its containers stay up until some later command cleans up. Here each of them takes
the cancellation path instead:

- while a run is in flight (`cancels_run`), the signal only cancels the run's CancelToken: the
  runner stops the stage's container or process, and the pipeline records the run as cancelled
  on its own thread, in its own time. Nothing is written to DuckDB from the signal handler,
  and no exception lands in the middle of a transaction. A second signal does not wait.
- otherwise it raises `Interrupted` (a KeyboardInterrupt) in the main thread, as Ctrl-C does.

The command then exits with 128 + the signal's number: 130 SIGINT, 143 SIGTERM, 129 SIGHUP.
A closed pipe (`workbench run … | head -1`) is treated as SIGPIPE would be by other CLIs: the
run is cancelled, the rest of the output is dropped without a traceback, and the exit code is
141 (128 + SIGPIPE), so `set -o pipefail` sees that the command did not finish.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from workbench.core.ports import CancelToken

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A command stopped by a signal (or by its reader going away)."""

    def __init__(self, signum: int):
        super().__init__(describe(signum))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def describe(signum: int) -> str:
    if signum == signal.SIGPIPE:
        return "interrupted: the output was closed"
    if signum == signal.SIGHUP:
        return "interrupted: the terminal hung up (SIGHUP)"
    return f"interrupted ({signal.Signals(signum).name})"


class InterruptGuard:
    """Installed once per command by `workbench.cli.main`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        """The first signal received (SIGPIPE for a closed output), or None."""
        self._token: CancelToken | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        self.signum, self._token = None, None  # main() may be called again in one process (tests)
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (tests call main() elsewhere)
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum

    @contextmanager
    def cancels_run(self) -> Iterator[CancelToken]:
        """A token for the run about to start: a signal while it is in flight cancels it."""
        token = CancelToken()
        if self.signum is not None:
            token.cancel(describe(self.signum))
        self._token = token
        try:
            yield token
        finally:
            self._token = None

    def _on_signal(self, signum: int, _frame) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if signum == signal.SIGHUP:
            silence_output(1, 2)  # the terminal is gone: writing to it would fail with EIO
        token = self._token
        if token is not None and first:
            token.cancel(describe(signum))
            return
        raise Interrupted(self.signum)

    def output_closed(self) -> None:
        """The reader of stdout went away. Called by the printer, on whatever thread printed."""
        silence_output(1)
        if self.signum is None:
            self.signum = signal.SIGPIPE
        token = self._token
        if token is not None:
            if not token.cancelled:
                token.cancel(describe(signal.SIGPIPE))
            return
        if threading.current_thread() is threading.main_thread():
            raise Interrupted(self.signum)
        # A printing thread (watch events): stop the command in the main thread, as a signal would.
        _thread.interrupt_main(signal.SIGINT)


def silence_output(*fds: int) -> None:
    """Send whatever is still printed to these file descriptors to /dev/null (their reader or
    terminal is gone); what Python still buffers for them goes there too, at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in fds:
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass
    os.close(devnull)


guard = InterruptGuard()

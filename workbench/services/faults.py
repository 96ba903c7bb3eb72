"""Injected faults, for the tests that kill a real `workbench` process at a chosen point.

Nothing happens unless the environment asks:

    WORKBENCH_CRASH_AT=after_commit         the process exits at once (os._exit: no cleanup,
                                            no finally blocks, no flushed buffers), as a kill -9
                                            or a power cut would leave things
    WORKBENCH_WAIT_AT=before_apply:/tmp/go  at that point, touch /tmp/go.<pid>.ready and wait
                                            (up to 60 s) until /tmp/go exists: lets a test line
                                            up two processes at the same point

Points in a promotion or rollback, in order: before_apply (the CLI showed the decision),
before_commit, after_commit, before_anchor, before_switch, after_switch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CRASH_EXIT = 86


def fault_point(name: str) -> None:
    crash = os.environ.get("WORKBENCH_CRASH_AT")
    if crash and name in crash.split(","):
        os._exit(CRASH_EXIT)
    wait = os.environ.get("WORKBENCH_WAIT_AT")
    if wait:
        point, _, path = wait.partition(":")
        if point == name and path:
            Path(f"{path}.{os.getpid()}.ready").touch()
            deadline = time.monotonic() + 60
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.01)

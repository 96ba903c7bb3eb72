"""Image pulls that failed a moment ago, remembered across commands.

Offline (an air-gapped team, a laptop on a plane), every `docker pull` waits for a DNS or
connection timeout before it fails. Asking again on every command costs seconds each time
and prints the same failure; so a failed pull is remembered, with when and why, for a while
(RETRY_AFTER_S), in the user's cache folder: whether a registry answers is a property of the
machine and its network, not of one workspace. The memory is only an optimisation: a file
that cannot be read or written is the same as an empty one.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

RETRY_AFTER_S = 600.0
CACHE_DIR_VARIABLE = "WORKBENCH_CACHE_DIR"


def cache_dir() -> Path:
    """$WORKBENCH_CACHE_DIR, else $XDG_CACHE_HOME/workbench, else ~/.cache/workbench."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "workbench"


class PullFailures:
    def __init__(self, path: Path | None = None, retry_after_s: float = RETRY_AFTER_S):
        self.path = path or cache_dir() / "pull-failures.json"
        self.retry_after_s = retry_after_s

    def recent(self, image: str) -> tuple[float, str] | None:
        """(seconds since the failure, why) when pulling `image` failed less than
        `retry_after_s` ago; else None."""
        entry = self._read().get(image)
        if not isinstance(entry, dict):
            return None
        try:
            age = time.time() - float(entry["at"])
        except (KeyError, TypeError, ValueError):
            return None
        if not 0 <= age < self.retry_after_s:
            return None
        return age, str(entry.get("reason", ""))

    def all_recent(self) -> dict[str, tuple[float, str]]:
        """Every image whose pull failed less than `retry_after_s` ago: (seconds since, why)."""
        found = {image: self.recent(image) for image in self._read()}
        return {image: failure for image, failure in found.items() if failure is not None}

    def remember(self, image: str, reason: str) -> None:
        entries = self._read()
        entries[image] = {"at": time.time(), "reason": reason}
        self._write(entries)

    def forget(self, image: str) -> None:
        entries = self._read()
        if entries.pop(image, None) is not None:
            self._write(entries)

    def _read(self) -> dict:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}

    def _write(self, entries: dict) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".pull-failures-")
            with os.fdopen(fd, "w") as fh:
                json.dump(entries, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass  # not remembered: the next command asks the registry once more

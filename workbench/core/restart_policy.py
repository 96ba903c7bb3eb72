"""When a crashed server is started again: at once the first time, then after a growing
pause, and not at all once it keeps crashing (a model that runs out of memory on load, a
predict file that fails at import, would otherwise be restarted every second forever and
flood the log). Pure: the caller passes the time and does the restarting.

A crash counts against its server for `window_s` seconds; a server that stayed up that long
is forgiven its earlier crashes. Like Kubernetes' CrashLoopBackOff and systemd's
StartLimitBurst, but small enough to say in one sentence to the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RestartPolicy:
    max_crashes: int = 5
    """Crashes within `window_s` after which the server is given up on."""
    window_s: float = 300.0
    first_delay_s: float = 0.0
    max_delay_s: float = 30.0
    _crashes: dict[str, list[float]] = field(default_factory=dict)

    def crashed(self, server: str, now: float) -> float | None:
        """Record a crash of `server`: the seconds to wait before starting it again, or None
        when it has crashed `max_crashes` times within the window (give up)."""
        recent = [t for t in self._crashes.get(server, []) if now - t < self.window_s] + [now]
        self._crashes[server] = recent
        if len(recent) >= self.max_crashes:
            return None
        if len(recent) == 1:
            return self.first_delay_s
        return min(self.max_delay_s, 2.0 ** (len(recent) - 2))

    def crashes(self, server: str, now: float) -> int:
        return len([t for t in self._crashes.get(server, []) if now - t < self.window_s])

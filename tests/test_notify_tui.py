"""The TUI shows alerts its receivers have not taken: a count in the status line, and a
notification naming the first few with the last error; both go once the receiver is back and
the TUI's delivery thread has sent them."""

from __future__ import annotations

import pytest

from tests.notify_receiver import Receiver
from tests.test_notify import workspace_with
from tests.test_tui import asyncio_test, make_app, opened, private_config, shown, wait_for  # noqa: F401
from workbench.services.session import WorkbenchSession


@pytest.mark.slow
@asyncio_test
async def test_the_status_line_counts_undelivered_alerts_until_they_go_out(tmp_path):
    receiver = Receiver()  # down
    root = workspace_with(tmp_path / "ws", f'url = "{receiver.url}"')
    other = WorkbenchSession(root, runner="local")  # another process queued these
    assert other.alerts.emit("promoted", "tiny", "tiny version 3 promoted to production")
    assert other.alerts.emit("run_failed", "tiny", "run 9 of tiny failed")
    app = make_app(root)
    try:
        async with app.run_test(size=(140, 36)) as pilot:
            main = await opened(pilot)
            await shown(pilot, "alerts: 2 undelivered", timeout=20)
            note = await wait_for(pilot, lambda: next((n for n in app.notes if "undelivered" in n[2]), None),
                                  what="the undelivered alerts' notification")
            assert note[0] == "warning" and note[2] == "2 alert(s) undelivered"
            assert "promoted · tiny → " + receiver.url in note[1] and "connection refused" in note[1]
            receiver.start()
            await wait_for(pilot, lambda: len(receiver.bodies()) == 2, timeout=20, what="the alerts delivered")
            await wait_for(pilot, lambda: main.alerts_pending == 0, timeout=20, what="the count to clear")
            assert "undelivered" not in (await shown(pilot, "workbench"))
    finally:
        receiver.stop()
    assert [b["kind"] for b in receiver.bodies()] == ["promoted", "run_failed"]

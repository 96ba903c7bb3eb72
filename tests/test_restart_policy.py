"""The crashed-server restart policy (workbench.core.restart_policy), pure."""

from workbench.core.restart_policy import RestartPolicy


def test_a_crash_restarts_at_once_then_after_growing_pauses_then_gives_up():
    policy = RestartPolicy(max_crashes=5, window_s=300, max_delay_s=30)
    delays = [policy.crashed("a", now) for now in (0, 10, 20, 30, 40)]
    assert delays == [0.0, 1.0, 2.0, 4.0, None]


def test_crashes_older_than_the_window_are_forgiven_and_servers_are_counted_apart():
    policy = RestartPolicy(max_crashes=3, window_s=80)
    assert policy.crashed("a", 0) == 0.0 and policy.crashed("a", 30) == 1.0
    assert policy.crashed("b", 31) == 0.0  # another server starts its own count
    assert policy.crashed("a", 100) == 1.0  # the crash at 0 left the window: 2 within it, not 3
    assert policy.crashes("a", 100) == 2 and policy.crashes("b", 100) == 1


def test_the_pause_never_exceeds_its_cap():
    policy = RestartPolicy(max_crashes=100, window_s=1e9, max_delay_s=30)
    assert max(policy.crashed("a", float(t)) for t in range(20)) == 30.0

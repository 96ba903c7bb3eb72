"""The pure scheduler of parallel stages (workbench/core/stage_schedule.py)."""

import pytest

from workbench.core.stage_schedule import Blocked, StageSchedule, default_jobs

DIAMOND = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}
ORDER = ["a", "b", "c", "d"]


def drive(schedule: StageSchedule, outcomes: dict[str, bool]) -> tuple[list[list[str]], list[Blocked]]:
    """Run the schedule to its end, finishing all running stages of a wave at once (in reverse
    order, to show order of finishing does not matter): the waves that started, and what was blocked."""
    waves, blocked = [], []
    while not schedule.done:
        wave = schedule.start()
        assert wave or schedule.running, "nothing runs and nothing starts: a deadlock"
        if wave:
            waves.append(wave)
        for name in sorted(schedule.running, reverse=True):
            blocked += schedule.finished(name, outcomes.get(name, True))
    return waves, blocked


@pytest.mark.parametrize("jobs,expected", [
    (1, [["a"], ["b"], ["c"], ["d"]]),
    (2, [["a"], ["b", "c"], ["d"]]),
    (8, [["a"], ["b", "c"], ["d"]]),
])
def test_independent_stages_start_together_within_jobs(jobs, expected):
    waves, blocked = drive(StageSchedule(ORDER, DIAMOND, jobs), {})
    assert waves == expected and blocked == []


def test_a_stage_waits_for_every_upstream_stage():
    schedule = StageSchedule(ORDER, DIAMOND, jobs=4)
    assert schedule.start() == ["a"]
    assert schedule.finished("a", True) == []
    assert schedule.start() == ["b", "c"]
    schedule.finished("c", True)
    assert schedule.start() == []  # d still waits for b
    schedule.finished("b", True)
    assert schedule.start() == ["d"]


def test_a_failure_blocks_its_dependents_and_lets_the_other_branch_finish():
    deps = {"a": (), "b": (), "b2": ("b",), "c": (), "d": ("b2", "c")}
    schedule = StageSchedule(list(deps), deps, jobs=3)
    assert schedule.start() == ["a", "b", "c"]
    assert schedule.finished("b", False) == [Blocked("b2", "b"), Blocked("d", "b2")]
    assert schedule.start() == []
    schedule.finished("a", True)
    schedule.finished("c", True)
    assert schedule.start() == [] and schedule.done
    assert schedule.not_started() == []


def test_fail_fast_starts_nothing_more_and_names_what_was_left():
    deps = {"a": (), "b": (), "c": ("a",), "d": ()}
    schedule = StageSchedule(list(deps), deps, jobs=2, fail_fast=True)
    assert schedule.start() == ["a", "b"]
    assert schedule.finished("b", False) == []
    assert schedule.start() == []
    assert not schedule.done  # a is still running: the caller cancels it
    schedule.finished("a", False)
    assert schedule.done
    assert schedule.not_started() == ["c", "d"]


def test_cpu_budget_counts_each_stages_cpus():
    deps = {"wide": (), "narrow1": (), "narrow2": ()}
    cpus = {"wide": 3.0, "narrow1": 1.0, "narrow2": 1.0}
    schedule = StageSchedule(list(deps), deps, jobs=3, cpus=cpus, cpu_budget=4.0)
    assert schedule.start() == ["wide", "narrow1"]  # 3 + 1 = 4; narrow2 would make 5
    schedule.finished("narrow1", True)
    assert schedule.start() == ["narrow2"]


def test_a_stage_wider_than_the_whole_budget_runs_alone_rather_than_never():
    deps = {"small": (), "huge": ()}
    schedule = StageSchedule(list(deps), deps, jobs=2, cpus={"huge": 16.0}, cpu_budget=4.0)
    assert schedule.start() == ["small"]  # huge waits: it does not fit beside small
    schedule.finished("small", True)
    assert schedule.start() == ["huge"]


def test_a_wide_stage_is_not_starved_by_narrow_ones_behind_it():
    deps = {"n1": (), "wide": (), "n2": ()}
    schedule = StageSchedule(list(deps), deps, jobs=3, cpus={"wide": 2.0}, cpu_budget=2.0)
    assert schedule.start() == ["n1"]  # wide does not fit; n2 must not jump past it
    schedule.finished("n1", True)
    assert schedule.start() == ["wide"]


def test_upstream_stages_outside_the_selection_are_not_waited_for():
    schedule = StageSchedule(["train"], {"validate": (), "train": ("validate",)}, jobs=1)
    assert schedule.start() == ["train"]


def test_finishing_a_stage_that_is_not_running_is_a_bug_said_at_once():
    schedule = StageSchedule(ORDER, DIAMOND, jobs=1)
    with pytest.raises(ValueError, match="'b' is not running"):
        schedule.finished("b", True)


def test_jobs_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        StageSchedule(ORDER, DIAMOND, jobs=0)


@pytest.mark.parametrize("stage_cpus,cpu_count,expected", [
    ([1.0, 1.0], 8, 8),
    ([2.0, 1.0], 8, 4),
    ([0.5], 2, 2),  # a fraction of a CPU still takes one job's worth: no more than the CPUs
    ([4.0], 2, 1),
    ([], 1, 1),
])
def test_default_jobs_from_cpu_count_and_stage_cpus(stage_cpus, cpu_count, expected):
    assert default_jobs(stage_cpus, cpu_count) == expected

"""A sweep on the example project in real containers (its warm worker): validate runs once for
the whole sweep, every trial's train and evaluate run with the trial's values, the gates are
checked, and only the best trial's model is registered; with --jobs 2, trials 1 and 2 run at
once, each in its own fork of the project's warm-worker pool."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from workbench.core.model import StageStatus
from workbench.services.session import WorkbenchSession
from workbench.services.sweep import SweepService
from workbench.services.sweep_plan import SweepRequest

pytestmark = [pytest.mark.docker, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parent.parent / "projects" / "telco-churn"


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_sweep_of_the_example_reuses_validate_and_registers_the_best(tmp_path, docker_engine, docker_base_image,
                                                                        monkeypatch, jobs):
    monkeypatch.setenv("WORKBENCH_BASE_IMAGE", docker_base_image)
    shutil.copytree(EXAMPLE, tmp_path / "telco-churn", ignore=shutil.ignore_patterns(".workbench"))
    params_before = (tmp_path / "telco-churn" / "params.toml").read_bytes()
    session = WorkbenchSession(tmp_path, runner="docker")
    try:
        service = SweepService(session)
        plan = service.plan(SweepRequest("telco-churn", ("train.learning_rate=0.01..0.3:log",
                                                         "train.num_leaves=15,31,63"),
                                         trials=3, sampler="random", seed=5, name="example"))
        report = service.start(plan, jobs=jobs)
    finally:
        session.runner.close()

    assert [t.state for t in report.trials] == ["complete"] * 3
    records = [session.get_run(t.run_id) for t in report.trials]
    assert {r.runner for r in records} == {"docker"}
    stages = [{s.stage: s for s in r.stages} for r in records]
    assert [s["validate"].status for s in stages] == [StageStatus.SUCCEEDED, StageStatus.REUSED, StageStatus.REUSED]
    assert all(s["train"].status is StageStatus.SUCCEEDED for s in stages)
    for trial, s in zip(report.trials, stages):
        train = json.loads(s["train"].param_values["params.toml:train"])
        assert (train["learning_rate"], train["num_leaves"]) == (trial.params["train.learning_rate"],
                                                                 trial.params["train.num_leaves"])
        assert train["num_boost_round"] == 200  # the keys a trial does not sweep are the project's
    assert all(r.gates for r in records)
    assert (tmp_path / "telco-churn" / "params.toml").read_bytes() == params_before
    best = report.best
    assert best is not None and best.value == max(t.value for t in report.trials if t.run_status == "succeeded")
    assert [v.run_id for v in session.registry.models("telco-churn")] == [best.run_id]
    if jobs == 2:  # trial 0 alone (its validate is reused by the others), then 1 and 2 at once
        (_, start_a, end_a), (_, start_b, end_b) = sorted((r.id, r.started_at, r.finished_at) for r in records[1:])
        assert start_b < end_a and start_a < end_b

"""Issue 15: two `workbench` processes on one workspace at the same time -- a sweep running two
trials at once in one, `workbench run` of the same project (twice, one after the other) in the
other, both on the local runner -- share the lineage, the object store, the hash cache and the
sweep journal: no lock error in either, every run recorded once with a final status, and only the
sweep's runs carry its tags."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest

from tests.test_signals import REPO, Lines, cli_env, runs_json
from tests.test_sweep import write_project
from workbench.services.session import WorkbenchSession


@pytest.mark.slow
def test_a_parallel_sweep_and_runs_of_the_same_project_from_another_process_share_the_workspace(tmp_path):
    write_project(tmp_path, **{"params.toml": "[fit]\nscale = 1.0\nleaves = 31\nsleep = 1\n"})
    workbench = [sys.executable, "-m", "workbench", "-w", str(tmp_path)]
    sweep = subprocess.Popen([*workbench, "sweep", "tiny", "--runner", "local", "--param", "fit.leaves=15,31,47,63",
                              "--sampler", "grid", "--name", "shared", "--jobs", "2"],
                             cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = Lines(sweep.stdout)
    out.wait_for("◆ trial 1 ", timeout=60)  # the parallel part of the sweep has begun
    runs = [subprocess.run([*workbench, "run", "tiny", "--runner", "local"], cwd=REPO, env=cli_env(),
                           capture_output=True, text=True, timeout=60) for _ in range(2)]
    assert sweep.wait(timeout=60) == 0, out.text() + sweep.stderr.read()
    sweep_text = out.text() + sweep.stderr.read()
    for done in runs:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "lock" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    assert "lock" not in sweep_text.lower(), sweep_text
    # Two trials' lines interleave: each stage line names its run, so they can be told apart.
    finished = re.findall(r"✓ fit \(run (\d+)\) succeeded", sweep_text)
    assert len(set(finished)) == 4, sweep_text

    recorded = runs_json(tmp_path)
    assert sorted(Counter(r["id"] for r in recorded).values()) == [1] * 6  # 4 trials + 2 runs, once each
    assert {r["status"] for r in recorded} == {"succeeded"}
    assert sorted((r["trigger"], r["sweep"], r["sweep_trial"]) for r in recorded if r["sweep"]) == [
        ("sweep", "shared", n) for n in range(4)]
    assert [(r["trigger"], r["sweep_trial"]) for r in recorded if not r["sweep"]] == [("manual", None)] * 2

    # The two processes did run at the same time: a manual run overlaps a trial's run.
    spans = {r.id: (r.started_at, r.started_at + timedelta(seconds=r.duration_s), r.sweep)
             for r in WorkbenchSession(tmp_path, runner="local").runs()}
    manual = [s for s in spans.values() if not s[2]]
    trials = [s for s in spans.values() if s[2]]
    assert any(m[0] < t[1] and t[0] < m[1] for m in manual for t in trials)

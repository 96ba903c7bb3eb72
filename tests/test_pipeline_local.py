"""The pipeline use case on the local runner, with a real DuckDB file: reuse, failures, gates,
snapshots and cancellation. The same service runs on Docker in test_example_docker.py."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import pytest

from workbench.core.events import StageProgress, StageStarted
from workbench.core.model import RunStatus, StageStatus
from workbench.core.ports import CancelToken
from workbench.services.session import WorkbenchSession

MANIFEST = """
[project]
name = "tiny"
primary_metric = "score"

[stages.prep]
command = "python prep.py"
inputs = ["prep.py", "data.txt"]
outputs = ["clean.txt"]

[stages.fit]
command = "python fit.py"
inputs = ["fit.py", "params.toml"]
outputs = ["model.json"]
depends_on = ["prep"]

[gates]
score = ">= 0.5"
"""

PREP = """
import wb
text = open("data.txt").read()
open(wb.output_path("clean.txt"), "w").write(text.strip().upper())
wb.log_metrics({"rows": len(text.splitlines())})
"""

FIT = """
import json, wb
params = wb.load_params("params.toml", "fit")
data = open(wb.upstream("prep", "clean.txt")).read()
for i in range(1, 5):
    wb.progress(i, 4, "rounds")
json.dump({"data": data, "scale": params["scale"]}, open(wb.output_path("model.json"), "w"))
wb.log_artifact("model.json", "model")
wb.log_params(params)
wb.log_metrics({"score": params["scale"] * 0.5})
"""


def write_project(root: Path, **overrides: str) -> Path:
    project = root / "tiny"
    project.mkdir(parents=True, exist_ok=True)
    files = {"workbench.toml": MANIFEST, "prep.py": PREP, "fit.py": FIT, "data.txt": "a\nb\nc\n",
             "params.toml": "[fit]\nscale = 1.5\n"}
    files.update(overrides)
    for name, text in files.items():
        (project / name).write_text(textwrap.dedent(text))
    return project


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    write_project(tmp_path)
    return tmp_path


def session_for(root: Path) -> WorkbenchSession:
    return WorkbenchSession(root, runner="local")


def statuses(record) -> dict[str, str]:
    return {s.stage: str(s.status) for s in record.stages}


def test_first_run_runs_everything_and_records_lineage(workspace):
    session = session_for(workspace)
    events = []
    record = session.run("tiny", on_event=events.append)
    assert record.status is RunStatus.SUCCEEDED, record.reason
    assert statuses(record) == {"prep": "succeeded", "fit": "succeeded"}
    assert record.metrics == {"rows": 3.0, "score": 0.75}
    assert record.gates_passed and record.gates[0].value == 0.75

    stored = session.get_run(record.id)
    assert stored.status is RunStatus.SUCCEEDED
    fit = next(s for s in stored.stages if s.stage == "fit")
    assert {a.name: a.kind for a in fit.artifacts} == {"model.json": "model"}
    assert fit.params == {"scale": "1.5"}
    assert {f.path for f in fit.inputs} == {"fit.py", "params.toml"}
    model = json.loads(Path(fit.artifacts[0].path).read_text())
    assert model == {"data": "A\nB\nC", "scale": 1.5}
    # progress markers become progress events, not log lines
    assert [e.done for e in events if isinstance(e, StageProgress)] == [1, 2, 3, 4]


def test_unchanged_rerun_reuses_every_stage(workspace):
    session = session_for(workspace)
    first = session.run("tiny")
    started = []
    second = session.run("tiny", on_event=lambda e: started.append(e) if isinstance(e, StageStarted) else None)
    assert started == []
    assert statuses(second) == {"prep": "reused", "fit": "reused"}
    assert all(s.reused_from_run == first.id for s in second.stages)
    assert second.metrics == first.metrics and second.gates_passed
    assert session.get_run(second.id).reused_stages == ["prep", "fit"]


def test_changing_params_reruns_only_the_stage_that_reads_them(workspace):
    session = session_for(workspace)
    session.run("tiny")
    (workspace / "tiny" / "params.toml").write_text("[fit]\nscale = 0.5\n")
    record = session.run("tiny")
    assert statuses(record) == {"prep": "reused", "fit": "succeeded"}
    assert record.metrics["score"] == 0.25


def test_changing_data_reruns_downstream_too(workspace):
    session = session_for(workspace)
    session.run("tiny")
    (workspace / "tiny" / "data.txt").write_text("x\ny\n")
    record = session.run("tiny")
    assert statuses(record) == {"prep": "succeeded", "fit": "succeeded"}


def test_touch_without_change_reuses(workspace):
    session = session_for(workspace)
    session.run("tiny")
    path = workspace / "tiny" / "data.txt"
    path.write_text(path.read_text())
    assert statuses(session.run("tiny")) == {"prep": "reused", "fit": "reused"}


def test_failing_stage_fails_the_run_and_skips_downstream(tmp_path):
    write_project(tmp_path, **{"prep.py": "import sys\nprint('checking')\nprint('bad row 7', file=sys.stderr)\nsys.exit(1)\n"})
    record = session_for(tmp_path).run("tiny")
    assert record.status is RunStatus.FAILED
    assert record.reason == "stage prep failed: exited with code 1"
    prep, fit = record.stages
    assert prep.log_tail == ["checking", "bad row 7"]
    assert fit.status is StageStatus.SKIPPED and "upstream stage prep failed" in fit.reason
    assert [g.passed for g in record.gates] == [None]


def test_missing_declared_output_and_bad_metrics_fail_the_stage(tmp_path):
    write_project(tmp_path, **{"prep.py": "import wb\nopen(wb.output_path('metrics.json'), 'w').write('{oops')\n"})
    record = session_for(tmp_path).run("tiny")
    prep = record.stages[0]
    assert prep.status is StageStatus.FAILED
    assert "metrics.json is not valid JSON" in prep.reason and "declared output clean.txt was not written" in prep.reason


def test_failed_gate_is_recorded_with_numbers(tmp_path):
    write_project(tmp_path, **{"params.toml": "[fit]\nscale = 0.2\n"})
    record = session_for(tmp_path).run("tiny")
    assert record.status is RunStatus.GATE_FAILED and not record.gates_passed
    assert record.reason == "gate failed: score >= 0.5 (0.1 is not >= 0.5)"
    assert session_for(tmp_path).runs("tiny")[0].gates_failed == 1


def test_stage_filter_runs_the_stage_and_its_dependencies_only(tmp_path):
    manifest = MANIFEST + '\n[stages.report]\ncommand = "python -c pass"\ndepends_on = ["prep"]\n'
    write_project(tmp_path, **{"workbench.toml": manifest})
    record = session_for(tmp_path).run("tiny", stages=["fit"])
    assert list(statuses(record)) == ["prep", "fit"]


def test_snapshot_isolates_a_run_from_edits_made_during_it(tmp_path):
    slow_prep = "import time, wb\ntime.sleep(1.0)\nopen(wb.output_path('clean.txt'), 'w').write(open('data.txt').read())\n"
    project = write_project(tmp_path, **{"prep.py": slow_prep})
    session = session_for(tmp_path)

    def edit_when_started(event):
        if isinstance(event, StageStarted) and event.stage == "prep":
            (project / "data.txt").write_text("edited during the run\n")

    record = session.run("tiny", on_event=edit_when_started)
    prep = record.stages[0]
    assert Path(prep.output_dir, "clean.txt").read_text() == "a\nb\nc\n"
    # The edit is picked up by the next run.
    assert statuses(session.run("tiny"))["prep"] == "succeeded"


def test_cancel_stops_the_stage_quickly(tmp_path):
    write_project(tmp_path, **{"prep.py": "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"})
    cancel = CancelToken()
    timer = {}

    def cancel_on_start(event):
        if isinstance(event, StageStarted):
            threading.Timer(0.3, lambda: (timer.setdefault("t", time.monotonic()), cancel.cancel("superseded by run 9"))).start()

    record = session_for(tmp_path).run("tiny", cancel=cancel, on_event=cancel_on_start)
    elapsed = time.monotonic() - timer["t"]
    assert record.status is RunStatus.CANCELLED and record.reason == "superseded by run 9"
    assert statuses(record) == {"prep": "cancelled", "fit": "cancelled"}
    assert elapsed < 1.0


def test_timeout_fails_the_stage(tmp_path):
    manifest = MANIFEST.replace('outputs = ["clean.txt"]', 'outputs = ["clean.txt"]\ntimeout_s = 0.5')
    write_project(tmp_path, **{"workbench.toml": manifest, "prep.py": "import time\ntime.sleep(30)\n"})
    record = session_for(tmp_path).run("tiny")
    assert record.stages[0].status is StageStatus.FAILED
    assert record.stages[0].reason == "timed out after 0.5 s"


def test_dataset_profile_is_recorded(tmp_path):
    manifest = MANIFEST.replace('[stages.prep]', '[data]\npaths = ["table.csv"]\n\n[stages.prep]')
    write_project(tmp_path, **{"workbench.toml": manifest, "table.csv": "x,y\n1,a\n2,b\n,c\n"})
    record = session_for(tmp_path).run("tiny")
    (profile,) = record.datasets
    assert profile.path == "table.csv" and profile.row_count == 3
    columns = {c.name: c for c in profile.columns}
    assert columns["x"].nulls == 1 and set(columns) == {"x", "y"}


@pytest.mark.parametrize("superseded", [False, True])
def test_a_run_cancelled_while_its_environment_is_prepared_runs_no_stage(workspace, superseded):
    from workbench.adapters.duckdb_store import DuckDBLineageStore
    from workbench.adapters.local_runner import LocalRunner
    from workbench.core.errors import RunCancelled
    from workbench.services.pipeline import PipelineService
    from workbench.services.workspace import Workspace

    class SlowBuild(LocalRunner):
        """Stands in for an image build that outlasts the user's patience (the Docker runner's
        own test cancels a real build)."""

        def prepare(self, project_dir, env, on_log, project=None, cancel=None):
            assert cancel is not None and cancel.wait(10), "the pipeline must hand its token to prepare"
            raise RunCancelled(f"{cancel.reason} while the environment image was being built")

    ws = Workspace(workspace)
    store = DuckDBLineageStore(ws.ensure_state_dir() / "lineage.duckdb")
    cancel = CancelToken()
    threading.Timer(0.2, cancel.cancel, kwargs={"reason": "stopped", "superseded": superseded}).start()
    record = PipelineService(ws, store, SlowBuild()).run(ws.project("tiny"), cancel=cancel)
    assert record.status is (RunStatus.SUPERSEDED if superseded else RunStatus.CANCELLED)
    assert record.stages == [] and record.reason == "stopped while the environment image was being built"
    assert store.get_run(record.id).status is record.status

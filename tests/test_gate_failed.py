"""Issue 11 item 5: a run whose gate failed read as a green `✓ succeeded` in the CLI's final
line, `runs`, the JSON and the TUI, and registered a model version anyway. It has its own
status now (`gate_failed`, shown `✗ gate failed`), exits 2, and registers no version: its model
stays in the run's outputs and lineage, and no promotion can be asked for it."""

from __future__ import annotations

import json

from tests.test_cli import wb
from tests.test_pipeline_local import write_project
from workbench.core.model import RunStatus
from workbench.services.session import WorkbenchSession

FAILING = {"params.toml": "[fit]\nscale = 0.2\n"}  # score 0.1, the gate wants >= 0.5


def test_a_failed_gate_reads_as_one_in_the_cli_and_registers_nothing(tmp_path):
    write_project(tmp_path, **FAILING)
    done = wb(tmp_path, "run", "tiny", "--runner", "local", "-q")
    assert done.returncode == 2, done.stderr
    final = [line for line in done.stdout.splitlines() if "· run 1 ·" in line]
    assert final and final[-1].startswith("✗ gate failed · run 1"), done.stdout
    assert "succeeded · run" not in done.stdout
    assert "no model version registered" in done.stdout and "registered as version" not in done.stdout

    listing = wb(tmp_path, "runs")
    assert "✗ gate failed" in listing.stdout and "succeeded" not in listing.stdout, listing.stdout
    runs = json.loads(wb(tmp_path, "runs", "--json").stdout)
    assert [(r["status"], r["gates_failed"]) for r in runs] == [("gate_failed", 1)]
    shown = json.loads(wb(tmp_path, "show", "1", "--json").stdout)
    assert shown["status"] == "gate_failed"

    session = WorkbenchSession(tmp_path, runner="local")
    assert session.registry.models("tiny") == []
    refused = wb(tmp_path, "promote", "tiny", "1", "--to", "staging")
    assert refused.returncode != 0 and "version 1" in (refused.stdout + refused.stderr)
    # the model is still in the run's outputs and lineage
    record = session.get_run(1)
    assert record.status is RunStatus.GATE_FAILED
    assert [a.name for s in record.stages for a in s.artifacts if a.kind == "model"] == ["model.json"]


def test_stages_of_a_gate_failed_run_are_reused(tmp_path):
    """Reuse goes by stage status: the stages of a gate-failed run are as good as any."""
    write_project(tmp_path, **FAILING)
    session = WorkbenchSession(tmp_path, runner="local")
    first = session.run("tiny")
    again = session.run("tiny")
    assert first.status is again.status is RunStatus.GATE_FAILED
    assert again.reused_stages == ["prep", "fit"]
    assert session.registry.models("tiny") == []
    (tmp_path / "tiny" / "params.toml").write_text("[fit]\nscale = 1.5\n")
    passing = session.run("tiny")
    assert passing.status is RunStatus.SUCCEEDED and passing.reused_stages == ["prep"]
    assert [v.version for v in session.registry.models("tiny")] == [1]

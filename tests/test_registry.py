"""The model registry with a real DuckDB file and real local runs: registration, promotion,
rollback, the audit trail, the deploy pointer (and its atomicity), and two processes
promoting at once."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pytest

from tests.test_pipeline_local import MANIFEST, write_project
from workbench.core.errors import VersionNotFound
from workbench.core.model import RunStatus, Trigger
from workbench.services.pipeline import PipelineService
from workbench.services.session import WorkbenchSession

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    write_project(tmp_path)
    return tmp_path


def session_for(root: Path) -> WorkbenchSession:
    return WorkbenchSession(root, runner="local")


def set_scale(root: Path, scale: float) -> None:
    (root / "tiny" / "params.toml").write_text(f"[fit]\nscale = {scale}\n")


def run_with_scale(session: WorkbenchSession, root: Path, scale: float):
    set_scale(root, scale)
    record = session.run("tiny")
    assert record.status is RunStatus.SUCCEEDED, record.reason
    return session.last_registration[0]


def audit_rows(root: Path) -> list[tuple]:
    with duckdb.connect(str(root / ".workbench" / "lineage.duckdb"), read_only=True) as con:
        return con.execute("SELECT action, alias, version, from_version, to_version FROM audit ORDER BY id").fetchall()


def outbox(root: Path) -> list[tuple]:
    with duckdb.connect(str(root / ".workbench" / "lineage.duckdb"), read_only=True) as con:
        return con.execute("SELECT kind, key FROM mlflow_outbox ORDER BY id").fetchall()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- registration ----------------------------------------------------------------------------

def test_a_successful_run_registers_a_version_tied_to_its_lineage(ws):
    session = session_for(ws)
    record = session.run("tiny")
    version, created = session.last_registration
    assert created and version.version == 1 and version.run_id == record.id
    fit = record.stages[1]
    model = fit.artifacts[0]
    assert (version.stage, version.artifact_name, version.sha256) == ("fit", "model.json", model.sha256)
    assert version.snapshot_id == record.snapshot_id and version.image_id == record.image_id
    assert version.manifest_hash == record.manifest_hash
    assert version.metrics == {"rows": 3.0, "score": 0.75} and version.params == {"scale": "1.5"}
    assert version.primary_metric == "score" and version.primary_value == 0.75 and version.gates_passed
    assert session.registry.models("tiny") == [version]
    assert outbox(ws) == [("log_run", "run:1"), ("register_version", "version:1")]


def test_the_same_model_file_is_one_version(ws):
    session = session_for(ws)
    first = run_with_scale(session, ws, 1.5)
    again = run_with_scale(session, ws, 1.5)          # fully reused
    assert again.version == first.version and session.last_registration[1] is False
    second = run_with_scale(session, ws, 1.2)
    back = run_with_scale(session, ws, 1.5)           # the first model again
    assert (first.version, second.version, back.version) == (1, 2, 1)
    assert [v.version for v in session.registry.models("tiny")] == [2, 1]
    # Every run goes to MLflow; each version is registered there once.
    kinds = [k for k, _ in outbox(ws)]
    assert kinds.count("log_run") == 4 and kinds.count("register_version") == 2
    assert session.registry.version_for_run("tiny", 4).version == 1


def test_failed_partial_and_reproduce_runs_register_nothing(tmp_path):
    manifest = MANIFEST + '\n[stages.report]\ncommand = "python -c pass"\ndepends_on = ["prep"]\n'
    write_project(tmp_path, **{"workbench.toml": manifest})
    session = session_for(tmp_path)
    session.run("tiny", stages=["fit"])               # prep and fit only: no report stage
    assert session.last_registration == (None, False)
    session.run("tiny", trigger=Trigger.REPRODUCE)
    assert session.last_registration == (None, False)
    (tmp_path / "tiny" / "fit.py").write_text("raise SystemExit(1)\n")
    assert session.run("tiny").status is RunStatus.FAILED
    assert session.registry.models("tiny") == []
    assert [k for k, _ in outbox(tmp_path)] == ["log_run"] * 3


def test_a_run_whose_registration_was_missed_is_caught_up(ws):
    session = session_for(ws)
    project = session.project("tiny")
    # The pipeline alone records the run (as a workbench killed before registering would).
    PipelineService(session.workspace, session.store, session.runner).run(project)
    versions = session.registry.models("tiny")
    assert [(v.version, v.run_id) for v in versions] == [(1, 1)]
    assert outbox(ws) == [("log_run", "run:1"), ("register_version", "version:1")]


# -- promotion, refusal, rollback --------------------------------------------------------------

def test_promote_to_staging_then_production_moves_aliases_deploy_and_audit(ws):
    session = session_for(ws)
    v1 = run_with_scale(session, ws, 1.5)
    registry = session.registry
    staged = registry.promote("tiny", 1, "staging", reason="smoke tested", user="ana")
    assert staged.applied and staged.audit_id == 1 and staged.message == "staging: version 1 promoted (was nobody)"
    live = registry.promote("tiny", 1, "production", user="ana")
    assert live.applied and registry.aliases("tiny") == {"staging": 1, "production": 1}
    assert registry.models("tiny")[0].status == "production"

    deployed = ws / ".workbench" / "deploy" / "tiny" / "production"
    assert deployed.is_symlink() and os.readlink(deployed).startswith("releases/1-")
    meta = json.loads((deployed / "metadata.json").read_text())
    assert (meta["version"], meta["run_id"], meta["sha256"], meta["model_file"]) == (1, 1, v1.sha256, "model.json")
    assert (meta["snapshot_id"], meta["image_id"], meta["audit_id"], meta["promoted_by"]) == (
        v1.snapshot_id, v1.image_id, 2, "ana")
    assert sha(deployed / "model.json") == v1.sha256
    assert registry.deployed("tiny", "staging")["version"] == 1

    entries = registry.history("tiny")
    assert [(e.id, e.action, e.alias, e.from_version, e.to_version, e.actor) for e in entries] == [
        (2, "promote", "production", None, 1, "ana"), (1, "promote", "staging", None, 1, "ana")]
    assert entries[1].reason == "smoke tested"
    assert [c["rule"] for c in entries[0].checks] == ["not_current", "run_succeeded", "gates_passed", "model_intact",
                                                      "staged_first", "champion"]
    assert [(g["metric"], g["value"], g["passed"]) for g in entries[0].gates] == [("score", 0.75, True)]
    assert entries[0].comparison["challenger_value"] == 0.75 and entries[0].comparison["champion_version"] is None


def test_a_worse_model_is_refused_for_production_with_the_numbers_and_audited(ws):
    session = session_for(ws)
    registry = session.registry
    run_with_scale(session, ws, 1.5)
    registry.promote("tiny", 1, "staging")
    registry.promote("tiny", 1, "production")
    run_with_scale(session, ws, 1.2)                      # score 0.6: passes the gate, worse than 0.75
    assert registry.promote("tiny", 2, "staging").applied
    refused = registry.promote("tiny", 2, "production", reason="try")
    assert not refused.applied and refused.audit_id == 4
    assert refused.message == ("score 0.6 (version 2) vs 0.75 (production version 1, higher is better): "
                               "worse by 0.15, more than the tolerance 0")
    assert registry.aliases("tiny") == {"staging": 2, "production": 1}
    assert registry.deployed("tiny", "production")["version"] == 1
    entry = registry.history("tiny")[0]
    assert (entry.action, entry.request, entry.version, entry.from_version, entry.to_version) == (
        "refuse", "promote", 2, 1, 1)
    c = entry.comparison
    assert (c["metric"], c["champion_value"], c["challenger_value"], c["verdict"], c["tolerance"]) == (
        "score", 0.75, 0.6, "worse", 0.0)
    assert c["delta"] == pytest.approx(-0.15)
    assert [c["rule"] for c in entry.checks if not c["passed"]] == ["champion"]
    # Nothing went to MLflow for the refusal.
    assert [k for k, key in outbox(ws) if k == "set_alias"] == ["set_alias"] * 3


def test_dry_run_changes_nothing(ws):
    session = session_for(ws)
    run_with_scale(session, ws, 1.5)
    decision = session.registry.promote("tiny", 1, "staging", dry_run=True)
    assert decision.allowed and not decision.applied and decision.audit_id is None
    assert decision.message == "staging: version 1 would be promoted (was nobody)"
    assert audit_rows(ws) == [] and session.registry.aliases("tiny") == {}
    assert not (ws / ".workbench" / "deploy" / "tiny" / "staging").exists()


def test_rollback_goes_back_one_production_version_at_a_time(ws):
    session = session_for(ws)
    registry = session.registry
    for version, scale in ((1, 1.2), (2, 1.5), (3, 1.8)):
        run_with_scale(session, ws, scale)
        registry.promote("tiny", version, "staging")
        assert registry.promote("tiny", version, "production").applied
    back = registry.rollback("tiny", reason="latency regression", user="ops")
    assert back.applied and back.version == 2 and back.from_version == 3
    assert back.message == "production: rolled back to version 2 (was version 3)"
    assert registry.deployed("tiny", "production")["version"] == 2
    assert registry.deployed("tiny", "production")["action"] == "rollback"
    again = registry.rollback("tiny")
    assert again.applied and again.version == 1
    none_left = registry.rollback("tiny")
    assert not none_left.applied and none_left.message == (
        "no earlier production version to roll back to (version 1 is the first)")
    forward = registry.rollback("tiny", to_version=3)
    assert forward.applied and registry.aliases("tiny")["production"] == 3
    statuses = {v.version: v.status for v in registry.models("tiny")}
    assert statuses == {3: "production", 2: "archived", 1: "archived"}
    assert [row[0] for row in audit_rows(ws)][-4:] == ["rollback", "rollback", "refuse", "rollback"]


def test_a_missing_model_file_refuses_the_promotion(ws):
    session = session_for(ws)
    version = run_with_scale(session, ws, 1.5)
    Path(version.artifact_path).unlink()
    refused = session.registry.promote("tiny", 1, "staging")
    assert not refused.applied
    assert refused.message == (f"the model file of version 1 is gone: {version.artifact_path} "
                               "(run 1's outputs were deleted)")
    with pytest.raises(VersionNotFound, match=r"tiny has no model version 7 \(versions: 1\)"):
        session.registry.promote("tiny", 7, "staging")


def test_auto_staging_promotes_a_new_passing_version(tmp_path):
    write_project(tmp_path, **{"workbench.toml": MANIFEST + "\n[promotion]\nauto_staging = true\n"})
    session = session_for(tmp_path)
    session.run("tiny")
    assert session.registry.aliases("tiny") == {"staging": 1}
    assert session.registry.history("tiny")[0].actor == "workbench (auto_staging)"


def test_reproducibility_rule_uses_a_reproduce_run_of_the_same_inputs(tmp_path):
    write_project(tmp_path, **{"workbench.toml": MANIFEST + "\n[promotion]\nrequire_reproducibility = true\n"})
    session = session_for(tmp_path)
    session.run("tiny")
    registry = session.registry
    registry.promote("tiny", 1, "staging")
    refused = registry.promote("tiny", 1, "production")
    assert [c.rule for c in refused.failed] == ["reproduced"]

    class NoReuse:  # what a cold reproduce run does: run every stage again
        def __init__(self, store):
            self.store = store

        def __getattr__(self, name):
            return getattr(self.store, name)

        def find_reusable_stage(self, *args):
            return None

    pipeline = PipelineService(session.workspace, NoReuse(session.store), session.runner)
    reproduced = pipeline.run(session.project("tiny"), trigger=Trigger.REPRODUCE)
    assert registry.models("tiny")[0].reproduced_by == reproduced.id
    allowed = registry.promote("tiny", 1, "production")
    assert allowed.applied
    assert [c.detail for c in allowed.checks if c.rule == "reproduced"] == [
        f"reproduce run {reproduced.id} wrote the same model (sha256 {registry.version('tiny', 1).sha256[:12]}) "
        "and metrics"]


# -- the audit trail ---------------------------------------------------------------------------

def test_audit_trail_is_a_keyed_chain(ws):
    session = session_for(ws)
    run_with_scale(session, ws, 1.5)
    registry = session.registry
    registry.promote("tiny", 1, "production")
    registry.promote("tiny", 1, "staging")
    registry.promote("tiny", 1, "production")
    report = registry.verify("tiny")
    assert report.intact and (report.rows, report.project_rows, report.versions) == (3, 3, 1)
    key = ws / ".workbench" / "audit" / "key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    db = ws / ".workbench" / "lineage.duckdb"
    with duckdb.connect(str(db)) as con:  # someone edits history behind the workbench's back
        con.execute("UPDATE audit SET reason = 'nothing to see' WHERE id = 2")
    assert [str(p) for p in registry.verify().problems] == [
        "audit #2: its fields do not match its MAC (the row was edited, or forged and re-hashed without the "
        "workbench's key)"]
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM audit WHERE id = 2")
    assert [str(p) for p in registry.verify().problems][0] == (
        "audit #3: does not follow the row before it (a row before it was removed or rewritten)")


# -- the deploy pointer ------------------------------------------------------------------------

def test_a_reader_never_sees_a_half_switched_deploy_folder(ws):
    """A serving process resolves the alias once and reads model and metadata from there; while
    the alias switches back and forth, every read is a complete, matching pair."""
    session = session_for(ws)
    registry = session.registry
    models = {run_with_scale(session, ws, scale).version: scale for scale in (1.5, 1.2)}
    assert set(models) == {1, 2}
    registry.promote("tiny", 1, "staging")
    alias = ws / ".workbench" / "deploy" / "tiny" / "staging"
    stop = threading.Event()
    seen: dict[int, int] = {}
    problems: list[str] = []

    def read_forever():
        while not stop.is_set():
            try:
                folder = os.path.realpath(alias)
                meta = json.loads(Path(folder, "metadata.json").read_text())
                model = Path(folder, meta["model_file"]).read_bytes()
            except (OSError, ValueError) as exc:
                problems.append(repr(exc))
                continue
            if hashlib.sha256(model).hexdigest() != meta["sha256"]:
                problems.append(f"model of {folder} does not match its metadata")
            elif json.loads(model)["scale"] != models[meta["version"]]:
                problems.append(f"version {meta['version']} holds another version's model")
            seen[meta["version"]] = seen.get(meta["version"], 0) + 1

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        for i in range(40):
            assert registry.promote("tiny", 2 if i % 2 == 0 else 1, "staging").applied
    finally:
        stop.set()
        reader.join()
    assert problems == []
    assert seen.get(1, 0) > 0 and seen.get(2, 0) > 0, seen
    releases = list((ws / ".workbench" / "deploy" / "tiny" / "releases").iterdir())
    assert len(releases) <= 6  # the one in use and the newest five spares; the rest pruned


def test_a_stale_deploy_pointer_is_repaired_by_the_next_promotion(ws):
    session = session_for(ws)
    registry = session.registry
    run_with_scale(session, ws, 1.5)
    run_with_scale(session, ws, 1.8)
    registry.promote("tiny", 1, "staging")
    (ws / ".workbench" / "deploy" / "tiny" / "staging").unlink()  # as if the switch never happened
    registry.promote("tiny", 2, "staging")
    registry.promote("tiny", 2, "production")
    assert registry.deployed("tiny", "production")["version"] == 2
    registry.rollback("tiny", alias="staging")  # staging: back to 1 (repairs happen under the same lock)
    assert registry.deployed("tiny", "staging")["version"] == 1


# -- two processes at once ---------------------------------------------------------------------

RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from workbench.services.session import WorkbenchSession

    root, version, me, other = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    registry = WorkbenchSession(root, runner="local").registry
    seen = registry.promote("tiny", version, "staging", dry_run=True)   # what a user confirms
    me.touch()
    deadline = time.monotonic() + 20
    while not other.exists() and time.monotonic() < deadline:          # both have looked
        time.sleep(0.005)
    decision = registry.promote("tiny", version, "staging", user=f"racer {{version}}",
                                expected_from=seen.from_version)
    print(decision.applied, decision.message)
""")


def test_two_processes_promoting_at_once_exactly_one_wins_and_both_are_audited(ws):
    session = session_for(ws)
    run_with_scale(session, ws, 1.5)
    run_with_scale(session, ws, 1.8)
    script = RACER.format(repo=str(REPO))
    flags = [ws / "ready-1", ws / "ready-2"]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(ws), str(v), str(flags[i]), str(flags[1 - i])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, v in enumerate((1, 2))]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outputs]
    results = [o[0].strip() for o in outputs]
    winners = [r for r in results if r.startswith("True")]
    losers = [r for r in results if r.startswith("False")]
    assert len(winners) == 1 and len(losers) == 1, results
    winner = 1 if "version 1 promoted" in winners[0] else 2
    assert f"staging moved from nobody to v{winner} since you looked; review and try again" in losers[0]
    registry = session.registry
    assert registry.aliases("tiny") == {"staging": winner}
    assert registry.deployed("tiny", "staging")["version"] == winner
    entries = registry.history("tiny")
    assert sorted((e.action, e.actor) for e in entries) == sorted(
        [("promote", f"racer {winner}"), ("refuse", f"racer {3 - winner}")])
    assert registry.verify().intact


def test_registry_works_while_another_process_runs(ws):
    """Reading the registry while a run is being recorded elsewhere only waits, never fails."""
    session = session_for(ws)
    run_with_scale(session, ws, 1.5)
    done = subprocess.Popen([sys.executable, "-m", "workbench", "-w", str(ws), "run", "tiny", "--runner", "local",
                             "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    while done.poll() is None and time.monotonic() - started < 30:
        assert session.registry.models("tiny")[-1].version == 1
    assert done.wait(30) == 0, done.stderr.read()


def test_a_forged_alias_refuses_rollback_and_is_never_deployed(ws):
    from workbench.core.audit import AuditTampered

    session = session_for(ws)
    registry = session.registry
    for version, scale in ((1, 1.2), (2, 1.5)):
        run_with_scale(session, ws, scale)
        registry.promote("tiny", version, "staging")
        assert registry.promote("tiny", version, "production").applied
    with duckdb.connect(str(ws / ".workbench" / "lineage.duckdb")) as con:
        con.execute("UPDATE aliases SET version = 1 WHERE alias = 'staging'")
    with pytest.raises(AuditTampered, match=r"aliases tiny staging: holds version 1, but the audit trail puts "
                                            r"version 2 there \(audit #3\)"):
        registry.rollback("tiny")
    assert registry.deployed("tiny", "production")["version"] == 2
    said = session_for(ws).registry.reconcile()  # what the next command's session says
    assert said == ["tiny: deploy pointers not repaired: the audit trail does not vouch for the "
                    "registry: aliases tiny staging: holds version 1, but the audit trail puts version 2 there "
                    "(audit #3). Nothing was changed; see `workbench history PROJECT --verify`"]
    assert registry.deployed("tiny", "staging")["version"] == 2
    assert [e.action for e in registry.history("tiny")] == ["promote"] * 4  # nothing recorded for the refusal

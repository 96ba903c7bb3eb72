"""`workbench sweep` on the local runner with a real DuckDB file and a real Optuna journal: trials
are full runs tagged with their sweep, the validate-like stage is reused after the first trial,
the user's params file is never written, only the best trial is registered, a grid is walked
whole, a Ctrl-C'd sweep resumes the same study, and bad params say what is wrong."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from tests.test_signals import REPO, Lines, cli_env, runs_json
from workbench.cli.main import main
from workbench.core.model import StageStatus
from workbench.services.session import WorkbenchSession
from workbench.services.sweep import SweepService
from workbench.services.sweep_plan import SweepRequest

MANIFEST = """
[project]
name = "tiny"
primary_metric = "score"

[stages.validate]
command = "python validate.py"
inputs = ["validate.py", "data.txt"]
outputs = ["clean.txt"]

[stages.fit]
command = "python fit.py"
inputs = ["fit.py"]
params = ["fit"]
outputs = ["model.json"]
depends_on = ["validate"]

[gates]
score = ">= 0.1"
"""

VALIDATE = """
import wb
text = open("data.txt").read()
open(wb.output_path("clean.txt"), "w").write(text.strip().upper())
wb.log_metrics({"rows": len(text.splitlines())})
"""

# The score peaks at leaves = 31 and grows with scale: a search has something to find.
FIT = """
import json, time, wb
params = wb.load_params("params.toml", "fit")
time.sleep(params.get("sleep", 0))
data = open(wb.upstream("validate", "clean.txt")).read()
json.dump({"data": data, "scale": params["scale"], "leaves": params["leaves"]}, open(wb.output_path("model.json"), "w"))
wb.log_artifact("model.json", "model")
wb.log_metrics({"score": params["scale"] * 0.5 - abs(params["leaves"] - 31) / 100})
"""

PARAMS = "# the user's own layout and comments\n[fit]\nscale = 1.5   # tuned by hand\nleaves = 15\n"


def write_project(root: Path, **files: str) -> Path:
    project = root / "tiny"
    project.mkdir(parents=True, exist_ok=True)
    texts = {"workbench.toml": MANIFEST, "validate.py": VALIDATE, "fit.py": FIT, "data.txt": "a\nb\nc\n",
             "params.toml": PARAMS} | files
    for name, text in texts.items():
        (project / name).write_text(textwrap.dedent(text) if name.endswith(".py") else text)
    return project


def sweep(root: Path, *args: str) -> int:
    return main(["-w", str(root), "sweep", "tiny", "--runner", "local", "-q", *args])


def sweep_json(root: Path, capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = sweep(root, "--json", *args)
    return code, json.loads(capsys.readouterr().out)


def test_a_sweep_runs_each_trial_as_a_tagged_run_reuses_validate_and_registers_only_the_best(tmp_path, capsys):
    project = write_project(tmp_path)
    code, report = sweep_json(tmp_path, capsys, "--param", "fit.scale=0.5..2", "--param", "fit.leaves=15,31,63",
                              "--trials", "4", "--seed", "3", "--name", "first")
    assert code == 0
    assert (project / "params.toml").read_text() == PARAMS  # never written

    session = WorkbenchSession(tmp_path, runner="local")
    runs = sorted(session.runs("tiny"), key=lambda r: r.id)
    assert [(r.trigger, r.sweep, r.sweep_trial) for r in runs] == [("sweep", "first", n) for n in range(4)]
    records = [session.get_run(r.id) for r in runs]
    validate = [next(s for s in r.stages if s.stage == "validate") for r in records]
    assert validate[0].status is StageStatus.SUCCEEDED
    assert [v.status for v in validate[1:]] == [StageStatus.REUSED] * 3
    assert {v.reused_from_run for v in validate[1:]} == {records[0].id}
    # Each trial's fit ran with the trial's values, read from the copy its snapshot holds.
    for trial, record in zip(report["trials"], records):
        fit = next(s for s in record.stages if s.stage == "fit")
        assert json.loads(fit.param_values["params.toml:fit"]) == {
            "scale": trial["params"]["fit.scale"], "leaves": trial["params"]["fit.leaves"]}
        assert record.metrics["score"] == pytest.approx(trial["value"])

    best = max(report["trials"], key=lambda t: t["value"])
    assert report["best"]["number"] == best["number"]
    versions = session.registry.models("tiny")
    assert [(v.version, v.run_id) for v in versions] == [(1, best["run_id"])]
    assert report["registered"] == {"version": 1, "created": True}

    # The lineage says which sweep and trial a run is, in `runs --json` and `show --json`.
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted((r["sweep"], r["sweep_trial"]) for r in listed) == [("first", n) for n in range(4)]
    assert main(["-w", str(tmp_path), "show", str(runs[2].id), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["sweep"], shown["sweep_trial"]) == ("first", 2)
    # `workbench compare --sweep` compares exactly the sweep's trials.
    assert main(["-w", str(tmp_path), "compare", "tiny", "--sweep", "first", "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert sorted(r["id"] for r in compared["runs"]) == [r.id for r in runs]


@pytest.mark.slow
def test_parallel_trials_run_at_once_each_recorded_once_and_validate_still_runs_once(tmp_path, capsys):
    write_project(tmp_path, **{"params.toml": "[fit]\nscale = 1.0\nleaves = 15\nsleep = 1.0\n"})
    code, report = sweep_json(tmp_path, capsys, "--param", "fit.scale=1..2", "--param", "fit.leaves=15,31,63",
                              "--trials", "5", "--jobs", "2", "--seed", "3", "--name", "wide")
    assert code == 0
    assert sorted((t["number"], t["state"]) for t in report["trials"]) == [(n, "complete") for n in range(5)]

    session = WorkbenchSession(tmp_path, runner="local")
    runs = sorted(session.runs("tiny"), key=lambda r: r.id)
    assert sorted((r.sweep, r.sweep_trial, str(r.status)) for r in runs) == [
        ("wide", n, "succeeded") for n in range(5)]
    assert {t["run_id"] for t in report["trials"]} == {r.id for r in runs}
    records = [session.get_run(r.id) for r in runs]
    # Trial 0 runs alone, so validate runs once and the other trials reuse it.
    validate = [next(s for s in r.stages if s.stage == "validate").status for r in records]
    assert validate == [StageStatus.SUCCEEDED] + [StageStatus.REUSED] * 4
    for trial in report["trials"]:  # each run has its own trial's values, not its neighbour's
        fit = next(s for s in session.get_run(trial["run_id"]).stages if s.stage == "fit")
        assert json.loads(fit.param_values["params.toml:fit"])["leaves"] == trial["params"]["fit.leaves"]
    # Trials 1..4 ran two at a time: some two of their runs overlap in time.
    spans = [(r.started_at, r.finished_at) for r in records[1:]]
    assert any(a[0] < b[1] and b[0] < a[1] for a, b in itertools.combinations(spans, 2))
    assert [v.run_id for v in session.registry.models("tiny")] == [report["best"]["run_id"]]


def test_the_grid_sampler_walks_the_whole_grid_once(tmp_path, capsys):
    write_project(tmp_path)
    code, report = sweep_json(tmp_path, capsys, "--sampler", "grid", "--param", "fit.scale=1,2",
                              "--param", "fit.leaves=15,31,63", "--name", "grid")
    assert code == 0
    assert report["wanted"] == 6
    tried = sorted((t["params"]["fit.scale"], t["params"]["fit.leaves"]) for t in report["trials"])
    assert tried == sorted(itertools.product([1, 2], [15, 31, 63]))
    assert report["best"]["params"] == {"fit.scale": 2, "fit.leaves": 31}


def test_the_manifest_sweep_section_is_the_default(tmp_path, capsys):
    manifest = MANIFEST + '\n[sweep]\nparams = ["fit.leaves=15,31"]\ntrials = 2\nsampler = "grid"\n'
    write_project(tmp_path, **{"workbench.toml": manifest})
    code, report = sweep_json(tmp_path, capsys, "--name", "from-manifest")
    assert code == 0
    assert sorted(t["params"]["fit.leaves"] for t in report["trials"]) == [15, 31]
    assert report["best"]["params"] == {"fit.leaves": 31}


def test_a_trial_goes_to_mlflow_tagged_with_its_sweep_and_only_the_best_as_a_version(tmp_path, capsys):
    write_project(tmp_path)
    code, report = sweep_json(tmp_path, capsys, "--sampler", "grid", "--param", "fit.leaves=15,31", "--name", "ml")
    assert code == 0
    with duckdb.connect(str(tmp_path / ".workbench" / "lineage.duckdb"), read_only=True) as con:
        queued = con.execute("SELECT kind, key, payload FROM mlflow_outbox ORDER BY id").fetchall()
    runs = {json.loads(p)["tags"]["workbench.sweep_trial"]: key for kind, key, p in queued if kind == "log_run"}
    assert runs == {str(t["number"]): f"run:{t['run_id']}" for t in report["trials"]}
    assert all(json.loads(p)["tags"]["workbench.sweep"] == "ml" for kind, _k, p in queued if kind == "log_run")
    versions = [json.loads(p)["run_id"] for kind, _k, p in queued if kind == "register_version"]
    assert versions == [report["best"]["run_id"]]


def test_a_params_file_broken_during_a_sweep_fails_that_trial_and_the_sweep_goes_on(tmp_path):
    project = write_project(tmp_path)
    service = SweepService(WorkbenchSession(tmp_path, runner="local"))
    plan = service.plan(SweepRequest("tiny", ("fit.leaves=15,31,63",), trials=3, sampler="grid", name="broken"))

    def break_then_mend(number: int, _values) -> None:
        (project / "params.toml").write_text("[fit\n" if number == 1 else PARAMS)

    report = service.start(plan, on_trial_start=break_then_mend)
    assert [t.state for t in report.trials] == ["complete", "fail", "complete"]
    assert "params.toml is not valid TOML" in report.trials[1].reason
    assert report.trials[1].run_id is None  # no run was started for it


def test_a_file_changed_during_a_sweep_is_said_and_recorded_with_the_trial(tmp_path):
    project = write_project(tmp_path)
    session = WorkbenchSession(tmp_path, runner="local")
    service = SweepService(session)
    plan = service.plan(SweepRequest("tiny", ("fit.leaves=15,31,63",), trials=3, sampler="grid", name="edited"))

    def edit_before_trial(number: int, _values) -> None:
        if number == 1:  # the project as it is when trial 1 starts is what trial 1 runs
            (project / "fit.py").write_text(textwrap.dedent(FIT) + "\n# edited\n")

    report = service.start(plan, on_trial_start=edit_before_trial)
    assert [t.changed_files for t in report.trials] == [(), ("fit.py",), ()]
    again = service.report("edited")  # recorded with the trial in the study
    assert again.trials[1].changed_files == ("fit.py",)


@pytest.mark.slow
def test_a_sweep_stopped_by_ctrl_c_resumes_the_same_study(tmp_path):
    project = write_project(tmp_path, **{"params.toml": "[fit]\nscale = 1.0\nleaves = 15\nsleep = 1.5\n"})
    args = [sys.executable, "-m", "workbench", "-w", str(tmp_path), "sweep", "tiny", "--runner", "local",
            "--param", "fit.leaves=15,31,63", "--sampler", "grid", "--name", "long"]
    process = subprocess.Popen(args, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    out = Lines(process.stdout)
    out.wait_for("▶ run 2 ", timeout=60)  # trial 1's run is recorded and tagged; its fit sleeps 1.5 s
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    text = out.text()
    assert "◆ trial 0 complete" in text and "--resume long" in text

    runs = sorted(runs_json(tmp_path), key=lambda r: r["id"])
    assert [(r["sweep_trial"], r["status"]) for r in runs] == [(0, "succeeded"), (1, "cancelled")]

    # No --runner: the sweep resumes on the runner it started on (its stages' cache keys hold it).
    resume = [sys.executable, "-m", "workbench", "-w", str(tmp_path), "sweep", "tiny", "--resume", "long", "-q"]
    done = subprocess.run(resume, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    status = subprocess.run([sys.executable, "-m", "workbench", "-w", str(tmp_path), "sweeps", "--json"],
                            cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60)
    [report] = json.loads(status.stdout)
    states = [(t["number"], t["state"]) for t in report["trials"]]
    assert states == [(0, "complete"), (1, "cancelled"), (2, "complete"), (3, "complete")]
    cancelled = report["trials"][1]["params"]
    assert report["trials"][2]["params"] == cancelled  # the stopped trial's values are tried again first
    assert sorted(t["params"]["fit.leaves"] for t in report["trials"] if t["state"] == "complete") == [15, 31, 63]
    assert report["done"] == 3 and not report["stopped"]
    assert (project / "params.toml").read_text() == "[fit]\nscale = 1.0\nleaves = 15\nsleep = 1.5\n"
    runs = runs_json(tmp_path)
    assert sorted(r["sweep_trial"] for r in runs) == [0, 1, 2, 3]
    assert {r["runner"] for r in runs} == {"local"}
    assert "the project changed" not in done.stdout


@pytest.mark.slow
def test_ctrl_c_cancels_every_parallel_trial_in_flight_and_resume_tries_each_again(tmp_path):
    # Each fit sleeps 5 s, so both trials are still in their fit when the signal comes, on a
    # loaded CI machine too (at 2 s, one once finished first).
    write_project(tmp_path, **{"params.toml": "[fit]\nscale = 1.0\nleaves = 15\nsleep = 5\n"})
    args = [sys.executable, "-m", "workbench", "-w", str(tmp_path), "sweep", "tiny", "--runner", "local",
            "--param", "fit.leaves=15,31,63,127", "--sampler", "grid", "--name", "both", "--jobs", "2"]
    process = subprocess.Popen(args, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    out = Lines(process.stdout)
    # trials 1 and 2 in flight at once (trial 0 ran alone): both inside their fit stage
    out.wait_for("fit (run 2) started", timeout=90)
    out.wait_for("fit (run 3) started", timeout=30)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert "--resume both" in out.text()
    runs = runs_json(tmp_path)  # trials 1 and 2 start at once: either may get run 2
    assert sorted((r["sweep_trial"], r["status"]) for r in runs) == [(0, "succeeded"), (1, "cancelled"),
                                                                      (2, "cancelled")]

    resume = [sys.executable, "-m", "workbench", "-w", str(tmp_path), "sweep", "tiny", "--resume", "both", "-q",
              "--jobs", "2", "--json"]
    done = subprocess.run(resume, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    by_number = {t["number"]: t for t in report["trials"]}
    assert [by_number[n]["state"] for n in (0, 1, 2)] == ["complete", "cancelled", "cancelled"]
    complete = [t for t in report["trials"] if t["state"] == "complete"]
    assert sorted(t["params"]["fit.leaves"] for t in complete) == [15, 31, 63, 127]  # both cancelled points again
    assert report["done"] == 4 and not report["stopped"]
    # Six runs, each recorded once with a final status (leaves = 127 scores below the gate).
    assert sorted(r["status"] for r in runs_json(tmp_path)) == ["cancelled"] * 2 + ["gate_failed"] + ["succeeded"] * 3


@pytest.mark.slow
def test_a_sweep_whose_process_was_killed_resumes_with_the_killed_trial_tried_again(tmp_path):
    write_project(tmp_path, **{"params.toml": "[fit]\nscale = 1.0\nleaves = 15\nsleep = 1.5\n"})
    args = [sys.executable, "-m", "workbench", "-w", str(tmp_path), "sweep", "tiny", "--runner", "local",
            "--param", "fit.leaves=15,31,63", "--sampler", "grid", "--name", "killed"]
    process = subprocess.Popen(args, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    out = Lines(process.stdout)
    out.wait_for("▶ run 2 ", timeout=60)
    process.kill()  # no chance to record anything: the run stays running, the trial RUNNING in the study
    process.wait(timeout=30)
    status = subprocess.run([sys.executable, "-m", "workbench", "-w", str(tmp_path), "sweep", "status", "tiny"],
                            cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60)
    assert "killed · tiny · 1/3 trials · stopped" in status.stdout, status.stdout + status.stderr

    resume = [sys.executable, "-m", "workbench", "-w", str(tmp_path), "sweep", "tiny", "--resume", "killed"]
    done = subprocess.run(resume, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {r["id"]: r["status"] for r in runs_json(tmp_path)}[2] == "interrupted"
    assert "the project changed" not in done.stdout  # the killed trial read nothing to compare with
    status = subprocess.run([sys.executable, "-m", "workbench", "-w", str(tmp_path), "sweeps", "--json"],
                            cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60)
    [report] = json.loads(status.stdout)
    assert [t["state"] for t in report["trials"]] == ["complete", "cancelled", "complete", "complete"]
    assert report["trials"][2]["params"] == report["trials"][1]["params"]
    assert sorted(t["params"]["fit.leaves"] for t in report["trials"] if t["state"] == "complete") == [15, 31, 63]


@pytest.mark.parametrize("args, code, says", [
    (["--param", "fit.scale"], 64, "write KEY=SPEC"),
    (["--param", "fit.scale=2..1"], 64, "must be below the high bound"),
    (["--param", "fit.scal=1,2"], 64, "key 'fit.scal' is not in params.toml"),
    (["--param", "other.x=1,2"], 64, "key 'other.x' is not in params.toml"),
    (["--param", "fit=1,2"], 64, "is a table, not a single value"),
    (["--param", "params.yaml:fit.x=1,2"], 64, "params.yaml"),
    (["--param", "fit.scale=0.5..2", "--sampler", "grid"], 64, "grid sampler needs a list of values"),
    (["--param", "fit.scale=1,2", "--jobs", "0"], 64, "--jobs 0: trials at once must be at least 1"),
    (["--param", "fit.scale=1,2", "--name", "no spaces"], 64, "--name"),
    (["--resume", "nope"], 64, "no sweep named 'nope'"),
    (["--resume", "nope", "--jobs", "-1"], 64, "--jobs -1: trials at once must be at least 1"),
    (["--resume", "nope", "--param", "fit.scale=1,2"], 64, "only --trials may change"),
    ([], 64, "at least one --param"),
])
def test_a_bad_sweep_request_says_what_is_wrong_and_runs_nothing(tmp_path, capsys, args, code, says):
    write_project(tmp_path)
    capsys.readouterr()
    assert sweep(tmp_path, *args) == code
    assert says in capsys.readouterr().err.replace("\n", " ")
    assert WorkbenchSession(tmp_path, runner="local").runs() == []


def test_a_key_no_stage_reads_is_refused(tmp_path, capsys):
    write_project(tmp_path, **{"params.toml": PARAMS + "\n[unused]\nx = 1\n"})
    assert sweep(tmp_path, "--param", "unused.x=1,2") == 64
    assert "no stage of tiny reads params.toml:unused.x" in capsys.readouterr().err.replace("\n", " ")


def test_a_bad_sweep_section_in_the_manifest_is_a_manifest_error(tmp_path, capsys):
    write_project(tmp_path, **{"workbench.toml": MANIFEST + '\n[sweep]\nparams = ["fit.scale=3..1"]\n'})
    assert sweep(tmp_path) == 3
    err = capsys.readouterr().err.replace("\n", " ")
    assert "sweep.params" in err and "must be below the high bound" in err


def test_a_seeded_sweep_resumed_for_more_trials_draws_new_values_not_its_first_ones_again(tmp_path, capsys):
    write_project(tmp_path)
    code, first = sweep_json(tmp_path, capsys, "--param", "fit.scale=0.5..2", "--trials", "2", "--seed", "7",
                             "--sampler", "random", "--name", "seeded")
    assert code == 0
    code, resumed = sweep_json(tmp_path, capsys, "--resume", "seeded", "--trials", "4")
    assert code == 0
    values = [t["params"]["fit.scale"] for t in resumed["trials"]]
    assert len(values) == 4 and values[:2] == [t["params"]["fit.scale"] for t in first["trials"]]
    # The resumed trials drew on from where the study was: a sampler made again with the same
    # seed replayed trials 0 and 1's values (and reused their stages).
    assert not set(values[2:]) & set(values[:2]), values

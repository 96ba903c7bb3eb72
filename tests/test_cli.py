"""The `workbench` command as a user runs it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_pipeline_local import write_project


def wb(workspace: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", "--workspace", str(workspace), *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    write_project(tmp_path)
    return tmp_path


def test_run_then_list_show_and_lineage(ws):
    done = wb(ws, "run", "tiny", "--runner", "local", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "succeeded" and record["gates_passed"] is True

    runs = json.loads(wb(ws, "runs", "--json").stdout)
    assert [(r["id"], r["status"], r["primary_metric"], r["gates_passed"]) for r in runs] == [
        (record["id"], "succeeded", 0.75, 1)]
    narrow = wb(ws, "runs", env={"COLUMNS": "60"}).stdout.splitlines()
    assert "✓ succeeded" in narrow[1] and " 0.75 " in narrow[1], "only the project column gives way"
    shown = json.loads(wb(ws, "show", str(record["id"]), "--json").stdout)
    assert [s["stage"] for s in shown["stages"]] == ["prep", "fit"]
    lineage = json.loads(wb(ws, "lineage", str(record["id"]), "--json").stdout)
    fit = next(s for s in lineage["stages"] if s["stage"] == "fit")
    assert {f["path"] for f in fit["inputs"]} == {"fit.py", "params.toml"}
    text = wb(ws, "lineage", str(record["id"])).stdout
    assert "params.toml" in text and "model.json (model)" in text


def test_human_output_shows_stages_metrics_and_gates(ws):
    done = wb(ws, "run", "tiny", "--runner", "local")
    assert "✓ prep succeeded" in done.stdout and "score >= 0.5" in done.stdout and "✓ pass" in done.stdout
    again = wb(ws, "run", "tiny", "--runner", "local")
    assert "↺ prep reused from run 1" in again.stdout


def test_gate_failure_exits_2_with_the_reason(tmp_path):
    write_project(tmp_path, **{"params.toml": "[fit]\nscale = 0.2\n"})
    done = wb(tmp_path, "run", "tiny", "--runner", "local")
    assert done.returncode == 2
    assert "gate failed: score >= 0.5 (0.1 is not >= 0.5)" in done.stdout


def test_failed_stage_exits_1(tmp_path):
    write_project(tmp_path, **{"prep.py": "raise SystemExit('no data')\n"})
    done = wb(tmp_path, "run", "tiny", "--runner", "local", "-q")
    assert done.returncode == 1
    assert "stage prep failed: exited with code 1" in done.stdout and "no data" in done.stdout


def test_bad_manifest_is_one_clear_line_without_traceback(tmp_path):
    write_project(tmp_path)
    manifest = tmp_path / "tiny" / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('inputs = ["fit.py"', 'imputs = ["fit.py"'))
    done = wb(tmp_path, "run", str(tmp_path / "tiny"), "--runner", "local")
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {manifest}: stages.fit.imputs: unknown key (expected one of: command, cpus, depends_on, gpus, inputs, "
        "memory, outputs, params, predictions, timeout_s)"]


def test_unknown_project_and_unknown_run(ws):
    done = wb(ws, "run", "nope")
    assert done.returncode == 3 and "no project 'nope'" in done.stderr and "projects: tiny" in done.stderr
    shown = wb(ws, "show", "99")
    assert shown.returncode == 3 and "run 99 not found" in shown.stderr


def test_missing_docker_engine_falls_back_to_local_and_says_so(ws):
    env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    done = wb(ws, "run", "tiny", env=env)
    assert done.returncode == 0
    notes = [line for line in done.stderr.splitlines() if "Docker" in line]
    assert len(notes) == 1 and "running stages as local processes" in notes[0].lower()
    assert json.loads(wb(ws, "runs", "--json").stdout)[0]["runner"] == "local"

    forced = wb(ws, "run", "tiny", "--runner", "docker", env=env)
    assert forced.returncode == 3 and "no Docker engine is reachable" in forced.stderr
    assert "Traceback" not in forced.stderr


def test_doctor_reports_each_check(ws):
    done = wb(ws, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert {"workbench", "workspace", "projects", "lineage", "docker"} <= set(checks)
    assert checks["projects"]["level"] == "ok" and "tiny" in checks["projects"]["detail"]


def test_projects_lists_invalid_ones_with_their_error(ws):
    (ws / "broken").mkdir()
    (ws / "broken" / "workbench.toml").write_text("[project]\n")
    listed = {p["name"]: p for p in json.loads(wb(ws, "projects", "--json").stdout)}
    assert listed["tiny"]["error"] is None
    assert "project.name: is required" in listed["broken"]["error"]


LONG_METRIC = "statistic_of_a_rather_long_metric_name_that_a_ci_log_must_show_whole_" + "x" * 30


def test_piped_output_uses_the_full_width_not_80_columns(tmp_path):
    """Issue 11 item 11: a CI log or a pipe got tables cut to 80 columns ("statis…")."""
    write_project(tmp_path, **{"fit.py": FIT_WITH_LONG_METRIC})
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run([sys.executable, "-m", "workbench", "--workspace", str(tmp_path), "run", "tiny",
                           "--runner", "local", "-q"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert LONG_METRIC in done.stdout and "…" not in done.stdout, done.stdout
    shown = subprocess.run([sys.executable, "-m", "workbench", "--workspace", str(tmp_path), "show", "1"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert LONG_METRIC in shown.stdout
    # COLUMNS still wins when set: a user who asks for 60 columns gets them.
    narrow = wb(tmp_path, "show", "1", env={"COLUMNS": "60"})
    assert LONG_METRIC not in narrow.stdout and LONG_METRIC[:40] in narrow.stdout


FIT_WITH_LONG_METRIC = f"""
import json, wb
data = open(wb.upstream("prep", "clean.txt")).read()
json.dump({{"data": data}}, open(wb.output_path("model.json"), "w"))
wb.log_artifact("model.json", "model")
wb.log_metrics({{"score": 0.75, "{LONG_METRIC}": 1.0}})
"""


def test_usage_errors_exit_64_not_the_gate_failed_code(ws):
    """Issue 11 item 12: a usage error exited 2, the code the README gives "a gate failed"."""
    for args in (["run"], ["run", "tiny", "--runner", "nowhere"], ["promote", "tiny", "one", "--to", "staging"],
                 ["no-such-command"], ["mirror", "status", "--bogus"]):
        done = wb(ws, *args)
        assert done.returncode == 64, (args, done.returncode, done.stderr)
        assert "usage:" in done.stderr and "Traceback" not in done.stderr


def test_workspace_option_works_after_the_subcommand(ws, tmp_path_factory):
    """Issue 11 item 12: `workbench run tiny -w WS` was a usage error; global options go anywhere."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    run = subprocess.run([sys.executable, "-m", "workbench", "run", "tiny", "-w", str(ws), "--runner", "local",
                          "--json"], capture_output=True, text=True, cwd=elsewhere, timeout=120)
    assert run.returncode == 0, run.stderr
    listed = subprocess.run([sys.executable, "-m", "workbench", "runs", "--json", "--workspace", str(ws)],
                            capture_output=True, text=True, cwd=elsewhere, timeout=120)
    assert [r["id"] for r in json.loads(listed.stdout)] == [json.loads(run.stdout)["id"]]
    status = subprocess.run([sys.executable, "-m", "workbench", "mirror", "status", "--json", "-w", str(ws)],
                            capture_output=True, text=True, cwd=elsewhere, timeout=120)
    assert status.returncode == 0 and json.loads(status.stdout)["pending"] >= 1
    # After the subcommand it overrides one given before it, as the nearer one.
    both = subprocess.run([sys.executable, "-m", "workbench", "-w", str(elsewhere), "runs", "--json", "-w", str(ws)],
                          capture_output=True, text=True, cwd=elsewhere, timeout=120)
    assert len(json.loads(both.stdout)) == 1


@pytest.mark.docker
def test_a_local_base_image_is_used_without_trying_a_pull_and_waits_are_said(ws, tmp_path, docker_engine,
                                                                             docker_base_image):
    """Issue 11 item 10: every command tried to pull python:3.11-slim first and printed the DNS
    failure before using the offline image; a quiet run said nothing while a worker started."""
    from workbench.adapters.docker_images import DEFAULT_BASE_IMAGE

    if docker_base_image == DEFAULT_BASE_IMAGE:
        pytest.skip(f"{DEFAULT_BASE_IMAGE} is here: the offline case does not arise")
    env = {"WORKBENCH_CACHE_DIR": str(tmp_path / "cache"), "WORKBENCH_BASE_IMAGE": ""}
    loud = wb(ws, "run", "tiny", "--runner", "docker", env=env)
    assert loud.returncode == 0, loud.stdout + loud.stderr
    assert "pull" not in loud.stdout + loud.stderr, "a local base image needs no registry"
    (ws / "tiny" / "data.txt").write_text("d\ne\n")  # prep runs again, in a new process's warm worker
    quiet = wb(ws, "run", "tiny", "--runner", "docker", "-q", "--stage", "prep", env=env)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "starting a warm worker for tiny" in quiet.stdout, "-q still says what the run waits for"


@pytest.mark.docker
def test_a_failed_pull_is_not_retried_by_the_next_command(ws, tmp_path, docker_engine):
    manifest = ws / "tiny" / "workbench.toml"
    manifest.write_text(manifest.read_text() + '\n[environment]\nbase_image = "workbench-test/never-pulled:1"\n')
    env = {"WORKBENCH_CACHE_DIR": str(tmp_path / "cache")}
    first = wb(ws, "run", "tiny", "--runner", "docker", env=env)
    assert first.returncode == 1 and "pulling workbench-test/never-pulled:1" in first.stdout
    assert "could not be pulled" in first.stdout
    again = wb(ws, "run", "tiny", "--runner", "docker", env=env)
    assert again.returncode == 1 and "pulling" not in again.stdout, again.stdout
    assert "not tried again for 10 more minutes" in again.stdout
    assert "workbench-test/never-pulled:1" in json.loads((tmp_path / "cache" / "pull-failures.json").read_text())


def test_doctor_names_a_pull_that_failed_a_moment_ago(ws, tmp_path):
    from workbench.adapters.pull_failures import PullFailures

    PullFailures(tmp_path / "cache" / "pull-failures.json").remember("python:3.11-slim", "no such host")
    done = wb(ws, "doctor", "--json", env={"WORKBENCH_CACHE_DIR": str(tmp_path / "cache")})
    registry = [c for c in json.loads(done.stdout) if c["name"] == "registry"]
    if not registry and not any(c["name"] == "docker" and c["level"] == "ok" for c in json.loads(done.stdout)):
        pytest.skip("no Docker engine: doctor checks no registry")
    assert len(registry) == 1 and "python:3.11-slim" in registry[0]["detail"] and "no such host" in registry[0]["detail"]

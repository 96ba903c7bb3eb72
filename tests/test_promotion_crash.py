"""A real `workbench promote` killed at each point between its decision and its last write,
and two real processes promoting to one alias at once.

WORKBENCH_CRASH_AT makes the process exit on the spot (os._exit: no cleanup runs), as a kill -9
would. Whatever the point, the next command of any kind (`models`, `runs`, `history --verify`)
must leave the store, the audit anchor and the deploy pointer agreeing, and say what it repaired.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_pipeline_local import write_project
from tests.test_registry import run_with_scale
from workbench.services.faults import CRASH_EXIT
from workbench.services.session import WorkbenchSession

pytestmark = pytest.mark.slow


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """v1 holds staging (deployed); v2 is registered."""
    write_project(tmp_path)
    session = WorkbenchSession(tmp_path, runner="local")
    for scale in (1.5, 1.8):
        run_with_scale(session, tmp_path, scale)
    assert session.registry.promote("tiny", 1, "staging").applied
    return tmp_path


def deployed(ws: Path, alias: str = "staging") -> int | None:
    try:
        return json.loads((ws / ".workbench" / "deploy" / "tiny" / alias / "metadata.json").read_text())["version"]
    except FileNotFoundError:
        return None


def stored(ws: Path) -> dict:
    return json.loads(wb(ws, "models", "tiny", "--json").stdout)


def crash_at(ws: Path, point: str) -> None:
    done = wb(ws, "promote", "tiny", "2", "--to", "staging", "--yes", env={"WORKBENCH_CRASH_AT": point})
    assert done.returncode == CRASH_EXIT, done.stdout + done.stderr


@pytest.mark.parametrize("point, committed", [
    ("before_commit", False), ("after_commit", True), ("before_anchor", True), ("before_switch", True),
    ("after_switch", True)])
def test_the_next_command_restores_agreement_after_a_crash(ws, point, committed):
    crash_at(ws, point)
    expected = 2 if committed else 1
    if point in ("after_commit", "before_anchor", "before_switch"):
        assert deployed(ws) == 1  # the store moved on, the pointer did not: what the crash leaves

    nxt = wb(ws, "runs", "tiny")  # a command that is not about models at all
    assert nxt.returncode == 0, nxt.stderr
    if point in ("after_commit", "before_anchor"):
        assert "the last commit's anchor write was interrupted (a crash); re-verified and repaired" in nxt.stderr
    if point in ("after_commit", "before_anchor", "before_switch"):
        assert ("tiny staging: the deploy pointer held version 1, the registry version 2 (a promotion stopped "
                "before switching it); repaired") in nxt.stderr, nxt.stderr
    else:
        assert nxt.stderr == ""
    assert deployed(ws) == expected
    holders = {m["version"]: m["status"] for m in stored(ws)}
    assert holders[expected] == "staging"

    verify = wb(ws, "history", "tiny", "--verify")
    assert verify.returncode == 0 and verify.stderr == "", verify.stdout + verify.stderr
    rows = 2 if committed else 1
    assert f"✓ audit trail intact: {rows} rows of tiny, chain of {rows} rows verified" in verify.stdout


def test_verify_as_the_first_command_after_a_crash_says_it_repaired_the_anchor(ws):
    crash_at(ws, "after_commit")
    verify = wb(ws, "history", "tiny", "--verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "anchor write was interrupted (a crash); re-verified and repaired" in verify.stderr
    assert "✓ audit trail intact: 2 rows of tiny, chain of 2 rows verified" in verify.stdout
    assert deployed(ws) == 2


def test_models_notices_a_pointer_that_disagrees_with_the_store(ws):
    crash_at(ws, "before_switch")
    listing = wb(ws, "models", "tiny")
    assert listing.returncode == 0
    assert "tiny staging: the deploy pointer held version 1, the registry version 2" in listing.stderr
    assert deployed(ws) == 2


def test_a_pointer_that_cannot_be_repaired_is_reported(ws):
    crash_at(ws, "before_switch")
    model = json.loads(wb(ws, "models", "tiny", "--json", env={"WORKBENCH_CRASH_AT": "none"}).stdout)
    # (that command repaired it; break it again with the model file gone, the way a cleanup would)
    os.unlink(ws / ".workbench" / "deploy" / "tiny" / "staging")
    path = next(m["artifact_path"] for m in model if m["version"] == 2)
    os.chmod(path, 0o644)
    os.unlink(path)
    listing = wb(ws, "models", "tiny")
    assert ("tiny staging: the deploy pointer holds nothing, the registry version 2, and it cannot be repaired: "
            "the model file of version 2 is gone") in listing.stderr, listing.stderr


def test_two_processes_promoting_to_one_alias_one_wins_one_is_refused_both_audited(ws):
    """Both look (the preview) before either applies: the second to apply is refused."""
    go = ws / "go"
    env = {**os.environ, "WORKBENCH_WAIT_AT": f"before_apply:{go}", "WORKBENCH_USER": "racer"}
    procs = [subprocess.Popen([sys.executable, "-m", "workbench", "-w", str(ws), "promote", "tiny", v, "--to",
                               "production", "--yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for v in ("1", "1")]
    deadline = time.monotonic() + 60
    while len(list(ws.glob("go.*.ready"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    go.touch()
    results = [(p.wait(60), *p.communicate()) for p in procs]
    codes = sorted(code for code, _out, _err in results)
    assert codes == [0, 4], results
    loser = next(out for code, out, _err in results if code == 4)
    assert "production moved from nobody to v1 since you looked; review and try again" in loser
    history = json.loads(wb(ws, "history", "tiny", "--json").stdout)
    assert [(e["action"], e["alias"]) for e in history[:2]] == [("refuse", "production"), ("promote", "production")]
    assert deployed(ws, "production") == 1
    assert wb(ws, "history", "tiny", "--verify").returncode == 0

"""`workbench compare` hides the built-in per-group metrics (`group.<col>.<value>.<stat>`: two
dozen columns on the example) unless --all, or a --sort / --where names one; it says how many
it hid. The TUI's compare view reads the same table model (CompareService), so it hides the same."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from workbench.cli.main import main
from workbench.services.compare import CompareRequest
from workbench.services.session import WorkbenchSession

MANIFEST = """
[project]
name = "fair"
primary_metric = "auc"

[stages.evaluate]
command = "python evaluate.py"
inputs = ["evaluate.py", "rate.txt"]
"""

EVALUATE = """
import wb
rate = float(open("rate.txt").read())
wb.log_metrics({"auc": 0.8 + rate / 10, "group.gender.f.positive_rate": rate,
                "group.gender.m.positive_rate": rate / 2, "group.senior.1.positive_rate": 1 - rate})
"""
GROUP = ["group.gender.f.positive_rate", "group.gender.m.positive_rate", "group.senior.1.positive_rate"]


@pytest.fixture(scope="module")
def fair(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fair-ws")
    project = root / "fair"
    project.mkdir()
    (project / "workbench.toml").write_text(textwrap.dedent(MANIFEST))
    (project / "evaluate.py").write_text(textwrap.dedent(EVALUATE))
    session = WorkbenchSession(root, runner="local")
    for rate in (0.2, 0.6):
        (project / "rate.txt").write_text(str(rate))
        assert str(session.run("fair").status) == "succeeded"
    return root


def compare(capsys, root: Path, *args: str) -> str:
    code = main(["-w", str(root), "compare", "fair", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_per_group_metrics_are_hidden_by_default_and_said(fair, capsys):
    out = compare(capsys, fair)
    header = out.splitlines()[0].split()
    assert header[3:] == ["auc"], header
    assert "3 per-group metrics hidden; --all shows them" in out


def test_all_shows_them(fair, capsys):
    out = compare(capsys, fair, "--all")
    assert out.splitlines()[0].split()[3:] == ["auc", *GROUP]
    assert "per-group metrics hidden" not in out


def test_a_group_metric_named_by_sort_or_where_is_shown(fair, capsys):
    out = compare(capsys, fair, "--sort", "-group.gender.f.positive_rate")
    assert out.splitlines()[0].split()[3:] == ["auc", "group.gender.f.positive_rate"]
    assert "2 per-group metrics hidden; --all shows them" in out
    out = compare(capsys, fair, "--where", "group.senior.1.positive_rate < 0.5")
    lines = out.splitlines()
    assert lines[0].split()[3:] == ["auc", "group.senior.1.positive_rate"] and len(lines) == 3, out


def test_json_lists_what_it_hid_and_the_tui_model_hides_the_same(fair, capsys):
    data = json.loads(compare(capsys, fair, "--json"))
    assert data["metrics"] == ["auc"] and data["hidden_metrics"] == GROUP
    assert all(set(run["metrics"]) == {"auc"} for run in data["runs"])
    # What the TUI's compare screen loads (run_actions: the project's newest runs).
    table = WorkbenchSession(fair).compare(CompareRequest(project="fair"))
    assert [c.label for c in table.metrics] == ["auc"] and list(table.hidden_metrics) == GROUP

"""`workbench compare` on a real store: three local runs of a tiny project whose stages record
params (params.json, through wb.log_params) and metrics; the table, --all, --sort, --where,
--json, --csv, and bad input as one line naming it."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path

import pytest

from tests.test_cli import wb
from workbench.cli.main import main
from workbench.services.session import WorkbenchSession

MANIFEST = """
[project]
name = "sweep"
primary_metric = "auc"

[stages.train]
command = "python train.py"
inputs = ["train.py", "params.json"]

[stages.evaluate]
command = "python evaluate.py"
inputs = ["evaluate.py"]
depends_on = ["train"]
"""

TRAIN = """
import json, wb
params = json.load(open("params.json"))
wb.log_params(params)
wb.log_metrics({"train_auc": 0.7 + params["learning_rate"], "threshold": 0.5})
"""

# Evaluate records a metric named like one of train's params (threshold) and one that a later
# stage overwrites an earlier stage's value of (train_auc: the last stage wins, as in a run's metrics).
EVALUATE = """
import json, wb
params = json.load(open(wb.upstream("train", "params.json")))
wb.log_metrics({"auc": round(0.8 + params["learning_rate"] / 2, 6), "train_auc": 0.99 if params["num_leaves"] > 40 else 0.9})
"""

SWEEP = [  # learning_rate and num_leaves differ; seed, objective and threshold do not
    {"learning_rate": 0.05, "num_leaves": 31, "seed": 7, "objective": "binary", "threshold": 0.5},
    {"learning_rate": 0.2, "num_leaves": 31, "seed": 7, "objective": "binary", "threshold": 0.5},
    {"learning_rate": 0.1, "num_leaves": 63, "seed": 7, "objective": "binary", "threshold": 0.5},
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("compare-ws"))


def write_sweep(root: Path) -> Path:
    """Three recorded runs of the sweep project (local runner); returns the workspace."""
    project = root / "sweep"
    project.mkdir()
    for name, text in {"workbench.toml": MANIFEST, "train.py": TRAIN, "evaluate.py": EVALUATE}.items():
        (project / name).write_text(textwrap.dedent(text))
    session = WorkbenchSession(root, runner="local")
    for params in SWEEP:
        (project / "params.json").write_text(json.dumps(params))
        record = session.run("sweep")
        assert str(record.status) == "succeeded", record.reason
    return root


def compare(capsys, root: Path, *args: str) -> tuple[int, str, str]:
    code = main(["-w", str(root), "compare", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_default_shows_the_params_that_differ_and_says_which_are_hidden(sweep, capsys):
    code, out, err = compare(capsys, sweep)
    assert code == 0, err
    header, *rows = [line for line in out.splitlines() if line.strip()]
    names = header.split()
    assert names[:3] == ["run", "status", "started"]
    # metric:threshold keeps its prefix although the param threshold is hidden: a label never
    # changes with what is shown, so --sort and --where name the same column either way
    assert names[3:] == ["learning_rate", "num_leaves", "auc", "metric:threshold", "train_auc"]
    assert [r.split()[0] for r in rows[:3]] == ["3", "2", "1"]  # newest first
    assert "0.1" in rows[0] and "63" in rows[0]
    assert "3 equal params hidden (objective=binary, seed=7, threshold=0.5; --all shows them)" in out
    assert "seed" not in header and "objective" not in header


def test_all_shows_every_param_and_a_clash_is_prefixed(sweep, capsys):
    code, out, err = compare(capsys, sweep, "--all", "sweep")
    assert code == 0, err
    header = out.splitlines()[0].split()
    assert header[3:] == ["learning_rate", "num_leaves", "objective", "seed", "param:threshold", "auc",
                          "metric:threshold", "train_auc"]
    assert "hidden" not in out


def test_sort_descending_and_by_a_param(sweep, capsys):
    code, out, _ = compare(capsys, sweep, "--sort", "-auc", "--json")
    assert code == 0
    data = json.loads(out)
    assert [r["id"] for r in data["runs"]] == [2, 3, 1] and data["sort"] == "-auc"
    code, out, _ = compare(capsys, sweep, "--sort", "learning_rate", "--json")
    assert [r["params"]["learning_rate"] for r in json.loads(out)["runs"]] == [0.05, 0.1, 0.2]
    # the last stage's value wins: evaluate's train_auc, not train's
    assert {r["id"]: r["metrics"]["train_auc"] for r in json.loads(out)["runs"]} == {1: 0.9, 2: 0.9, 3: 0.99}


def test_where_filters_with_and_or_on_params_and_metrics(sweep, capsys):
    def ids(*wheres: str) -> list[int]:
        args = [a for w in wheres for a in ("--where", w)]
        code, out, err = compare(capsys, sweep, *args, "--json")
        assert code == 0, err
        return [r["id"] for r in json.loads(out)["runs"]]

    assert ids("auc > 0.84") == [3, 2]
    assert ids("auc > 0.84", "num_leaves = 31") == [2]
    assert ids("learning_rate <= 0.05 or num_leaves > 40") == [3, 1]
    assert ids("objective = binary and metric:threshold = 0.5") == [3, 2, 1]
    assert ids("objective != 'binary'") == []
    assert ids("learning_rate = 0.10") == [3]  # numbers compare as numbers
    # a value that looks like SQL is only ever a bound value
    assert ids("objective = \"x' OR 1=1 --\"") == []


def test_csv_and_limit(sweep, capsys):
    code, out, _ = compare(capsys, sweep, "--csv", "--limit", "2")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["run", "status", "started", "learning_rate", "num_leaves", "auc", "metric:threshold",
                       "train_auc"]
    assert [r[0] for r in rows[1:]] == ["3", "2"]
    assert rows[1][3:5] == ["0.1", "63"]


def test_run_ids_compare_only_those(sweep, capsys):
    code, out, _ = compare(capsys, sweep, "1", "3", "--json")
    data = json.loads(out)
    assert [r["id"] for r in data["runs"]] == [3, 1]
    assert data["params"] == ["learning_rate", "num_leaves"] and data["equal_params"]["seed"] == 7


@pytest.mark.parametrize("args, exit_code, message", [
    (["--where", "auc >"], 64, "--where 'auc >': a value is missing after 'auc' >"),
    (["--where", "auc > 0.8 and"], 64, "--where 'auc > 0.8 and': a comparison is missing at the end"),
    (["--where", "acu > 0.8"], 64, "--where: no param or metric named 'acu'; did you mean 'auc'?"),
    (["--where", "threshold > 0.1"], 64, "'threshold' is both a param and a metric: say param:threshold or "
                                         "metric:threshold"),
    (["--where", "auc > high"], 64, "metric 'auc' is a number; 'high' is not"),
    (["--sort", "-acu"], 64, "--sort: no param or metric named 'acu'; did you mean 'auc'?"),
    (["--limit", "-1"], 64, "--limit -1"),
    (["9"], 3, "no run 9 recorded"),
    (["nope"], 3, "no project 'nope'"),
])
def test_bad_input_is_one_line_naming_it(sweep, args, exit_code, message):
    done = wb(sweep, "compare", *args)
    assert done.returncode == exit_code, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_numbers_print_as_run_and_card_print_them(tmp_path, capsys):
    """A whole-number metric read `1475.0` and `22.0` in the human table (a new user's compare
    of the example): numbers print as everywhere else, `1,475` and `22`."""
    project = tmp_path / "counts"
    project.mkdir()
    (project / "workbench.toml").write_text(textwrap.dedent("""
        [project]
        name = "counts"

        [stages.train]
        command = "python train.py"
        inputs = ["train.py", "params.json"]
    """))
    (project / "train.py").write_text(textwrap.dedent("""
        import json, wb
        params = json.load(open("params.json"))
        wb.log_params(params)
        wb.log_metrics({"rows": 1475.0, "trees": 22.0, "auc": 0.84871 + params["lr"]})
    """))
    session = WorkbenchSession(tmp_path, runner="local")
    for lr in (0.01, 0.02):
        (project / "params.json").write_text(json.dumps({"lr": lr}))
        assert str(session.run("counts").status) == "succeeded"
    code, out, err = compare(capsys, tmp_path, "counts")
    assert code == 0, err
    header, *rows = [line for line in out.splitlines() if line.strip()]
    first = rows[0].split()
    cells = dict(zip(header.split()[3:], first[-4:]))
    assert cells == {"lr": "0.02", "auc": "0.8687", "rows": "1,475", "trees": "22"}, out

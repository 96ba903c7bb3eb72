"""A row with several fields missing is named once, with its real field count.

DuckDB's reject table reports a short row once per missing column, each entry with the number
of fields read up to that column ("Found: 2", "Found: 3", ...), so a 2-field line of a 7-column
file read "line 3: 6 fields where the header has 7; 3 fields ...; 4 fields ..." in a run's
warnings and in a drift batch's findings.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from tests.test_cli import wb

MANIFEST = """
[project]
name = "payroll"

[data]
paths = ["data/people.csv"]
incoming = "data/incoming"

[stages.validate]
command = "python validate.py"
inputs = ["validate.py", "data/people.csv"]
"""

HEADER = "wage,education,experience,ethnicity,smsa,region,parttime\n"
ROW = "{},12,{},cauc,yes,south,no\n"


def workbench(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return wb(ws, *args, env={"COLUMNS": "300", "WORKBENCH_MLFLOW_SYNC": "off"})


def payroll(root: Path) -> Path:
    project = root / "payroll"
    (project / "data" / "incoming").mkdir(parents=True)
    (project / "workbench.toml").write_text(textwrap.dedent(MANIFEST))
    (project / "validate.py").write_text("import wb\nwb.log_metrics({'ok': 1})\n")
    rows = "".join(ROW.format(300 + i, i % 40) for i in range(60))
    # Line 3 has 2 of its 7 fields.
    (project / "data" / "people.csv").write_text(HEADER + ROW.format(100, 1) + "410.5,12\n" + rows)
    return project


def test_a_run_names_a_short_row_once_with_its_field_count(tmp_path):
    payroll(tmp_path)
    ran = workbench(tmp_path, "run", "payroll", "--runner", "local")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    expected = ("warning: data/people.csv: 1 row could not be read and is left out of its profile (61 profiled); "
                "line 3: 2 fields where the header has 7\n")
    assert expected in ran.stdout, ran.stdout


def test_a_drift_batch_names_a_short_row_once_with_its_field_count(tmp_path):
    project = payroll(tmp_path)
    rows = "".join(ROW.format(300 + i, i % 40) for i in range(40))
    (project / "data" / "incoming" / "batch.csv").write_text(HEADER + rows + "99.0,12,5\n")
    checked = workbench(tmp_path, "drift", "payroll", "batch.csv")
    assert checked.returncode == 3, checked.stdout + checked.stderr
    assert "1 row could not be read (line 42: 3 fields where the header has 7)" in checked.stdout, checked.stdout
    assert "the reference data/people.csv: 1 row could not be read (line 3: 2 fields where the header has 7)" \
        in checked.stdout, checked.stdout
    assert "where the header has 7;" not in checked.stdout  # one reason per line, never a list of counts

"""Issue 11 item 2: the lineage profile of a data file never stops a run. One malformed row (an
extra or a missing field) used to fail every run before any stage, with DuckDB's CSV sniffer
message about the internal snapshot path, and no `error:` line. Now the rows that can be read
are profiled, the file (by its path in the project) and the lines of the bad rows are a warning
of the run (run output, `show`, JSON, the TUI's run detail), and the project's validate stage
judges the data. A file that cannot be read at all is a warning too."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_tui import asyncio_test, make_app, opened, private_config, static_text, wait_for  # noqa: F401
from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.services.session import WorkbenchSession

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "projects" / "telco-churn"


def workbench(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return wb(ws, *args, env={"COLUMNS": "200"})


@pytest.mark.slow
def test_cli_run_of_the_example_with_an_extra_field_warns_and_lets_validate_judge(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "telco-churn", ignore=shutil.ignore_patterns("incoming"))
    data = tmp_path / "telco-churn" / "data" / "churn.csv"
    lines = data.read_text().splitlines(keepends=True)
    lines[42] = lines[42].rstrip("\n") + ",extra\n"  # line 43 of the file: one field too many
    data.write_text("".join(lines))

    ran = workbench(tmp_path, "run", "telco-churn", "--runner", "local", "-q")
    out = ran.stdout + ran.stderr
    warning = ("data/churn.csv: 1 row could not be read and is left out of its profile (7,042 profiled); "
               "line 43: 21 fields where the header has 20")
    assert f"warning: {warning}" in ran.stdout, out
    assert "snapshots" not in out and "sniff" not in out.lower()
    # The stages ran; the example's validate stage (pandas) is the one that refuses the file.
    assert "validate failed" in ran.stdout and ran.returncode == 1, out

    shown = workbench(tmp_path, "show", "1")
    assert f"warning: {warning}" in shown.stdout
    record = json.loads(workbench(tmp_path, "show", "1", "--json").stdout)
    assert record["warnings"] == [warning]
    (dataset,) = record["datasets"]
    assert dataset["path"] == "data/churn.csv" and dataset["row_count"] == 7042
    assert dataset["problems"] == ["1 row could not be read and is left out of its profile (7,042 profiled)",
                                   "line 43: 21 fields where the header has 20"]


MANIFEST = """
[project]
name = "ledger"

[data]
paths = ["data/*"]

[stages.validate]
command = "python validate.py"
inputs = ["validate.py", "data/*"]
"""

VALIDATE = """
import csv, glob, wb
rows = 0
for path in glob.glob("data/*.csv"):
    with open(path, newline="") as fh:
        rows += sum(1 for _ in csv.DictReader(fh))
wb.log_metrics({"rows": rows})
"""


def ledger(root: Path) -> Path:
    project = root / "ledger"
    (project / "data").mkdir(parents=True)
    (project / "workbench.toml").write_text(textwrap.dedent(MANIFEST))
    (project / "validate.py").write_text(textwrap.dedent(VALIDATE))
    # Line 3 misses a field; line 5 has one too many.
    (project / "data" / "accounts.csv").write_text("id,balance,owner\n1,10.5,ann\n2,3.0\n3,7.25,bob\n4,1.0,cy,x\n")
    (project / "data" / "archive.parquet").write_bytes(b"PAR1 not really a parquet file")
    return project


ACCOUNTS = ("data/accounts.csv: 2 rows could not be read and are left out of its profile (2 profiled); "
            "line 3: 2 fields where the header has 3; line 5: 4 fields where the header has 3")


def test_cli_run_with_a_missing_field_and_an_unreadable_file_succeeds_with_warnings(tmp_path):
    ledger(tmp_path)
    ran = workbench(tmp_path, "run", "ledger", "--runner", "local")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"warning: {ACCOUNTS}" in ran.stdout
    assert "warning: data/archive.parquet: not profiled: cannot read it as a Parquet table: " in ran.stdout
    assert "snapshots" not in ran.stdout + ran.stderr
    record = json.loads(workbench(tmp_path, "show", "1", "--json").stdout)
    assert record["status"] == "succeeded" and len(record["warnings"]) == 2
    profiles = {d["path"]: d for d in record["datasets"]}
    assert profiles["data/accounts.csv"]["row_count"] == 2 and len(profiles["data/accounts.csv"]["columns"]) == 3
    assert profiles["data/archive.parquet"]["row_count"] == 0 and profiles["data/archive.parquet"]["columns"] == []


def test_an_unreadable_profile_is_tried_again_and_a_partial_one_is_kept(tmp_path):
    store = DuckDBLineageStore(tmp_path / "lineage.duckdb")
    broken = tmp_path / "t.parquet"
    broken.write_bytes(b"PAR1 not really")
    first = store.profile_dataset(str(broken), "fp")
    assert not first.readable and first.problems[0].startswith("not profiled: cannot read it as a Parquet table")
    assert str(broken) not in first.problems[0]  # DuckDB's message named the file; the caller names it better
    assert store.known_profile("fp") == first

    import duckdb
    with duckdb.connect() as con:  # the same fingerprint now reads (say the disk came back)
        con.execute(f"COPY (SELECT range AS id FROM range(3)) TO '{broken}' (FORMAT parquet)")
    second = store.profile_dataset(str(broken), "fp")
    assert second.readable and second.row_count == 3 and second.problems == ()
    assert store.known_profile("fp") == second


@asyncio_test
async def test_tui_run_detail_shows_the_profile_warnings(tmp_path):
    ledger(tmp_path)
    record = WorkbenchSession(tmp_path, runner="local").run("ledger")
    assert str(record.status) == "succeeded" and len(record.warnings) == 2
    app = make_app(tmp_path)
    async with app.run_test(size=(200, 45)) as pilot:
        main = await opened(pilot, runs=1)
        await wait_for(pilot, lambda: main.detail.record is not None and main.detail.record.id == record.id,
                       what="the run's detail")
        heading = static_text(main.detail.query_one("#run-heading"), width=400)
        assert f"! {ACCOUNTS}" in heading, heading
        assert "! data/archive.parquet: not profiled: cannot read it as a Parquet table" in heading
        validation = static_text(main.detail.query_one("#validation-view"), width=400)
        assert "line 3: 2 fields where the header has 3" in validation


def test_a_store_from_before_profile_problems_migrates_with_none(tmp_path, monkeypatch):
    """Schema v6 adds datasets.problems; profiles stored before it read back with no problems."""
    import duckdb

    from workbench.adapters import duckdb_schema

    db = tmp_path / "lineage.duckdb"
    version = duckdb_schema.MIGRATIONS.index(duckdb_schema.V6_PROFILE_PROBLEMS)
    with monkeypatch.context() as patched:
        patched.setattr(duckdb_schema, "MIGRATIONS", duckdb_schema.MIGRATIONS[:version])
        DuckDBLineageStore(db)  # opening it migrates, to the older schema here
        with duckdb.connect(str(db)) as con:
            con.execute("INSERT INTO datasets VALUES ('fp-old', 'data/a.csv', 3, [])")
    assert DuckDBLineageStore(db).known_profile("fp-old").problems == ()

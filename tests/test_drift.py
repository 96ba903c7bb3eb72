"""Drift checks through the service, with a real DuckDB file and real local runs: the production
model's training data as the reference, scoring a labelled batch, the retrain (trigger drift,
training data plus batch in its snapshot, the project's file untouched), promotion only by
auto_staging, the cooldown and the daily cap, bad batches, and the CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from workbench.core.model import RunStatus, Trigger
from workbench.services.drift import DriftService
from workbench.services.session import WorkbenchSession

MANIFEST = """
[project]
name = "shop"
primary_metric = "accuracy"

[data]
paths = ["data/sales.csv"]
target = "bought"
incoming = "data/incoming"

[stages.fit]
command = "python fit.py"
inputs = ["fit.py", "data/sales.csv"]
outputs = ["model.json"]

[stages.evaluate]
command = "python evaluate.py"
inputs = ["evaluate.py", "rule.py", "data/sales.csv"]
depends_on = ["fit"]

[gates]
accuracy = ">= 0.6"

[watch]
debounce_ms = 100
ignore = ["data/incoming/**"]

[drift]
score = "python score.py"

[drift.retrain]
on_drift = true
max_decay = 0.2
cooldown_minutes = 60
max_per_day = 3
"""

RULE = """
import csv

def read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))

def accuracy(rows, threshold):
    hits = sum((float(r["amount"]) > threshold) == (r["bought"] == "yes") for r in rows)
    return hits / len(rows)
"""

FIT = """
import json, wb, rule
rows = rule.read("data/sales.csv")
yes = [float(r["amount"]) for r in rows if r["bought"] == "yes"]
no = [float(r["amount"]) for r in rows if r["bought"] == "no"]
threshold = (sum(yes) / len(yes) + sum(no) / len(no)) / 2
json.dump({"threshold": threshold}, open(wb.output_path("model.json"), "w"))
wb.log_artifact("model.json", "model")
wb.log_metrics({"rows": len(rows)})
"""

EVALUATE = """
import json, wb, rule
threshold = json.load(open(wb.upstream("fit", "model.json")))["threshold"]
wb.log_metrics({"accuracy": rule.accuracy(rule.read("data/sales.csv"), threshold)})
"""

SCORE = """
import json, os, sys, wb
sys.path.insert(0, os.getcwd())
import rule
threshold = json.load(open(wb.upstream(os.environ["WB_MODEL_STAGE"], "model.json")))["threshold"]
rows = rule.read(wb.upstream("batch", os.environ["WB_BATCH_FILE"]))
wb.log_metrics({"accuracy": rule.accuracy(rows, threshold)})
print("scored", len(rows), "rows")
"""

COLUMNS = ["amount", "plan", "bought"]


def sales(rows: int, seed: int, shift: float = 0.0, mix=(0.5, 0.3, 0.2), flip: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)
    amount = rng.normal(50 + shift, 10, rows)
    bought = amount + rng.normal(0, 4, rows) > 55
    plans = rng.choice(["basic", "plus", "pro"], rows, p=mix)
    return [{"amount": f"{a:.2f}", "plan": p, "bought": "yes" if b != flip else "no"}
            for a, p, b in zip(amount, plans, bought)]


def write_csv(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_project(root: Path, manifest: str = MANIFEST) -> Path:
    project = root / "shop"
    for name, text in {"workbench.toml": manifest, "rule.py": RULE, "fit.py": FIT, "evaluate.py": EVALUATE,
                       "score.py": SCORE}.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(text))
    write_csv(project / "data" / "sales.csv", sales(1500, seed=1))
    (project / "data" / "incoming").mkdir()
    return project


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    write_project(tmp_path)
    return tmp_path


def in_production(session: WorkbenchSession) -> int:
    record = session.run("shop")
    assert record.status is RunStatus.SUCCEEDED and record.gates_passed, record.reason
    version = session.last_registration[0].version
    assert session.registry.promote("shop", version, "staging", user="test").applied
    assert session.registry.promote("shop", version, "production", user="test").applied
    return version


def batch(ws: Path, name: str, rows: list[dict], columns=COLUMNS) -> Path:
    return write_csv(ws / "shop" / "data" / "incoming" / name, rows, columns)


# -- the loop ----------------------------------------------------------------------------------

def test_a_drifted_batch_retrains_on_training_data_plus_batch_and_promotes_nothing(ws):
    session = WorkbenchSession(ws, runner="local")
    in_production(session)
    service = DriftService(session)
    data_file = ws / "shop" / "data" / "sales.csv"
    before = sha(data_file)

    clean = service.check_batch("shop", batch(ws, "clean.csv", sales(400, seed=7)))
    report = clean.report
    assert clean.fresh and not report.drifted and report.drifted_columns == []
    assert "production version 1 (run 1)" in report.reference and report.reference_rows == 1500
    assert report.decay is not None and report.decay.metric == "accuracy" and not report.decay.decayed
    assert abs(report.decay.drop) < 0.1
    assert not clean.decision.retrain and clean.decision.reason == "no drift and no decay" and not clean.overrides

    drifted_file = batch(ws, "drifted.csv", sales(400, seed=8, shift=15, mix=(0.1, 0.2, 0.7)))
    drifted = service.check_batch("shop", drifted_file)
    assert drifted.report.drifted and drifted.report.drifted_columns == ["amount", "plan"]
    assert drifted.decision.retrain and drifted.decision.cause == "drift"
    (path, training), = drifted.overrides.items()
    assert path == "data/sales.csv" and training.is_file()
    lines = training.read_text().splitlines()
    assert lines[:1501] == data_file.read_text().splitlines()  # the training data, byte for byte
    assert len(lines) == 1 + 1500 + 400 and lines[-1] == drifted_file.read_text().splitlines()[-1]

    record = service.retrain("shop", drifted)
    assert record.status is RunStatus.SUCCEEDED and record.trigger is Trigger.DRIFT
    assert record.changed_paths == ["data/incoming/drifted.csv"]
    (dataset,) = record.datasets
    assert dataset.path == "data/sales.csv" and dataset.row_count == 1900 and dataset.fingerprint == sha(training)
    assert sha(data_file) == before  # the user's data file is never written
    assert {i.path: i.sha256 for i in record.stages[0].inputs}["data/sales.csv"] == sha(training)

    version, created = session.last_registration
    assert created and version.version == 2 and version.data_fingerprints == {"data/sales.csv": sha(training)}
    assert session.registry.aliases("shop") == {"staging": 1, "production": 1}  # nothing promoted
    listed = service.batches("shop")
    assert [b.name for b in listed] == ["drifted.csv", "clean.csv"]
    assert (listed[0].retrain_run_id, listed[0].retrain_status, listed[0].retrain_version,
            listed[0].retrain_version_status) == (record.id, "succeeded", 2, "registered")
    assert listed[0].drifted and listed[0].drifted_columns == 2 and listed[0].compared_columns == 2
    assert listed[1].retrain_run_id is None and listed[1].decay_metric == "accuracy"

    # The same content again (under another name) is not checked twice, nor retrained on.
    again = service.check_batch("shop", batch(ws, "copy.csv", sales(400, seed=8, shift=15, mix=(0.1, 0.2, 0.7))))
    assert not again.fresh and again.batch.id == drifted.batch.id and not again.decision.retrain
    assert service.pending("shop") == []

    # Another drifted batch within the hour: the cooldown holds the retrain back.
    later = service.check_batch("shop", batch(ws, "later.csv", sales(400, seed=9, shift=15, mix=(0.1, 0.2, 0.7))))
    assert later.report.drifted and not later.decision.retrain and "in cooldown" in later.decision.reason
    assert session.runs("shop", limit=10)[0].id == record.id  # no run started


def test_auto_staging_puts_the_retrained_version_in_staging_never_production(tmp_path):
    write_project(tmp_path, MANIFEST + "\n[promotion]\nauto_staging = true\n")
    session = WorkbenchSession(tmp_path, runner="local")
    record = session.run("shop")
    assert session.registry.aliases("shop") == {"staging": 1}  # auto_staging did that
    assert session.registry.promote("shop", 1, "production", user="test").applied
    service = DriftService(session)
    outcome = service.check_batch("shop", batch(tmp_path, "b.csv", sales(400, seed=8, shift=15, mix=(0.1, 0.2, 0.7))))
    retrain = service.retrain("shop", outcome)
    assert retrain.status is RunStatus.SUCCEEDED and record.id < retrain.id
    assert session.registry.aliases("shop") == {"staging": 2, "production": 1}
    entry = session.registry.history("shop", limit=1)[0]
    assert (entry.action, entry.alias, entry.to_version) == ("promote", "staging", 2)
    assert service.batches("shop")[0].retrain_version_status == "staging"


def test_without_production_the_reference_is_the_latest_run_or_the_file(ws):
    session = WorkbenchSession(ws, runner="local")
    service = DriftService(session)
    assert "as it is now" in service.reference("shop").description
    outcome = service.check_batch("shop", batch(ws, "a.csv", sales(300, seed=3)))
    assert "no model version" in outcome.report.decay_note
    session.run("shop")
    reference = service.reference("shop")
    assert "run 1, the latest successful run (no production model yet)" in reference.description
    assert reference.version is not None and reference.version.version == 1
    outcome = service.check_batch("shop", batch(ws, "b.csv", sales(300, seed=4)))
    assert outcome.report.decay is not None  # scored with the latest run's model


def test_decay_on_a_labelled_batch_retrains_without_drift(tmp_path):
    write_project(tmp_path, MANIFEST.replace("on_drift = true", "on_drift = false"))
    session = WorkbenchSession(tmp_path, runner="local")
    in_production(session)
    service = DriftService(session)
    flipped = service.check_batch("shop", batch(tmp_path, "flipped.csv", sales(400, seed=5, flip=True)))
    report = flipped.report
    assert not report.drifted and report.decay.decayed and report.decay.drop > 0.5
    assert flipped.decision.retrain and flipped.decision.cause == "decay"
    assert "accuracy" in flipped.decision.reason and "worse by" in flipped.decision.reason


def test_replace_policy_trains_on_the_batch_alone(tmp_path):
    write_project(tmp_path, MANIFEST.replace('on_drift = true', 'on_drift = true\npolicy = "replace"'))
    session = WorkbenchSession(tmp_path, runner="local")
    in_production(session)
    service = DriftService(session)
    outcome = service.check_batch("shop", batch(tmp_path, "b.csv", sales(400, seed=8, shift=15, mix=(0.1, 0.2, 0.7))))
    record = service.retrain("shop", outcome)
    assert record.datasets[0].row_count == 400 and record.status is RunStatus.SUCCEEDED


def test_the_daily_cap_counts_decided_retrains(tmp_path):
    write_project(tmp_path, MANIFEST.replace("cooldown_minutes = 60", "cooldown_minutes = 0")
                  .replace("max_per_day = 3", "max_per_day = 2"))
    session = WorkbenchSession(tmp_path, runner="local")
    in_production(session)
    service = DriftService(session)
    decisions = [service.check_batch("shop", batch(tmp_path, f"b{i}.csv", sales(300, seed=20 + i, shift=15,
                                                                                 mix=(0.1, 0.2, 0.7)))).decision
                 for i in range(3)]
    assert [d.retrain for d in decisions] == [True, True, False]
    assert "2 retrains in the last 24 h reach the cap (max_per_day 2)" in decisions[2].reason


# -- bad batches ----------------------------------------------------------------------------------

BAD = [
    ("empty file", "", "empty_batch"),
    ("header only", "amount,plan,bought\n", "empty_batch"),
    ("binary", "\x00\x01\x02garbage\xff" * 50, None),  # unreadable, or one odd column: never a crash
    ("missing column", "amount,bought\n50.0,yes\n61.0,no\n", "missing_column"),
    ("text in numbers", "amount,plan,bought\nlots,basic,yes\n61.0,pro,no\n", "type_change"),
]


@pytest.mark.parametrize("case,content,finding", BAD, ids=[b[0] for b in BAD])
def test_bad_batches_are_recorded_findings_not_crashes(ws, case, content, finding):
    session = WorkbenchSession(ws, runner="local")
    in_production(session)
    service = DriftService(session)
    path = ws / "shop" / "data" / "incoming" / "bad.csv"
    path.write_bytes(content.encode("latin-1"))
    outcome = service.check_batch("shop", path)
    kinds = [f.kind for f in outcome.report.findings]
    if finding:
        assert finding in kinds
    else:
        assert kinds and any(f.blocking for f in outcome.report.findings)
    assert not outcome.decision.retrain
    assert service.batches("shop")[0].state == "checked"


def test_an_unlabelled_drifted_batch_is_not_retrained_on(ws):
    session = WorkbenchSession(ws, runner="local")
    in_production(session)
    outcome = DriftService(session).check_batch(
        "shop", batch(ws, "nolabels.csv", sales(300, seed=8, shift=15), columns=["amount", "plan"]))
    assert outcome.report.drifted and not outcome.decision.retrain
    assert "no labels (bought) to train on" in outcome.decision.reason
    assert "no labels" in outcome.report.decay_note


def test_a_project_without_a_data_file_says_so(tmp_path):
    write_project(tmp_path, MANIFEST.replace('paths = ["data/sales.csv"]', 'paths = ["data/*.parquet"]'))
    from workbench.core.errors import WorkbenchError

    session = WorkbenchSession(tmp_path, runner="local")
    with pytest.raises(WorkbenchError, match=r"\[data\] paths matches no file; name the file"):
        DriftService(session).check_batch("shop", batch(tmp_path, "a.csv", sales(10, seed=1)))
    assert DriftService(session).batches("shop") == []  # the claim was released


# -- the CLI -----------------------------------------------------------------------------------

def workbench(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", "-w", str(ws), *args], capture_output=True, text=True,
                          env={**__import__("os").environ, "COLUMNS": "160"})


def test_cli_checks_a_batch_retrains_and_lists(ws):
    session = WorkbenchSession(ws, runner="local")
    in_production(session)
    batch(ws, "drifted.csv", sales(400, seed=8, shift=15, mix=(0.1, 0.2, 0.7)))
    batch(ws, "clean.csv", sales(400, seed=7))
    listed = workbench(ws, "drift", "shop")
    assert listed.returncode == 0, listed.stderr
    assert "no batches checked yet" in listed.stdout and "2 not checked yet" in listed.stdout

    checked = workbench(ws, "drift", "shop", "clean.csv", "--runner", "local", "--json")
    assert checked.returncode == 0, checked.stderr
    data = json.loads(checked.stdout)
    assert data["checked_now"] and not data["batch"]["drifted"] and data["run"] is None
    assert [c["column"] for c in data["batch"]["report"]["columns"]] == ["amount", "plan", "bought"]

    shown = workbench(ws, "drift", "shop", "data/incoming/drifted.csv", "--runner", "local", "-q")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "amount" in out and "Wasserstein" in out and "drifted" in out and "█" in out
    assert "✗ drifted: 2 of 2 columns drifted (100%), rule: share >= 20%" in out
    assert "→ retrain: drift in 2 of 2 columns" in out and "trigger drift" in out
    assert "registered as version 2" in out

    listed = workbench(ws, "drift", "shop")
    assert "run 2 ✓ → v2 registered" in listed.stdout and "not checked yet" not in listed.stdout
    again = workbench(ws, "drift", "shop", "drifted.csv")
    assert "checked before" in again.stdout and "trigger drift" not in again.stdout
    missing = workbench(ws, "drift", "shop", "nope.csv")
    assert missing.returncode == 3 and "no batch file 'nope.csv'" in missing.stderr


UNUSABLE = [
    ("unreadable", "bad.parquet", b"PAR1 this is not a parquet file", "unusable batch: unreadable (cannot read"),
    ("missing and retyped columns", "bad.csv", b"amount,bought\nlots,yes\n61.0,no\n",
     "unusable batch: missing column: plan; retyped column (numbers in the reference, text in the batch): amount"),
    ("empty", "bad.csv", b"", "unusable batch: empty (no rows)"),
    # One extra field on the last line made DuckDB's sniffer take that line for the header: 50
    # rows read as none, and the batch was called empty.
    ("malformed row", "bad.csv", b"amount,plan,bought\n" + b"50.0,pro,no\n" * 50 + b"1,2,3,4\n",
     "unusable batch: malformed rows: 1 row could not be read (line 52: 4 fields where the header has 3)"),
]


@pytest.mark.parametrize("case,name,content,rule", UNUSABLE, ids=[u[0] for u in UNUSABLE])
def test_cli_an_unusable_batch_is_not_checked_exits_3_and_is_never_clean(ws, case, name, content, rule):
    """Issue 11 item 3: an unreadable batch printed `✗ cannot read …` then `✓ no drift: 0 of 0
    columns` and exited 0; missing and retyped columns also ended "✓ no drift"."""
    path = ws / "shop" / "data" / "incoming" / name
    path.write_bytes(content)
    shown = workbench(ws, "drift", "shop", name, "--runner", "local")
    assert shown.returncode == 3, (shown.stdout, shown.stderr)
    assert f"⊘ not checked: {rule}" in shown.stdout and "no drift" not in shown.stdout, shown.stdout
    assert f"error: data/incoming/{name}: not checked: {rule}" in shown.stderr.replace("\n", "")

    again = workbench(ws, "drift", "shop", name, "--json")  # checked before: the same verdict, the same code
    assert again.returncode == 3
    data = json.loads(again.stdout)
    assert data["verdict"] == "not checked" and data["rule"].startswith(rule)
    assert data["batch"]["drifted"] is None and data["batch"]["report"]["verdict"] == "not checked"
    assert not data["decision"]["retrain"]

    listed = workbench(ws, "drift", "shop")
    assert listed.returncode == 0 and "⊘ not checked" in listed.stdout and "✓" not in listed.stdout, listed.stdout


def test_a_malformed_row_in_the_training_data_is_left_out_of_the_reference_and_said(ws):
    """The reference is read like the lineage profile: the rows that read, and the lines of those
    that do not (issue 11 item 2's mechanism, for drift checks)."""
    with open(ws / "shop" / "data" / "sales.csv", "a") as fh:
        fh.write("1,2,3,4\n")
    outcome = DriftService(WorkbenchSession(ws, runner="local")).check_batch(
        "shop", batch(ws, "clean.csv", sales(400, seed=7)))
    report = outcome.report
    assert report.verdict == "no drift" and report.reference_rows == 1500, report.summary
    (finding,) = report.findings
    assert (finding.kind, finding.blocking) == ("reference_rows", False)
    assert finding.message == ("the reference data/sales.csv: 1 row could not be read (line 1502: 4 fields where "
                               "the header has 3), left out of the comparison")


def test_cli_a_major_shift_in_one_example_column_is_a_warning(tmp_path):
    """Issue 11 item 4: on the example, a 40% rise of monthly_charges (PSI 2.4) read "✓ no drift"."""
    import shutil

    from tests.test_drift_core import EXAMPLE

    project = tmp_path / "telco-churn"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("incoming"))
    out = project / "data" / "incoming" / "pricier.csv"
    subprocess.run([sys.executable, str(project / "tools" / "make_batch.py"), "--kind", "clean", "--rows", "1000",
                    "--out", str(out)], check=True, capture_output=True)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["monthly_charges"] = f"{float(row['monthly_charges']) * 1.4:.2f}"
    write_csv(out, rows, list(rows[0]))

    shown = workbench(tmp_path, "drift", "telco-churn", "pricier.csv", "--runner", "local", "--no-retrain")
    assert shown.returncode == 0, shown.stderr
    verdict = next(line for line in shown.stdout.splitlines() if line.startswith(("✓ ", "✗ ", "! warning", "⊘ ")))
    assert verdict.startswith("! warning: monthly_charges PSI 2.") and "(>= 2 x 0.25)" in verdict, verdict
    assert "below the drift rule" in verdict and "no drift" not in shown.stdout
    assert "! major shift: monthly_charges" in shown.stdout

    data = json.loads(workbench(tmp_path, "drift", "telco-churn", "pricier.csv", "--json").stdout)
    assert data["verdict"] == "warning" and data["rule"].startswith("monthly_charges PSI 2.")
    column = next(c for c in data["batch"]["report"]["columns"] if c["column"] == "monthly_charges")
    assert column["psi"] > 2 and column["major"].startswith("monthly_charges")
    assert "warning" in workbench(tmp_path, "drift", "telco-churn").stdout


# -- the adapter: reading tables, writing the retrain's training file ------------------------------

def test_training_file_appends_the_batch_in_the_training_data_s_dialect_and_column_order(tmp_path):
    from workbench.adapters.batch_files import read_table, write_training_file

    training = tmp_path / "ref.csv"
    training.write_bytes(b'a;b;c\r\n1;x;2\r\n3;"y;z";4')  # no newline at the end, CRLF, semicolons
    tsv = tmp_path / "b.tsv"
    tsv.write_text("c\tb\ta\textra\n9\tq\t8\tdropped\n")
    out = tmp_path / "out.csv"
    write_training_file(training, "data/ref.csv", tsv, out, "append")
    assert out.read_bytes() == b'a;b;c\r\n1;x;2\r\n3;"y;z";4\r\n8;q;9\r\n'
    comma = tmp_path / "b.csv"
    comma.write_text('c,b,a\n9,"q;r",\n')
    write_training_file(training, "data/ref.csv", comma, out, "append")
    assert out.read_bytes().endswith(b'\r\n;"q;r";9\r\n') and read_table(out).rows == 3
    write_training_file(training, "data/ref.csv", comma, out, "replace")
    assert out.read_text() == comma.read_text()


def test_parquet_batches_and_training_data(tmp_path):
    import duckdb

    from workbench.adapters.batch_files import read_table, write_training_file

    ref, batch_file, out = tmp_path / "ref.parquet", tmp_path / "b.parquet", tmp_path / "out.parquet"
    duckdb.sql("SELECT range::DOUBLE AS amount, 'basic' AS plan FROM range(100)").write_parquet(str(ref))
    duckdb.sql("SELECT 'pro' AS plan, 5.5 AS amount").write_parquet(str(batch_file))
    table = read_table(batch_file)
    assert table.rows == 1 and table.columns["amount"].numeric and not table.columns["plan"].numeric
    write_training_file(ref, "data/ref.parquet", batch_file, out, "append")
    combined = read_table(out, "out.parquet")
    assert combined.rows == 101 and list(combined.columns) == ["amount", "plan"]
    assert combined.columns["plan"].text[-1] == "pro"

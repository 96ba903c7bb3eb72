"""`workbench drift` says one thing in its text and its JSON, and nothing beside the point:
an unusable batch is not scored and says nothing about labels; a batch checked before reports
the retrain it caused in the JSON as the text does; a drifted target is marked as not counted."""

from __future__ import annotations

import json

from tests.test_drift import batch, in_production, sales, workbench, ws  # noqa: F401 (ws is a fixture)
from workbench.services.session import WorkbenchSession


def test_an_empty_batch_with_a_header_is_not_scored_and_says_nothing_about_labels(ws):  # noqa: F811
    path = ws / "shop" / "data" / "incoming" / "empty.csv"
    path.write_text("amount,plan,bought\n")
    shown = workbench(ws, "drift", "shop", "empty.csv", "--runner", "local")
    assert shown.returncode == 3, (shown.stdout, shown.stderr)
    assert "no labels" not in shown.stdout, shown.stdout
    assert "performance not measured: the batch cannot be scored as it is" in shown.stdout, shown.stdout


def test_json_of_a_batch_checked_before_names_its_retrain_run_as_the_text_does(ws):  # noqa: F811
    in_production(WorkbenchSession(ws, runner="local"))
    batch(ws, "drifted.csv", sales(400, seed=8, shift=15, mix=(0.1, 0.2, 0.7)))
    first = workbench(ws, "drift", "shop", "drifted.csv", "--runner", "local", "-q")
    assert first.returncode == 0, first.stderr
    # The target drifted too (more buyers at higher amounts), but the share counts features only.
    target_row = next(line for line in first.stdout.splitlines() if line.startswith("bought"))
    assert "drifted target (not counted)" in target_row, first.stdout
    assert "2 of 2 columns drifted" in first.stdout

    text = workbench(ws, "drift", "shop", "drifted.csv")
    assert "checked before" in text.stdout and "· run 2" in text.stdout, text.stdout
    again = json.loads(workbench(ws, "drift", "shop", "drifted.csv", "--json").stdout)
    assert not again["checked_now"]
    assert again["decision"]["retrain"] is True and again["decision"]["cause"] == "drift", again["decision"]
    assert again["decision"]["reason"].startswith("checked before (batch 1)")
    assert again["run"]["id"] == 2 and again["run"]["trigger"] == "drift", again["run"]

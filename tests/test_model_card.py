"""The model card: `workbench card PROJECT VERSION [--json]` on a real promoted version (tiny
project, local runner, real DuckDB, the CLI as a subprocess), the card a promotion writes into
the deploy release, and the pure rendering (workbench.core.model_card)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_pipeline_local import write_project
from tests.test_registry import run_with_scale
from tests.test_tui_insights import binary_evaluation, explanation
from workbench.adapters.duckdb_evaluation import DuckDBEvaluationStore
from workbench.core.model_card import build_card, render_markdown
from workbench.core.registry import AuditEntry, ModelVersion
from workbench.services.session import WorkbenchSession


@pytest.fixture
def promoted(tmp_path: Path) -> Path:
    """Versions 1 and 2 of the tiny project; version 1 evaluated (through the evaluation store),
    in staging then production, version 2 staged."""
    root = tmp_path / "ws"
    write_project(root)
    session = WorkbenchSession(root, runner="local")
    v1 = run_with_scale(session, root, 1.5)
    DuckDBEvaluationStore(session.store).save(v1.run_id, "fit", binary_evaluation())
    run_with_scale(session, root, 1.8)
    registry = session.registry
    assert registry.promote("tiny", 1, "staging", reason="first look", user="ana").applied
    assert registry.promote("tiny", 1, "production", reason="go", user="ana").applied
    assert registry.promote("tiny", 2, "staging", user="bo").applied
    return root


def release(root: Path, alias: str) -> Path:
    return (root / ".workbench" / "deploy" / "tiny" / alias).resolve()


def test_card_markdown_of_a_promoted_version(promoted):
    done = wb(promoted, "card", "tiny", "1")
    assert done.returncode == 0, done.stderr
    md = done.stdout
    assert md.startswith("# Model card: tiny version 1\n")
    for heading in ("## Lineage", "## Data", "## Metrics", "## Evaluation and slices", "## Gates",
                    "## Explanations", "## Promotions"):
        assert f"\n{heading}\n" in md, heading
    assert "- **Status:** production (aliases: production)" in md
    assert "- **Reproducibility:** not checked: run 1 was never rerun cold" in md
    assert "| code | fit.py |" in md and "| scale | 1.5 |" in md
    assert "| score >= 0.5 | pass |" in md
    assert "auc 0.8412" in md and "### Slices by `senior_citizen`" in md
    assert "Demographic parity difference 0.28, equalized odds difference 0.2." in md
    assert "| 1 | 229 | 0.42 | 0.45 | 0.7 | 0.25 | 0.79 |" in md
    promotions = md.split("## Promotions", 1)[1]
    assert "| ana | promote | staging | none → v1 | first look |" in promotions
    assert "| ana | promote | production | none → v1 | go |" in promotions
    assert "| bo | promote | staging | v1 → v2 |" in promotions  # moved away from it, by version 2


def test_card_json_and_the_release_holds_the_same_card(promoted):
    done = wb(promoted, "card", "tiny", "2", "--json")
    assert done.returncode == 0, done.stderr
    card = json.loads(done.stdout)
    assert card["schema"] == "workbench.model-card/1" and (card["project"], card["version"]) == ("tiny", 2)
    assert card["model"]["sha256"] and card["lineage"]["params"] == {"scale": "1.8"}
    assert card["evaluation"] is None and card["explanations"] is None  # version 2's run was not evaluated
    assert [p["alias"] for p in card["promotions"]] == ["staging"]
    assert card["reproducibility"]["verdict"] == "not checked"
    # The promotion to staging wrote the card beside metadata.json; nothing changed since.
    folder = release(promoted, "staging")
    assert json.loads((folder / "metadata.json").read_text())["version"] == 2
    assert json.loads((folder / "model-card.json").read_text()) == card
    assert (folder / "model-card.md").read_text() == wb(promoted, "card", "tiny", "2").stdout
    assert json.loads((release(promoted, "production") / "model-card.json").read_text())["version"] == 1


def test_a_reproduced_version_says_so_and_an_unknown_one_is_named(promoted):
    session = WorkbenchSession(promoted, runner="local")
    _record, result = session.reproduce(1)
    assert result.matched
    card = json.loads(wb(promoted, "card", "tiny", "1", "--json").stdout)
    assert card["reproducibility"]["verdict"] == "reproduced" and card["reproducibility"]["run"] == 3
    missing = wb(promoted, "card", "tiny", "9")
    assert missing.returncode == 3 and "no model version 9" in missing.stderr and "1, 2" in missing.stderr


def test_core_card_from_plain_records_renders_every_section():
    at = datetime(2026, 3, 14, 9, 26, tzinfo=timezone.utc)
    version = ModelVersion(project="p", version=3, run_id=7, created_at=at, stage="train", artifact_name="model.txt",
                           artifact_path="/x/model.txt", sha256="ab" * 32, size=2048, run_status="succeeded",
                           run_reason="", metrics={"auc": 0.84, "loss": float("nan")}, params={"lr": "0.1"},
                           gates=(), primary_metric="auc", primary_value=0.84, snapshot_id="snap",
                           image_id="sha256:" + "cd" * 32, manifest_hash="ef" * 32, data_fingerprints={"d.csv": "12" * 32},
                           inputs_digest="34" * 32, aliases=("production",), ever_in=("production",))
    entry = AuditEntry(id=5, at=at, actor="ana", host="h", project="p", action="refuse", request="promote",
                       alias="production", version=3, from_version=2, to_version=2, reason="try",
                       message="gates failed | twice")
    card = build_card(version, None, {"evaluate": binary_evaluation()}, {"train": explanation()}, [entry],
                      {"verdict": "not checked", "run": None, "detail": "never rerun"})
    assert card["metrics"] == {"auc": 0.84, "loss": None}  # NaN is not JSON
    json.dumps(card)  # JSON-ready as is
    assert [f["feature"] for f in card["explanations"]["top_features"]][:2] == ["tenure", "contract"]
    md = render_markdown(card)
    assert "| data | d.csv | 1212121212121212 |" in md
    assert "| tenure | 0.812 | 1,204 | 311 |" in md
    assert "| 5 | 2026-03-14T09:26:00+00:00 | ana | refuse | production | stays v2 | try |" in md
    assert "No gates declared." in md and "No data profile recorded" in md

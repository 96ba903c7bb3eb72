"""Evaluations in the lineage store (workbench.adapters.duckdb_evaluation), on a real DuckDB file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.core.evaluation import Predictions, evaluate
from tests.test_duckdb_store import finished, stage

PAYLOAD_KEYS = {"task", "rows", "threshold", "label", "confusion", "roc", "pr", "calibration", "log_loss",
                "regression", "groups", "fairness"}


def _payload() -> dict:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    score = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    return evaluate(Predictions("evaluate/predictions.parquet", "churn", y, score=score,
                                groups={"female": rng.integers(0, 2, 500)}))


def test_an_evaluation_round_trips_and_a_reusing_run_answers_with_its_source(tmp_path: Path):
    store = DuckDBLineageStore(tmp_path / ".workbench" / "lineage.duckdb")
    first = finished(store, "churn", tmp_path, stages=[stage("train", tmp_path / "r1"), stage("evaluate", tmp_path / "r1")])
    payload = _payload()
    store.save_evaluation(first.id, "evaluate", payload)

    answer = store.evaluations(first.id)
    assert list(answer) == ["evaluate"] and set(answer["evaluate"]) == PAYLOAD_KEYS
    assert answer["evaluate"] == payload
    assert len(answer["evaluate"]["roc"]["fpr"]) <= 200

    reusing = finished(store, "churn", tmp_path, stages=[
        stage("train", tmp_path / "r2"), stage("evaluate", tmp_path / "r1", reused_from_run=first.id)])
    assert store.evaluations(reusing.id) == {"evaluate": payload}
    plain = finished(store, "churn", tmp_path, stages=[stage("train", tmp_path / "r3")])
    assert store.evaluations(plain.id) == {}

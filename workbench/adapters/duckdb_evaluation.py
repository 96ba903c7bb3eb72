"""The evaluations the workbench computed from stages' predictions files, on DuckDB.

One row per (run, stage): the whole payload of workbench.core.evaluation.evaluate as JSON, in
the lineage store's file (table `evaluations`), written through the lineage store's session
in one short transaction. A stage that a run reused has no row of its own: its evaluation is
the one of the run that produced its outputs, so `evaluations` follows `reused_from_run`.

The payload (what the TUI's Evaluation tab and the model card read):

    {"task": "binary" | "regression", "rows": int, "threshold": float | None, "label": str,
     "confusion": {"labels": [neg, pos], "matrix": [[tn, fp], [fn, tp]]} | None,
     "roc": {"fpr": [...], "tpr": [...], "auc": float} | None,
     "pr": {"recall": [...], "precision": [...], "average_precision": float} | None,
     "calibration": {"prob_pred": [...], "prob_true": [...], "counts": [...], "ece": float} | None,
     "log_loss": float | None,
     "regression": {"mae": f, "rmse": f, "r2": f, "residuals": {"edges": [...], "counts": [...]}} | None,
     "groups": {column: [{"group": str, "size": int, "base_rate": f, "prediction_rate": f,
                          "tpr": f | None, "fpr": f | None, "auc": f | None, "mae": f | None}]},
     "fairness": {column: {"demographic_parity_difference": f, "equalized_odds_difference": f | None}}}

Curves hold at most 200 points (workbench.core.evaluation.MAX_CURVE_POINTS).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.adapters.duckdb_store import DuckDBLineageStore


class DuckDBEvaluationStore:
    def __init__(self, lineage: DuckDBLineageStore):
        self.lineage = lineage

    def save(self, run_id: int, stage: str, payload: dict[str, Any]) -> None:
        """Record (or replace) a stage's evaluation in a run."""
        text = json.dumps(payload, separators=(",", ":"))
        with self.lineage.transaction(write=True) as con:
            con.execute("INSERT OR REPLACE INTO evaluations (run_id, stage, payload) VALUES (?, ?, ?)",
                        [run_id, stage, text])

    def evaluations(self, run_id: int) -> dict[str, dict[str, Any]]:
        """Stage -> evaluation payload of a run; reused stages answer with the
        evaluation of the run that produced their outputs. {} when no stage was evaluated."""
        with self.lineage.transaction() as con:
            rows = con.execute(
                "SELECT stage, payload FROM evaluations WHERE run_id = ? "
                "UNION ALL "
                "SELECT e.stage, e.payload FROM stage_runs s "
                "JOIN evaluations e ON e.run_id = s.reused_from_run AND e.stage = s.stage "
                "WHERE s.run_id = ? AND s.reused_from_run IS NOT NULL",
                [run_id, run_id]).fetchall()
        answer: dict[str, dict[str, Any]] = {}
        for stage, payload in rows:
            answer.setdefault(stage, json.loads(payload))
        return answer

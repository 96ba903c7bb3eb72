"""Explain a run's models: gain and split importance from each LightGBM model file it recorded,
merged with the mean |SHAP| a stage measured (explanations.json, written by `wb.explain` where
lightgbm and the rows are: inside the stage). Kept per run, so per version.

The host never imports lightgbm: the importances come from the model's text (workbench.core.explain).
Files are read as every stage output is: never through a symlink, never more than a cap.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from workbench.adapters.duckdb_explanations import DuckDBExplanationStore
from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.adapters.regular_files import NotRegularFile, open_regular, read_protocol_json, read_regular_bytes
from workbench.core.errors import WorkbenchError
from workbench.core.explain import (
    SHAP_FILE, FeatureShift, NotLightGBMModel, ShapSummary, diff_explanations, explanation_payload,
    looks_like_lightgbm, parse_lightgbm_model, parse_shap_summary, shap_for_model,
)
from workbench.core.model import RunRecord, RunStatus, StageResult, StageStatus

MODEL_TEXT_CAP = 1024**3
"""The most the host reads of a model file to explain it (a 10,000-tree model is ~200 MB)."""
DONE = (StageStatus.SUCCEEDED, StageStatus.REUSED)


@dataclass
class Explained:
    """A run's explanations: stage -> payload (explanation_payload's shape), and notes."""

    payloads: dict[str, dict] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, stage: str, text: str) -> None:
        self.notes.setdefault(stage, []).append(text)


def explain_record(record: RunRecord, model_kind: str = "model") -> Explained:
    """Explain each stage's model: the artifact of `model_kind` it logged or, failing that, a
    declared output that is a LightGBM text model. A model that is not LightGBM, or a SHAP
    file that cannot be used, is a note naming the file, never an error."""
    result = Explained()
    shap: list[tuple[str, ShapSummary]] = []
    for stage in record.stages:
        if stage.status in DONE:
            summary = _read_shap(stage, result)
            if summary is not None:
                shap.append((stage.stage, summary))
    for stage in record.stages:
        if stage.status not in DONE:
            continue
        models = [a for a in stage.artifacts if a.kind == model_kind]
        if not models:
            models = [a for a in stage.artifacts if a.kind == "output" and _is_lightgbm(a.path)]
        if not models:
            continue
        model = models[0]
        try:
            data = read_regular_bytes(model.path, MODEL_TEXT_CAP)
        except (NotRegularFile, OSError) as exc:
            result.note(stage.stage, f"{model.name} cannot be read: {exc}")
            continue
        if hashlib.sha256(data).hexdigest() != model.sha256:
            result.note(stage.stage, f"{model.name} is no longer the file run {record.id} recorded "
                                     f"(sha256 {model.sha256[:12]}): not explained")
            continue
        try:
            importance = parse_lightgbm_model(data.decode("utf-8"), model.name)
        except UnicodeDecodeError:
            result.note(stage.stage, f"{model.name} is not a LightGBM model (not a text file): "
                                     "no feature importance")
            continue
        except NotLightGBMModel as exc:
            result.note(stage.stage, f"{exc}: no feature importance")
            continue
        summary, notes = shap_for_model(importance, model.sha256, shap)
        for text in notes:
            result.note(stage.stage, text)
        result.payloads[stage.stage] = explanation_payload(model.name, model.sha256, importance, summary)
    return result


def _is_lightgbm(path: str) -> bool:
    try:
        fd, _ = open_regular(path)
    except (NotRegularFile, OSError):
        return False
    try:
        return looks_like_lightgbm(os.read(fd, 64))
    finally:
        os.close(fd)


def _read_shap(stage: StageResult, result: Explained) -> ShapSummary | None:
    path = Path(stage.output_dir) / SHAP_FILE
    if not stage.output_dir or not os.path.lexists(path):
        return None
    where = f"stage {stage.stage}'s {SHAP_FILE}"
    try:
        return parse_shap_summary(read_protocol_json(path), where)
    except (NotRegularFile, OSError) as exc:
        result.note(stage.stage, f"{where} cannot be read: {exc}")
    except ValueError as exc:  # not JSON, or not the shape wb.explain writes
        text = str(exc)
        result.note(stage.stage, text if text.startswith(where) else f"{where} is not valid JSON: {text}")
    return None


@dataclass(frozen=True)
class VersionExplanation:
    project: str
    version: int
    run_id: int
    stage: str
    model: str
    payload: dict | None
    """The model's explanation, or None (then `notes` say why)."""
    notes: list[str]


@dataclass(frozen=True)
class ExplanationComparison:
    current: VersionExplanation
    against: VersionExplanation | None
    shifts: list[FeatureShift]
    """Per feature, rank and share in `against` and `current` (empty without `against`)."""


class ExplanationService:
    def __init__(self, lineage: DuckDBLineageStore, model_kind=lambda project: "model"):
        """`model_kind(project)`: the artifact kind its manifest calls a model."""
        self.store = DuckDBExplanationStore(lineage)
        self.lineage = lineage
        self.model_kind = model_kind

    def record(self, record: RunRecord) -> None:
        """Explain a finished run and keep it (once; a second call is a no-op)."""
        if record.status is RunStatus.RUNNING or self.store.examined(record.id):
            return
        explained = explain_record(record, self.model_kind(record.project))
        self.store.save(record.id, explained.payloads, {s: "; ".join(n) for s, n in explained.notes.items()})

    def _ensure(self, run_id: int) -> None:
        """A run recorded before explanations existed (or by a workbench that stopped before
        explaining it) is explained the first time someone asks."""
        if not self.store.examined(run_id):
            self.record(self.lineage.get_run(run_id))

    def explanations(self, run_id: int) -> dict[str, dict]:
        self._ensure(run_id)
        return self.store.explanations(run_id)

    def notes(self, run_id: int) -> dict[str, str]:
        self._ensure(run_id)
        return self.store.notes(run_id)

    def version(self, project: str, version: int) -> VersionExplanation:
        run_id, stage, model, sha = self.store.version_model(project, version)
        payload = self.explanations(run_id).get(stage)
        notes = [n for s, n in self.store.notes(run_id).items() if s == stage]
        if payload is not None and payload["model_sha256"] != sha:
            notes.append(f"stage {stage} of run {run_id} explained {payload['model']} "
                         f"{payload['model_sha256'][:12]}, not the version's {model} {sha[:12]}")
            payload = None
        if payload is None and not notes:
            notes.append(f"run {run_id} recorded no explanation of {model}")
        return VersionExplanation(project, version, run_id, stage, model, payload, notes)

    def version_explanations(self, project: str, version: int) -> dict[str, dict]:
        """Stage -> payload for the version's model (one entry, or none when it has none)."""
        found = self.version(project, version)
        return {found.stage: found.payload} if found.payload is not None else {}

    def compare(self, project: str, version: int, against: int | None = None, by: str = "gain") -> ExplanationComparison:
        if against is not None and against == version:
            raise WorkbenchError(f"--against {against} is the version itself: name another version of {project}")
        current = self.version(project, version)
        other = self.version(project, against) if against is not None else None
        shifts = diff_explanations(other.payload, current.payload, by) if other is not None else []
        return ExplanationComparison(current, other, shifts)

    def importance_weights(self, project: str, version: int) -> dict[str, float]:
        run_id, *_ = self.store.version_model(project, version)
        self._ensure(run_id)
        return self.store.importance_weights(project, version)

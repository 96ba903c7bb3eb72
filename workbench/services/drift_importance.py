"""Which columns the model leans on, for the drift verdict (workbench.core.drift_verdict): the
feature importance of the model version a batch is checked for (production, else the latest
successful run's), from the first place that has it:

  1. its run's recorded explanations (workbench.services.explanations: gain per feature, read
     from the model file when the run was recorded, or the first time someone asks);
  2. the model file itself (workbench.adapters.model_importance: a LightGBM text model's gain),
     when the explanations have nothing (say the explanation store was not written);
  3. none, with why: no model version yet, a model that is not LightGBM, a model file gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.core.errors import WorkbenchError
from workbench.core.registry import ModelVersion


@dataclass(frozen=True)
class ModelImportance:
    features: dict[str, float]
    """Model feature -> its importance (any scale); empty when there is none."""
    source: str
    """Where it came from, in words ("explanations of version 3 (gain)"), or "none"."""
    why_none: str = ""


def model_importance(session, project: str, version: ModelVersion | None) -> ModelImportance:
    """The feature importance of `version` (see the module's docstring); never raises for a
    version without one: the drift check goes on without weights and says why."""
    if version is None:
        return ModelImportance({}, "none", "no model version yet (no run has registered one)")
    problems = []
    try:
        weights = session.importance_weights(project, version.version)
    except WorkbenchError as exc:
        weights = {}
        problems.append(f"its explanations cannot be read ({exc})")
    if sum(weights.values()) > 0:
        return ModelImportance(dict(weights), f"explanations of version {version.version} (gain)")
    from workbench.adapters.model_importance import model_file_gain

    try:
        gains = model_file_gain(version.artifact_path, version.sha256, version.artifact_name)
    except WorkbenchError as exc:
        problems.append(str(exc))
    else:
        if sum(gains.values()) > 0:
            return ModelImportance(gains, f"model file of version {version.version} (gain)")
        problems.append(f"{Path(version.artifact_path).name} splits on no feature (a model of constant trees)")
    return ModelImportance({}, "none", f"version {version.version}: " + "; ".join(problems))

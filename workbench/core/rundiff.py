"""What changed between two runs of a project: code, data, params, image and metrics.

Pure: it compares two RunRecords. Text diffs of changed files need the stored file contents;
workbench/services/inspect.py adds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from workbench.core.explain import FeatureShift
from workbench.core.model import RunRecord


@dataclass(frozen=True)
class Change:
    """One named value in the base run (`before`) and the other run (`after`); None: absent."""

    name: str
    before: str | None
    after: str | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "changed"


@dataclass(frozen=True)
class MetricChange:
    name: str
    before: float | None
    after: float | None

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None or math.isnan(self.before) or math.isnan(self.after):
            return None
        return self.after - self.before


@dataclass
class RunDiff:
    project: str
    base: int
    """The run compared against (the marked or the previous run)."""
    run: int
    code: list[Change] = field(default_factory=list)
    """Input files other than the data files: path, sha256 before and after."""
    data: list[Change] = field(default_factory=list)
    """Data files: path, content fingerprint before and after."""
    params: list[Change] = field(default_factory=list)
    """The params stages logged (wb.log_params), named `stage.name`."""
    param_keys: list[Change] = field(default_factory=list)
    """The params keys stages name in the manifest (`params.toml:evaluate.threshold`): the
    values their cache keys took, as canonical JSON."""
    image: Change | None = None
    metrics: list[MetricChange] = field(default_factory=list)
    """Every metric either run reported, changed or not, so the table reads as a comparison."""
    text_diffs: dict[str, list[str]] = field(default_factory=dict)
    """Unified diff lines of changed text files, by path (filled in by the service)."""
    importance: list[FeatureShift] = field(default_factory=list)
    """Each feature of the runs' models: rank and gain share in `base` and in `run` (filled in
    by the service from the stored explanations; empty when the two cannot be compared)."""
    importance_note: str = ""
    """Why `importance` is empty (same model file, a run without an explained model); "" if not."""

    @property
    def unchanged(self) -> bool:
        return not (self.code or self.data or self.params or self.param_keys or self.image)


def _changes(before: dict[str, str], after: dict[str, str]) -> list[Change]:
    return [Change(name, before.get(name), after.get(name))
            for name in sorted(before.keys() | after.keys()) if before.get(name) != after.get(name)]


def _input_hashes(record: RunRecord) -> dict[str, str]:
    return {f.path: f.sha256 for stage in record.stages for f in stage.inputs}


def _params(record: RunRecord) -> dict[str, str]:
    merged: dict[str, str] = {}
    for stage in record.stages:
        for name, value in stage.params.items():
            merged[f"{stage.stage}.{name}"] = str(value)
    return merged


def _param_keys(record: RunRecord) -> dict[str, str]:
    """Every stage of a run reads a key from the same file state, so one value per key."""
    return {label: value for stage in record.stages for label, value in stage.param_values.items()}


def diff_runs(base: RunRecord, run: RunRecord) -> RunDiff:
    """How `run` differs from `base`. Stages a partial run did not record count as absent."""
    data_paths = {d.path for d in base.datasets} | {d.path for d in run.datasets}
    before_inputs, after_inputs = _input_hashes(base), _input_hashes(run)
    code = _changes({p: h for p, h in before_inputs.items() if p not in data_paths},
                    {p: h for p, h in after_inputs.items() if p not in data_paths})
    data = _changes({d.path: d.fingerprint for d in base.datasets}, {d.path: d.fingerprint for d in run.datasets})
    image = None
    if (base.image_id or None) != (run.image_id or None):
        image = Change(run.image_tag or base.image_tag or "image", base.image_id or None, run.image_id or None)
    before_metrics, after_metrics = base.metrics, run.metrics
    metrics = [MetricChange(name, before_metrics.get(name), after_metrics.get(name))
               for name in sorted(before_metrics.keys() | after_metrics.keys())]
    return RunDiff(project=run.project, base=base.id, run=run.id, code=code, data=data,
                   params=_changes(_params(base), _params(run)),
                   param_keys=_changes(_param_keys(base), _param_keys(run)), image=image, metrics=metrics)

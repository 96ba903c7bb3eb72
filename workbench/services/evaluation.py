"""After a stage that declares a predictions file succeeds: read it, compute its evaluation,
record the payload and merge the metrics into the stage's own (workbench.core.evaluation).

A metric the stage logged itself under the same name wins, and the run log says so: a project
that computes its AUC its own way keeps it, and sees the workbench's figure beside it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from workbench.core.errors import WorkbenchError
from workbench.core.evaluation import evaluate, evaluation_metrics
from workbench.core.manifest import Manifest, StageSpec
from workbench.core.model import StageResult, StageStatus
from workbench.core.planning import matches_any
from workbench.core.ports import LineageStore

HEADLINE = ("auc", "average_precision", "log_loss", "ece", "accuracy", "f1", "mae", "rmse", "r2")


def evaluate_stage(store: LineageStore, run_id: int, manifest: Manifest, spec: StageSpec, result: StageResult,
                   snapshot_dir: Path, snapshot_files: list[str], log: Callable[[str], None]) -> None:
    """Evaluate the stage's predictions file into `result` (metrics) and the store (payload);
    an unusable file fails the stage with the reason, naming the file and the column."""
    from workbench.adapters.predictions_file import read_predictions

    started = time.perf_counter()

    def say(line: str) -> None:  # in the live log and in the stage's recorded log tail
        result.log_tail.append(line)
        log(line)

    data_path = _join_data_file(manifest, snapshot_files)
    try:
        predictions = read_predictions(
            Path(result.output_dir) / spec.predictions, spec.predictions, manifest.data.target,
            manifest.data.sensitive, snapshot_dir / data_path if data_path else None, data_path or "")
        payload = evaluate(predictions, manifest.evaluation.task, manifest.evaluation.threshold,
                           manifest.evaluation.positive)
    except WorkbenchError as exc:
        result.status, result.reason = StageStatus.FAILED, str(exc)
        return
    computed = evaluation_metrics(payload)
    for name, value in computed.items():
        if name in result.metrics:
            say(f"evaluation: metric {name} logged by the stage is kept ({result.metrics[name]:.6g}); "
                f"the workbench computed {value:.6g}")
        else:
            result.metrics[name] = value
    store.save_evaluation(run_id, spec.name, payload)
    shown = ", ".join(f"{name} {computed[name]:.4f}" for name in HEADLINE if name in computed)
    threshold = f" at threshold {payload['threshold']:g}" if payload["threshold"] is not None else ""
    say(f"evaluation of {spec.predictions}: {payload['task']}, {payload['rows']} rows{threshold}: {shown} "
        f"({len(computed)} metrics, {(time.perf_counter() - started) * 1000:.0f} ms)")


def _join_data_file(manifest: Manifest, snapshot_files: list[str]) -> str | None:
    """The data file sensitive columns are joined from by id: drift.data_file, else the one
    file data.paths matches (None when it matches several or none)."""
    if manifest.drift.data_file:
        return manifest.drift.data_file
    matched = [path for path in snapshot_files if matches_any(path, manifest.data.paths)]
    return matched[0] if len(matched) == 1 else None


def evaluation_settings(manifest: Manifest, spec: StageSpec) -> str:
    """What a stage's evaluation is computed with, for its cache key ("" without predictions):
    editing the threshold or the sensitive columns must evaluate again, not reuse old metrics."""
    if not spec.predictions:
        return ""
    settings = {"predictions": spec.predictions, "task": manifest.evaluation.task,
                "threshold": manifest.evaluation.threshold, "positive": manifest.evaluation.positive,
                "target": manifest.data.target, "sensitive": list(manifest.data.sensitive),
                "join": _join_data_file(manifest, []) if manifest.drift.data_file else list(manifest.data.paths)}
    return json.dumps(settings, sort_keys=True)

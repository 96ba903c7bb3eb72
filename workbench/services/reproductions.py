"""The reproducibility verdict of a run, from the store: the newest cold rerun of its snapshot
(`R` in the TUI, `workbench reproduce`) compared with it, so the verdict stays in the run's
detail after the notification is gone, and reads the same in another process."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.core.model import PIPELINE_COMPLETED, RunRecord
from workbench.core.reproduce import Reproduction, compare_metrics


@dataclass(frozen=True)
class ReproductionVerdict:
    original_run: int
    reproduce_run: int
    matched: bool | None
    """None: the cold rerun did not run to the end (failed, cancelled), so nothing was compared."""
    summary: str


def compare_records(original: RunRecord, rerun: RunRecord) -> Reproduction:
    """Same metrics (timings aside) and byte-identical model files: what `reproduce` checks."""
    compared, differences = compare_metrics(original.metrics, rerun.metrics)
    # Models must be byte-identical; reports may hold timings, which the metrics check covers.
    before = {a.name: a.sha256 for s in original.stages for a in s.artifacts if a.kind == "model"}
    after = {a.name: a.sha256 for s in rerun.stages for a in s.artifacts if a.kind == "model"}
    identical = {name: after.get(name) == sha for name, sha in before.items()}
    return Reproduction(original.id, rerun.id, compared, differences, identical)


def describe(original: RunRecord, rerun: RunRecord) -> ReproductionVerdict:
    if rerun.status not in PIPELINE_COMPLETED:
        reason = f": {rerun.reason}" if rerun.reason else ""
        return ReproductionVerdict(original.id, rerun.id, None,
                                   f"cold rerun {rerun.id} {str(rerun.status).replace('_', ' ')}{reason}")
    result = compare_records(original, rerun)
    if result.matched:
        models = "model files byte-identical" if result.artifacts_identical else "no model file"
        return ReproductionVerdict(original.id, rerun.id, True, f"reproduced by cold run {rerun.id}: "
                                   f"{len(result.compared)} metrics equal, {models}")
    problems = [str(d) for d in result.differences] + [
        f"{name} differs" for name, same in result.artifacts_identical.items() if not same]
    return ReproductionVerdict(original.id, rerun.id, False,
                               f"NOT reproduced by cold run {rerun.id}: " + "; ".join(problems[:4]))


def reproduction(session, run_id: int, record: RunRecord | None = None) -> ReproductionVerdict | None:
    """The verdict of the newest cold rerun of `run_id`, or None if it was never rerun cold."""
    from workbench.adapters.duckdb_reproductions import DuckDBReproductionStore

    rerun_id = DuckDBReproductionStore(session.store).latest_reproduction(run_id)
    if rerun_id is None:
        return None
    original = record if record is not None and record.id == run_id else session.get_run(run_id)
    return describe(original, session.get_run(rerun_id))

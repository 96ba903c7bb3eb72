"""Read-only views of recorded runs that a front end shows: run diffs and validation reports.

The TUI's diff screen and validation tab call these (from worker threads); a script can too.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from workbench.adapters.object_store import ObjectStore
from workbench.adapters.regular_files import NotRegularFile, read_protocol_json
from workbench.core.errors import WorkbenchError
from workbench.core.explain import FeatureShift, diff_explanations
from workbench.core.model import RunRecord
from workbench.core.rundiff import RunDiff, diff_runs
from workbench.services.session import WorkbenchSession

MAX_TEXT_BYTES = 512 * 1024
"""Files larger than this get a hash comparison only, no text diff."""
MAX_DIFF_LINES = 400
REPORT_KINDS = ("validation_report", "report")


def compare_runs(session: WorkbenchSession, base_id: int, run_id: int) -> RunDiff:
    """How run `run_id` differs from run `base_id`, with unified diffs of changed text files
    (read from the workspace's content-addressed store, so later edits do not matter)."""
    base, run = session.get_run(base_id), session.get_run(run_id)
    diff = diff_runs(base, run)
    objects = ObjectStore(session.workspace.state_dir)
    for change in diff.code:
        if change.kind != "changed":
            continue
        before = _text(objects.object_path(change.before))
        after = _text(objects.object_path(change.after))
        if before is None or after is None:
            continue
        lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(),
                                          f"run {base_id}/{change.name}", f"run {run_id}/{change.name}",
                                          lineterm="", n=2))
        if len(lines) > MAX_DIFF_LINES:
            lines = lines[:MAX_DIFF_LINES] + [f"… {len(lines) - MAX_DIFF_LINES} more lines"]
        diff.text_diffs[change.name] = lines
    diff.importance, diff.importance_note = importance_shifts(session, base_id, run_id)
    return diff


def importance_shifts(session: WorkbenchSession, base_id: int, run_id: int) -> tuple[list[FeatureShift], str]:
    """How the features' gain ranks and shares moved between the two runs' models (the first
    model stage both explained), or why they cannot be compared."""
    try:
        before, after = session.explanations(base_id), session.explanations(run_id)
    except WorkbenchError as exc:
        return [], f"explanations could not be read: {exc}"
    stage = next((name for name in after if name in before), None)
    if stage is None:
        if not before and not after:  # not a LightGBM project: nothing to say
            return [], ""
        lacking = base_id if not before else run_id
        return [], f"run {lacking} has no explained LightGBM model to compare with"
    if before[stage]["model_sha256"] == after[stage]["model_sha256"]:
        return [], f"same model file ({after[stage]['model']} {after[stage]['model_sha256'][:12]})"
    return diff_explanations(before[stage], after[stage]), ""


def _text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            return None
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # gone from the store, or not text: the hashes still say it changed


@dataclass(frozen=True)
class ValidationReport:
    stage: str
    artifact: str
    content: dict | None
    """The report as its stage wrote it (JSON), or None when it cannot be read."""
    problem: str = ""


def validation_report(record: RunRecord) -> ValidationReport | None:
    """The run's validation report: the artifact a stage logged with kind `validation_report`
    (or `report`); None when no stage wrote one. The built-in contract stage's report comes
    first, and the project's own validate stage's findings follow it in one report."""
    reports = [r for r in (_stage_report(s) for s in record.stages) if r is not None]
    if len(reports) > 1 and all(r.content is not None for r in reports[:2]):
        first, second = reports[:2]
        content = {k: v for k, v in second.content.items() if k not in ("ok", "findings")}
        content["ok"] = bool(first.content.get("ok", True)) and bool(second.content.get("ok", True))
        content["findings"] = [*_findings(first.content), *_findings(second.content)]
        return ValidationReport(f"{first.stage} + {second.stage}", f"{first.artifact}, {second.artifact}", content)
    return reports[0] if reports else None


def _findings(content: dict) -> list:
    findings = content.get("findings")
    return findings if isinstance(findings, list) else []


def _stage_report(stage) -> ValidationReport | None:
    """The first artifact of a report kind the stage logged, read."""
    for artifact in stage.artifacts:
        if artifact.kind in REPORT_KINDS:
            try:
                # Outputs are regular files; a symlink in the report's place is not followed.
                content = read_protocol_json(artifact.path)
            except (OSError, ValueError, NotRegularFile) as exc:
                return ValidationReport(stage.stage, artifact.name, None, f"cannot read {artifact.path}: {exc}")
            if not isinstance(content, dict):
                return ValidationReport(stage.stage, artifact.name, None, "the report is not a JSON object")
            return ValidationReport(stage.stage, artifact.name, content)
    return None

"""Which alerts a fact is worth, and their words: a finished run, an applied promotion, a
checked batch. Pure: the services that know the facts (session.run, the registry, the drift
service) hand them here and emit what comes back through workbench.services.alerts.

Each builder returns (kind, summary, details) tuples: the summary is the one line a person
reads in a channel; details are the facts a script (or a Slack message's second block) uses.
"""

from __future__ import annotations

from typing import Any

from workbench.core.contract import CONTRACT_STAGE
from workbench.core.drift_report import BREAKS_CONTRACT
from workbench.core.model import RunRecord, RunStatus, StageStatus, Trigger

Alert = tuple[str, str, dict[str, Any]]


def run_alerts(record: RunRecord) -> list[Alert]:
    """run_failed or gate_failed for a run that ended so (a sweep trial's failed gate is not
    one); retrain_finished for a drift run, whatever its end. A cancelled or superseded run is
    someone's decision, not an alert."""
    alerts: list[Alert] = []
    details = {"run_id": record.id, "status": str(record.status), "trigger": str(record.trigger),
               "duration_s": round(record.duration_s, 3) if record.duration_s is not None else None}
    contract = next((s for s in record.stages if s.stage == CONTRACT_STAGE), None)
    if contract is not None and contract.status is StageStatus.FAILED:
        # The data broke its contract: said as such (the run_failed below says the run stopped).
        alerts.append(("contract_broken", f"{record.project}: the data broke its contract in run {record.id}: "
                                          f"{contract.reason or 'see the contract stage'}",
                       details | {"reason": contract.reason, "metrics": dict(contract.metrics)}))
    if record.status is RunStatus.FAILED:
        failed = [s for s in record.stages if s.status is StageStatus.FAILED]
        why = (f"stage {failed[0].stage} failed" + (f" (exit {failed[0].exit_code})" if failed[0].exit_code else "")
               + (f": {failed[0].reason}" if failed[0].reason else "")) if failed else (record.reason or "failed")
        alerts.append(("run_failed", f"run {record.id} of {record.project} failed: {why}",
                       details | {"failed_stages": [s.stage for s in failed], "reason": record.reason}))
    elif record.trigger is Trigger.SWEEP:
        pass  # a sweep's trials failing gates is the search at work: its result is the best trial
    elif record.status is RunStatus.GATE_FAILED or (record.status is RunStatus.SUCCEEDED and not record.gates_passed):
        broken = [g for g in record.gates if g.passed is False]
        rules = "; ".join(f"{g.rule} (got {_num(g.value)})" for g in broken)
        alerts.append(("gate_failed", f"run {record.id} of {record.project} failed its gates: {rules}",
                       details | {"gates": [{"rule": g.rule, "value": g.value, "detail": g.detail} for g in broken]}))
    if record.trigger is Trigger.DRIFT and record.status not in (RunStatus.RUNNING,):
        alerts.append(("retrain_finished", f"retrain run {record.id} of {record.project} finished: {record.status}",
                       details | {"metrics": dict(record.metrics)}))
    return alerts


def promotion_alert(decision) -> Alert | None:
    """promoted or rolled_back for an applied core.promotion.Decision; None otherwise."""
    if not decision.applied:
        return None
    held = f" (was version {decision.from_version})" if decision.from_version is not None else ""
    details = {"alias": decision.alias, "version": decision.version, "from_version": decision.from_version,
               "audit_id": decision.audit_id}
    if decision.action == "rollback":
        return ("rolled_back", f"{decision.project} {decision.alias} rolled back to version {decision.version}{held}",
                details)
    return ("promoted", f"{decision.project} version {decision.version} promoted to {decision.alias}{held}", details)


def batch_alerts(project: str, batch_id: int, path: str, report, retrain: str) -> list[Alert]:
    """batch_drifted and batch_decayed for a checked batch's core.drift_report.DriftReport."""
    alerts: list[Alert] = []
    details = {"batch_id": batch_id, "batch": path, "rows": report.rows, "retrain": retrain}
    if report.status == BREAKS_CONTRACT:  # neither drifted nor clean: the data is not valid
        alerts.append(("contract_broken", f"{project}: batch {path} breaks the contract: {report.rule}",
                       details | {"rule": report.rule}))
        return alerts
    if report.drifted:
        columns = report.drifted_columns
        shown = ", ".join(columns[:5]) + (f" and {len(columns) - 5} more" if len(columns) > 5 else "")
        alerts.append(("batch_drifted", f"{project}: batch {path} drifted ({report.rule or 'drift'}: {shown})",
                       details | {"share": report.share, "drifted_columns": columns, "rule": report.rule}))
    decay = report.decay
    if decay is not None and decay.decayed:
        alerts.append(("batch_decayed", f"{project}: {decay.metric} fell to {_num(decay.value)} on batch {path} "
                                        f"(recorded {_num(decay.baseline)}, allowed drop {_num(decay.max_drop)})",
                       details | {"metric": decay.metric, "baseline": decay.baseline, "value": decay.value,
                                  "drop": decay.drop, "max_drop": decay.max_drop}))
    return alerts


def _num(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"

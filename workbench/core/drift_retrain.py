"""Whether a checked batch triggers a retrain: the production model's decay on the batch, and
the retrain policy (`[drift.retrain]`: on drift, on decay, a cooldown and a daily cap) applied to
the batch's drift report.

Pure: no I/O; the caller passes in the clock and the times of earlier retrains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from workbench.core.drift_report import WARNING, Decay, DriftReport
from workbench.core.manifest import RetrainSpec


def measure_decay(metric: str, goal: str, baseline: Mapping[str, float], measured: Mapping[str, float],
                  max_drop: float | None) -> Decay | None:
    """The drop of `metric` from the version's recorded value to the batch's (positive when the
    batch is worse, whichever way the metric points); None when either side lacks it."""
    before, after = baseline.get(metric), measured.get(metric)
    if before is None or after is None or math.isnan(before) or math.isnan(after):
        return None
    drop = before - after if goal != "minimize" else after - before
    decayed = max_drop is not None and drop > max_drop
    return Decay(metric, float(before), float(after), float(drop), max_drop, decayed, dict(measured))


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str
    """Why (or why not), with the numbers."""
    cause: str = ""
    """drift or decay when it retrains (drift first when both)."""


def decide_retrain(report: DriftReport, policy: RetrainSpec, previous: Sequence[datetime],
                   now: datetime) -> RetrainDecision:
    """Whether a checked batch triggers a retrain. `previous`: when earlier retrains of the
    project were triggered (any order). The cooldown counts from the latest; the cap counts
    those in the 24 hours before `now`."""
    if not report.usable:  # an unusable batch says nothing about drift, and cannot be trained on
        return RetrainDecision(False, f"not checked: {report.rule}")
    causes = []
    if report.drifted:
        if policy.on_drift:
            causes.append(("drift", f"drift in {len(report.drifted_columns)} of {len(report.features)} columns "
                                    f"({report.share:.0%}; rule: {report.rule})"))
    decay = report.decay
    if decay is not None and decay.decayed:
        causes.append(("decay", f"{decay.metric} {decay.value:.4g} on the batch vs {decay.baseline:.4g} evaluated: "
                                f"worse by {decay.drop:.4g} > {decay.max_drop:g}"))
    if not causes:
        if report.drifted:
            return RetrainDecision(False, "drifted, but retraining on drift is off ([drift.retrain] on_drift)")
        if report.status == WARNING:
            # One column's large shift is worth a look, not a retrain: the model may not lean on it
            # (a weighed report says how little it does).
            return RetrainDecision(False, f"warning only ({report.rule}): retraining waits for drift by the "
                                          f"{'drift rules' if report.weighed else 'column rule'}"
                                          + (" or decay" if decay is not None else ""))
        return RetrainDecision(False, "no drift" + (" and no decay" if decay is not None else ""))
    cause, why = causes[0]
    if len(causes) > 1:
        why += "; " + causes[1][1]
    blocking = report.blocking
    if blocking:
        return RetrainDecision(False, f"{why}, but the batch cannot be trained on: "
                                      + "; ".join(f.message for f in blocking[:3]))
    if report.target and not report.has_labels:
        return RetrainDecision(False, f"{why}, but the batch has no labels ({report.target}) to train on")
    if policy.max_per_day == 0:
        return RetrainDecision(False, f"{why}, but retraining is capped at 0 per day ([drift.retrain] max_per_day)")
    earlier = sorted(t for t in previous if t <= now)
    if earlier:
        since = now - earlier[-1]
        cooldown = timedelta(minutes=policy.cooldown_minutes)
        if since < cooldown:
            return RetrainDecision(False, f"{why}, but in cooldown: the last retrain was {_minutes(since)} ago "
                                          f"(cooldown {policy.cooldown_minutes:g} min)")
        day = [t for t in earlier if now - t < timedelta(hours=24)]
        if len(day) >= policy.max_per_day:
            return RetrainDecision(False, f"{why}, but {len(day)} retrains in the last 24 h reach the cap "
                                          f"(max_per_day {policy.max_per_day})")
    return RetrainDecision(True, why, cause)


def _minutes(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes >= 1 else f"{delta.total_seconds():.0f} s"

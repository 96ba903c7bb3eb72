"""The promotion policy and rollback logic, as functions of plain data.

A promotion moves an alias (`staging`, `production`) to a model version. Whether it may is
decided here, from facts the registry store reads inside the promotion's transaction, so the
rules are tested as a table and the CLI, the TUI and the audit trail all see the same verdict:
every rule with pass or fail and a message with the numbers.

Rules (all of them are checked, so a refusal names every rule that failed):

- both aliases: the version does not hold the alias already; its run succeeded; every gate
  of the manifest passed on the version's metrics; its model file is intact.
- production only: the version is or was in staging; it is not worse than the current
  production version (the champion) on the primary metric by more than the tolerance; when
  the manifest asks, a `reproduce` run of its run wrote a byte-identical model and got the same
  metrics (timings aside).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Mapping, Sequence

from workbench.core.formatting import metric as format_metric
from workbench.core.gates import Gate, GateResult, evaluate_gates
from workbench.core.manifest import PromotionSpec
from workbench.core.reproduce import compare_metrics


class Alias(StrEnum):
    STAGING = "staging"
    PRODUCTION = "production"


ALIASES = tuple(a.value for a in Alias)


class Action(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    REFUSE = "refuse"
    """A promotion or rollback that a rule (or a concurrent change) stopped."""


@dataclass(frozen=True)
class ReproduceRun:
    """A `reproduce` run of a version's run (its model stage re-executed with the same cache
    key): the model file it wrote and the metrics it got."""

    run_id: int
    model_sha256: str | None
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class VersionFacts:
    """What the policy needs to know about one model version."""

    version: int
    run_id: int
    run_status: str
    run_reason: str
    metrics: Mapping[str, float]
    model_sha256: str
    model_intact: bool = True
    """Whether the model file still exists with the recorded sha256 (checked before deploying)."""
    model_problem: str = ""
    ever_in: frozenset[str] = frozenset()
    """Aliases the version has held at some point (including now)."""
    reproduction: ReproduceRun | None = None


@dataclass(frozen=True)
class Check:
    rule: str
    """A stable id: not_current, run_succeeded, gates_passed, model_intact, staged_first,
    champion, reproduced, alias_unchanged, rollback_target."""
    passed: bool
    detail: str
    """What was compared, with the numbers; said whether passed or failed."""

    @property
    def label(self) -> str:
        """The rule as a person reads it, the same in the CLI and the TUI."""
        return RULE_LABELS.get(self.rule, self.rule)


RULE_LABELS = {
    "not_current": "not there already", "run_succeeded": "run succeeded", "gates_passed": "gates passed",
    "model_intact": "model file intact", "staged_first": "staged first", "champion": "champion/challenger",
    "reproduced": "reproduced", "alias_unchanged": "alias unchanged", "rollback_target": "rollback target",
}
"""Check.rule (a stable id, kept in the audit trail and the JSON) → the words both front ends show."""


@dataclass(frozen=True)
class Comparison:
    """Champion/challenger on the primary metric: the numbers behind the `champion` rule."""

    metric: str
    goal: str
    challenger_version: int
    challenger_value: float | None
    champion_version: int | None
    champion_value: float | None
    tolerance: float

    @property
    def delta(self) -> float | None:
        """Challenger minus champion (positive is higher, whichever way is better)."""
        if self.challenger_value is None or self.champion_value is None:
            return None
        return self.challenger_value - self.champion_value

    @property
    def improvement(self) -> float | None:
        """How much better the challenger is (negative: worse), in the metric's units."""
        delta = self.delta
        if delta is None:
            return None
        return delta if self.goal == "maximize" else -delta

    @property
    def verdict(self) -> str:
        """better, equal, worse within tolerance, worse, or no champion / no value."""
        if self.champion_version is None:
            return "no champion"
        improvement = self.improvement
        if improvement is None:
            return "no value"
        if improvement > 0:
            return "better"
        if improvement == 0:
            return "equal"
        return "worse within tolerance" if -improvement <= self.tolerance + 1e-12 else "worse"

    def as_dict(self) -> dict:
        return {"metric": self.metric, "goal": self.goal, "challenger_version": self.challenger_version,
                "challenger_value": self.challenger_value, "champion_version": self.champion_version,
                "champion_value": self.champion_value, "tolerance": self.tolerance, "delta": self.delta,
                "improvement": self.improvement, "verdict": self.verdict}


@dataclass(frozen=True)
class Decision:
    """The verdict on one promotion or rollback; after it is applied, also its audit row id."""

    project: str
    alias: str
    version: int | None
    """The version asked for (a rollback's target; None when a rollback has none)."""
    action: str
    """promote or rollback: what was asked."""
    from_version: int | None
    """Who held the alias when the decision was made."""
    checks: tuple[Check, ...]
    gates: tuple[GateResult, ...] = ()
    comparison: Comparison | None = None
    applied: bool = False
    """True once the alias moved (False for a dry run and for a refusal)."""
    audit_id: int | None = None
    at: str | None = None
    """When it was recorded (ISO 8601, UTC)."""

    @property
    def allowed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def message(self) -> str:
        """One line: why it was refused (every failed rule), or what happens."""
        if not self.allowed:
            return "; ".join(c.detail for c in self.failed)
        was = f"version {self.from_version}" if self.from_version is not None else "nobody"
        would = "" if self.applied else "would be "
        if self.action == Action.ROLLBACK:
            return f"{self.alias}: {would}rolled back to version {self.version} (was {was})"
        return f"{self.alias}: version {self.version} {would}promoted (was {was})"

    def as_dict(self) -> dict:
        """JSON-ready, with the derived fields (allowed, message, the comparison's delta)."""
        return {
            "project": self.project, "alias": self.alias, "version": self.version, "action": self.action,
            "from_version": self.from_version, "allowed": self.allowed, "applied": self.applied,
            "message": self.message, "audit_id": self.audit_id, "at": self.at,
            "checks": [{"rule": c.rule, "passed": c.passed, "detail": c.detail} for c in self.checks],
            "gates": [{"rule": g.rule, "metric": g.metric, "op": g.op, "threshold": g.threshold,
                       "value": None if g.value is None or g.value != g.value else g.value,
                       "passed": g.passed, "detail": g.detail} for g in self.gates],
            "comparison": self.comparison.as_dict() if self.comparison else None,
        }


def gate_results(gates: Sequence[Gate], metrics: Mapping[str, float]) -> list[GateResult]:
    """The manifest's gates as they stand today, on the version's recorded metrics."""
    return evaluate_gates(tuple(gates), dict(metrics), complete=True)


def decide_promotion(project: str, candidate: VersionFacts, alias: str, holder: int | None,
                     champion: VersionFacts | None, gates: Sequence[Gate], policy: PromotionSpec,
                     primary_metric: str | None, goal: str = "maximize") -> Decision:
    """Whether `candidate` may take `alias` from `holder` (the version holding it now).

    `champion` is the version holding production (None when there is none); it is only
    compared for a production promotion.
    """
    if alias not in ALIASES:
        raise ValueError(f"alias must be one of {ALIASES}, got {alias!r}")
    v = candidate.version
    results = tuple(gate_results(gates, candidate.metrics))
    checks = [
        _not_current(v, alias, holder),
        _run_succeeded(candidate),
        _gates_passed(results, candidate.run_id),
        _model_intact(candidate),
    ]
    comparison = None
    if alias == Alias.PRODUCTION:
        checks.append(_staged_first(candidate))
        comparison = _comparison(candidate, champion, policy, primary_metric, goal)
        checks.append(_champion(comparison, policy, primary_metric, candidate, champion))
        if policy.require_reproducibility:
            checks.append(_reproduced(candidate))
    return Decision(project=project, alias=alias, version=v, action=Action.PROMOTE, from_version=holder,
                    checks=tuple(checks), gates=results, comparison=comparison)


def alias_moved(decision: Decision, now_held_by: int | None) -> Decision:
    """The decision refused because the alias changed hands after it was made."""
    def name(version: int | None) -> str:
        return f"v{version}" if version is not None else "nobody"

    check = Check("alias_unchanged", False,
                  f"{decision.alias} moved from {name(decision.from_version)} to {name(now_held_by)} since you "
                  "looked; review and try again")
    return Decision(project=decision.project, alias=decision.alias, version=decision.version,
                    action=decision.action, from_version=now_held_by, checks=decision.checks + (check,),
                    gates=decision.gates, comparison=decision.comparison)


# -- the rules --------------------------------------------------------------------------------

def _not_current(version: int, alias: str, holder: int | None) -> Check:
    if holder == version:
        return Check("not_current", False, f"version {version} already holds {alias}")
    held_by = f"version {holder}" if holder is not None else "nobody"
    return Check("not_current", True, f"{alias} is held by {held_by}")


def _run_succeeded(facts: VersionFacts) -> Check:
    if facts.run_status == "succeeded":
        return Check("run_succeeded", True, f"run {facts.run_id} succeeded")
    why = f": {facts.run_reason}" if facts.run_reason else ""
    return Check("run_succeeded", False, f"run {facts.run_id} did not succeed ({facts.run_status}{why})")


def _gates_passed(results: Sequence[GateResult], run_id: int) -> Check:
    if not results:
        return Check("gates_passed", True, "no gates declared")
    failing = [r for r in results if r.passed is not True]
    if not failing:
        passed = "the gate passed" if len(results) == 1 else f"all {len(results)} gates passed"
        return Check("gates_passed", True, passed)
    parts = [f"{r.rule} (run {run_id} did not report {r.metric})" if r.value is None else f"{r.rule} ({r.detail})"
             for r in failing]
    if len(failing) == 1:
        return Check("gates_passed", False, f"gate failed: {parts[0]}")
    return Check("gates_passed", False, f"{len(failing)} of {len(results)} gates failed: " + "; ".join(parts))


def _model_intact(facts: VersionFacts) -> Check:
    if facts.model_intact:
        return Check("model_intact", True, f"model file sha256 {facts.model_sha256[:12]} verified")
    return Check("model_intact", False, facts.model_problem or f"the model file of version {facts.version} is missing")


def _staged_first(facts: VersionFacts) -> Check:
    if Alias.STAGING in facts.ever_in:
        return Check("staged_first", True, f"version {facts.version} is or was in staging")
    return Check("staged_first", False,
                 f"version {facts.version} has never been in staging: promote it to staging first")


def _comparison(candidate: VersionFacts, champion: VersionFacts | None, policy: PromotionSpec,
                primary_metric: str | None, goal: str) -> Comparison | None:
    if not primary_metric:
        return None
    return Comparison(
        metric=primary_metric, goal=goal, challenger_version=candidate.version,
        challenger_value=_value(candidate.metrics, primary_metric),
        champion_version=champion.version if champion else None,
        champion_value=_value(champion.metrics, primary_metric) if champion else None,
        tolerance=policy.tolerance,
    )


def _champion(comparison: Comparison | None, policy: PromotionSpec, primary_metric: str | None,
              candidate: VersionFacts, champion: VersionFacts | None) -> Check:
    if not policy.champion_challenger:
        return Check("champion", True, "champion/challenger is off ([promotion] champion_challenger = false)")
    if comparison is None:
        return Check("champion", True, "no project.primary_metric: nothing to compare with the champion")
    m, v = primary_metric, candidate.version
    if comparison.challenger_value is None:
        return Check("champion", False, f"version {v} has no {m} (run {candidate.run_id} did not report it)")
    if champion is None:
        return Check("champion", True,
                     f"no production version yet: version {v} ({m} {_num(comparison.challenger_value)}) "
                     "becomes the first champion")
    if comparison.champion_value is None:
        return Check("champion", True, f"the production version {champion.version} has no {m}: nothing to compare")
    challenger, best = comparison.challenger_value, comparison.champion_value
    improvement = comparison.improvement
    higher_lower = "higher" if goal_is_max(comparison.goal) else "lower"
    numbers = (f"{m} {_num(challenger)} (version {v}) vs {_num(best)} (production version "
               f"{champion.version}, {higher_lower} is better)")
    if comparison.verdict == "worse":
        return Check("champion", False,
                     f"{numbers}: worse by {_delta(-improvement)}, more than the tolerance {policy.tolerance:g}")
    if comparison.verdict == "worse within tolerance":
        return Check("champion", True,
                     f"{numbers}: worse by {_delta(-improvement)}, within the tolerance {policy.tolerance:g}")
    sign = "+" if improvement > 0 else "±"
    return Check("champion", True, f"{numbers}: {comparison.verdict} ({sign}{_delta(abs(improvement))})")


def _reproduced(facts: VersionFacts) -> Check:
    r = facts.reproduction
    if r is None:
        return Check("reproduced", False,
                     f"version {facts.version} has not been reproduced: no `reproduce` run of run {facts.run_id} "
                     "with the same inputs ([promotion] require_reproducibility = true)")
    return Check("reproduced", *reproduction_verdict(facts.version, facts.run_id, facts.model_sha256,
                                                     facts.metrics, r))


def reproduction_verdict(version: int, run_id: int, model_sha256: str, metrics: Mapping[str, float],
                         r: ReproduceRun) -> tuple[bool, str]:
    """Did the reproduce run write a byte-identical model and get the same metrics (timings
    aside, as `workbench reproduce` compares them)?"""
    if r.model_sha256 != model_sha256:
        found = f"sha256 {r.model_sha256[:12]}" if r.model_sha256 else "no model"
        return False, (f"reproduce run {r.run_id} of run {run_id} wrote a different model: {found}, "
                       f"version {version} has sha256 {model_sha256[:12]}")
    _compared, differences = compare_metrics(dict(metrics), dict(r.metrics))
    if differences:
        return False, (f"reproduce run {r.run_id} of run {run_id} got different metrics: "
                       + "; ".join(str(d) for d in differences))
    return True, f"reproduce run {r.run_id} wrote the same model (sha256 {model_sha256[:12]}) and metrics"


def goal_is_max(goal: str) -> bool:
    return goal != "minimize"


def _value(metrics: Mapping[str, float], name: str) -> float | None:
    value = metrics.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _num(value: float) -> str:
    text = f"{value:.6g}"
    return format_metric(value) if "e" in text else text  # plain digits, never `1.04321e+06`


def _delta(value: float) -> str:
    return format_metric(value)


# -- rollback ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class AliasMove:
    """One successful move of an alias, oldest first: what rollback replays."""

    action: str
    """promote or rollback"""
    to_version: int


def alias_stack(moves: Sequence[AliasMove]) -> list[int]:
    """The alias's holders as an undo stack: the last item holds it now.

    A promotion pushes; a rollback to a version on the stack pops back to it (so rolling back
    twice goes back twice, not back and forth); a rollback to a version that left the stack
    (rolled back from, then wanted again) pushes it.
    """
    stack: list[int] = []
    for move in moves:
        if move.action == Action.ROLLBACK and move.to_version in stack:
            last = len(stack) - 1 - stack[::-1].index(move.to_version)
            del stack[last + 1:]
        elif not stack or stack[-1] != move.to_version:
            stack.append(move.to_version)
    return stack


def rollback_target(project: str, alias: str, moves: Sequence[AliasMove], holder: int | None,
                    to_version: int | None = None) -> Decision:
    """Where a rollback of `alias` goes: the previous holder, or `to_version` if it held it before.

    Rollback is the way back in an emergency, so it does not re-check gates or the champion:
    the target already served under this alias.
    """
    stack = alias_stack(moves)
    held_before = {m.to_version for m in moves}
    target = to_version
    if holder is None:
        check = Check("rollback_target", False, f"nothing to roll back: no version holds {alias}")
    elif to_version is None:
        if len(stack) < 2:
            check = Check("rollback_target", False,
                          f"no earlier {alias} version to roll back to (version {holder} is the first)")
        else:
            target = stack[-2]
            check = Check("rollback_target", True, f"{alias} goes back from version {holder} to version {target}, "
                                                   f"the one it replaced")
    elif to_version == holder:
        check = Check("rollback_target", False, f"version {to_version} already holds {alias}")
    elif to_version not in held_before:
        earlier = ", ".join(str(v) for v in sorted(held_before - {holder})) or "none"
        check = Check("rollback_target", False,
                      f"version {to_version} never held {alias}: a rollback goes to a version that did "
                      f"(earlier {alias} versions: {earlier}); promote it instead")
    else:
        check = Check("rollback_target", True, f"{alias} goes back from version {holder} to version {to_version}")
    return Decision(project=project, alias=alias, version=target, action=Action.ROLLBACK, from_version=holder,
                    checks=(check,))


def with_checks(decision: Decision, *checks: Check) -> Decision:
    """The decision with more checks (e.g. the rollback target's model file)."""
    return Decision(project=decision.project, alias=decision.alias, version=decision.version,
                    action=decision.action, from_version=decision.from_version,
                    checks=decision.checks + tuple(checks), gates=decision.gates, comparison=decision.comparison)


__all__ = [
    "ALIASES", "Action", "Alias", "AliasMove", "Check", "Comparison", "Decision", "ReproduceRun",
    "VersionFacts", "alias_moved", "alias_stack", "decide_promotion", "gate_results", "reproduction_verdict",
    "rollback_target", "with_checks",
]

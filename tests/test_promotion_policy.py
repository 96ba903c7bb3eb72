"""The promotion policy and rollback logic as tables: each rule, each refusal message, with numbers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from workbench.core.gates import parse_gate
from workbench.core.manifest import PromotionSpec
from workbench.core.promotion import (
    AliasMove, ReproduceRun, VersionFacts, alias_moved, alias_stack, decide_promotion, rollback_target,
)

GATES = (parse_gate("auc", ">= 0.80"), parse_gate("latency_p95_ms", "<= 20"))
SHA = "a" * 64


def facts(version=3, auc=0.85, latency=2.0, status="succeeded", reason="", ever=("staging",), **kw) -> VersionFacts:
    metrics = {"latency_p95_ms": latency}
    if auc is not None:
        metrics["auc"] = auc
    return VersionFacts(version=version, run_id=version + 4, run_status=status, run_reason=reason, metrics=metrics,
                        model_sha256=SHA, ever_in=frozenset(ever), **kw)


CHAMPION = facts(version=2, auc=0.85, ever=("staging", "production"))
SAME = {"auc": 0.85, "latency_p95_ms": 2.0}


def decide(candidate=None, alias="production", holder=2, champion=CHAMPION, gates=GATES, policy=PromotionSpec(),
           primary="auc", goal="maximize"):
    return decide_promotion("churn", candidate or facts(), alias, holder, champion, gates, policy, primary, goal)


def failed(decision) -> dict[str, str]:
    return {c.rule: c.detail for c in decision.checks if not c.passed}


# (case, decision, {failing rule: exact message}); an empty dict means the promotion is allowed.
CASES = [
    ("staging ok", decide(facts(ever=()), alias="staging", holder=None), {}),
    ("staging ignores the champion", decide(facts(auc=0.81, ever=()), alias="staging", holder=None), {}),
    ("already holds", decide(facts(), alias="staging", holder=3), {"not_current": "version 3 already holds staging"}),
    ("run failed", decide(facts(status="failed", reason="stage train failed: exited with code 1"), alias="staging",
                          holder=None),
     {"run_succeeded": "run 7 did not succeed (failed: stage train failed: exited with code 1)"}),
    ("gate failed", decide(facts(auc=0.75), alias="staging", holder=None),
     {"gates_passed": "gate failed: auc >= 0.8 (0.75 is not >= 0.8)"}),
    ("two gates failed", decide(facts(auc=0.75, latency=31.5), alias="staging", holder=None),
     {"gates_passed": "2 of 2 gates failed: auc >= 0.8 (0.75 is not >= 0.8); "
                      "latency_p95_ms <= 20 (31.5 is not <= 20)"}),
    ("gate metric missing", decide(facts(auc=None), alias="staging", holder=None),
     {"gates_passed": "gate failed: auc >= 0.8 (run 7 did not report auc)"}),
    ("model file gone", decide(facts(model_intact=False, model_problem="the model file of version 3 is gone: /x"),
                               alias="staging", holder=None),
     {"model_intact": "the model file of version 3 is gone: /x"}),
    ("production ok, better", decide(facts(auc=0.86)), {}),
    ("production equal", decide(facts(auc=0.85)), {}),
    ("never staged", decide(facts(ever=())),
     {"staged_first": "version 3 has never been in staging: promote it to staging first"}),
    ("was staged, now archived", decide(facts(ever=("staging",))), {}),
    ("first champion", decide(facts(), holder=None, champion=None), {}),
    ("worse than champion", decide(facts(auc=0.82)),
     {"champion": "auc 0.82 (version 3) vs 0.85 (production version 2, higher is better): worse by 0.03, "
                  "more than the tolerance 0"}),
    ("worse within tolerance", decide(facts(auc=0.849), policy=PromotionSpec(tolerance=0.002)), {}),
    ("worse beyond tolerance", decide(facts(auc=0.845), policy=PromotionSpec(tolerance=0.002)),
     {"champion": "auc 0.845 (version 3) vs 0.85 (production version 2, higher is better): worse by 0.005, "
                  "more than the tolerance 0.002"}),
    ("minimize: lower is better", decide(facts(auc=0.84), primary="auc", goal="minimize"), {}),
    ("minimize: higher is worse", decide(facts(auc=0.86), primary="auc", goal="minimize"),
     {"champion": "auc 0.86 (version 3) vs 0.85 (production version 2, lower is better): worse by 0.01, "
                  "more than the tolerance 0"}),
    ("challenger lacks the metric", decide(facts(auc=None), gates=()),
     {"champion": "version 3 has no auc (run 7 did not report it)"}),
    ("champion lacks the metric", decide(facts(), champion=facts(version=2, auc=None)), {}),
    ("champion/challenger off", decide(facts(auc=0.5), gates=(), policy=PromotionSpec(champion_challenger=False)), {}),
    ("no primary metric", decide(facts(auc=0.5), gates=(), primary=None), {}),
    ("no gates", decide(facts(auc=0.9), gates=()), {}),
    ("reproduction required, none", decide(facts(), policy=PromotionSpec(require_reproducibility=True)),
     {"reproduced": "version 3 has not been reproduced: no `reproduce` run of run 7 with the same inputs "
                    "([promotion] require_reproducibility = true)"}),
    ("reproduction required, different model",
     decide(facts(reproduction=ReproduceRun(12, "b" * 64, SAME)), policy=PromotionSpec(require_reproducibility=True)),
     {"reproduced": "reproduce run 12 of run 7 wrote a different model: sha256 bbbbbbbbbbbb, version 3 has "
                    "sha256 aaaaaaaaaaaa"}),
    ("reproduction required, different metrics",
     decide(facts(reproduction=ReproduceRun(12, SHA, {**SAME, "auc": 0.84})),
            policy=PromotionSpec(require_reproducibility=True)),
     {"reproduced": "reproduce run 12 of run 7 got different metrics: auc: 0.85 then 0.84"}),
    ("reproduction required, same model and metrics (timings aside)",
     decide(facts(reproduction=ReproduceRun(12, SHA, {**SAME, "latency_p95_ms": 9.0})),
            policy=PromotionSpec(require_reproducibility=True)), {}),
    ("reproduction not required", decide(facts(reproduction=ReproduceRun(12, "b" * 64, {}))), {}),
]


@pytest.mark.parametrize("case,decision,expected", CASES, ids=[c[0] for c in CASES])
def test_each_rule_and_its_message(case, decision, expected):
    assert failed(decision) == expected
    assert decision.allowed is (not expected)
    if expected:
        assert decision.message == "; ".join(expected.values())


def test_every_failing_rule_is_reported_at_once():
    decision = decide(facts(auc=0.70, ever=(), status="failed", reason="boom"))
    assert set(failed(decision)) == {"run_succeeded", "gates_passed", "staged_first", "champion"}
    assert decision.message.count("; ") == 3


def test_passing_checks_say_what_was_compared():
    decision = decide(facts(auc=0.8612))
    details = {c.rule: c.detail for c in decision.checks}
    assert details["champion"] == ("auc 0.8612 (version 3) vs 0.85 (production version 2, higher is better): "
                                   "better (+0.0112)")
    assert details["gates_passed"] == "all 2 gates passed"
    assert details["staged_first"] == "version 3 is or was in staging"
    assert decision.message == "production: version 3 would be promoted (was version 2)"
    assert replace(decision, applied=True).message == "production: version 3 promoted (was version 2)"


def test_comparison_numbers_for_the_audit_trail():
    c = decide(facts(auc=0.82)).comparison
    assert c.as_dict() == {"metric": "auc", "goal": "maximize", "challenger_version": 3, "challenger_value": 0.82,
                           "champion_version": 2, "champion_value": 0.85, "tolerance": 0.0,
                           "delta": pytest.approx(-0.03), "improvement": pytest.approx(-0.03), "verdict": "worse"}
    assert decide(facts(), alias="staging", holder=None).comparison is None


def test_gates_are_the_manifests_today_not_the_runs():
    """A gate added after the version's run applies to it: promotion re-checks the manifest's gates."""
    stricter = GATES + (parse_gate("auc", ">= 0.9"),)
    assert failed(decide(facts(auc=0.85), gates=stricter)) == {
        "gates_passed": "gate failed: auc >= 0.9 (0.85 is not >= 0.9)"}


def test_alias_moved_meanwhile():
    seen = decide(facts(), alias="staging", holder=1)
    moved = alias_moved(seen, now_held_by=4)
    assert not moved.allowed and moved.from_version == 4
    assert failed(moved) == {"alias_unchanged": "staging moved from v1 to v4 since you looked; review and try again"}


def test_unknown_alias_is_a_programming_error():
    with pytest.raises(ValueError):
        decide(alias="archived")


P, R = "promote", "rollback"
STACKS = [
    ([], []),
    ([(P, 1)], [1]),
    ([(P, 1), (P, 2), (P, 3)], [1, 2, 3]),
    ([(P, 1), (P, 2), (P, 3), (R, 2)], [1, 2]),
    ([(P, 1), (P, 2), (P, 3), (R, 2), (R, 1)], [1]),
    ([(P, 1), (P, 2), (R, 1), (P, 3)], [1, 3]),
    ([(P, 1), (P, 2), (P, 3), (R, 1)], [1]),
    ([(P, 1), (P, 2), (R, 1), (R, 2)], [1, 2]),  # rolled forward to a version that left the stack
    ([(P, 1), (P, 2), (P, 1)], [1, 2, 1]),        # promoted again: a promotion always pushes
]


@pytest.mark.parametrize("moves,stack", STACKS)
def test_alias_stack(moves, stack):
    assert alias_stack([AliasMove(a, v) for a, v in moves]) == stack


ROLLBACKS = [
    ("previous", [(P, 1), (P, 2), (P, 3)], 3, None, 2, None),
    ("twice goes back twice", [(P, 1), (P, 2), (P, 3), (R, 2)], 2, None, 1, None),
    ("after a new promotion", [(P, 1), (P, 2), (R, 1), (P, 3)], 3, None, 1, None),
    ("to a named version", [(P, 1), (P, 2), (P, 3)], 3, 1, 1, None),
    ("forward again", [(P, 1), (P, 2), (R, 1)], 1, 2, 2, None),
    ("nothing holds it", [], None, None, None, "nothing to roll back: no version holds production"),
    ("first version", [(P, 1)], 1, None, None,
     "no earlier production version to roll back to (version 1 is the first)"),
    ("never held", [(P, 1), (P, 2)], 2, 5, 5,
     "version 5 never held production: a rollback goes to a version that did (earlier production versions: 1); "
     "promote it instead"),
    ("to itself", [(P, 1), (P, 2)], 2, 2, 2, "version 2 already holds production"),
]


@pytest.mark.parametrize("case,moves,holder,to,target,refusal", ROLLBACKS, ids=[r[0] for r in ROLLBACKS])
def test_rollback_target(case, moves, holder, to, target, refusal):
    decision = rollback_target("churn", "production", [AliasMove(a, v) for a, v in moves], holder, to)
    assert decision.version == target and decision.from_version == holder
    assert decision.allowed is (refusal is None)
    if refusal:
        assert decision.message == refusal
    else:
        assert decision.message == f"production: would be rolled back to version {target} (was version {holder})"

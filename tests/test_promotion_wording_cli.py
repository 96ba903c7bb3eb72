"""The CLI's promotion confirmation says what the TUI's says: the delta as an improvement
(+ is better, in the metric's own direction) in the shared number format, and each check by
the human name core gives it."""

from __future__ import annotations

from workbench.cli.registry_commands import show_decision
from workbench.cli.render import Printer
from workbench.core.promotion import Check, Comparison, Decision


def _decision(goal: str, challenger: float, champion: float) -> Decision:
    comparison = Comparison(metric="rmse", goal=goal, challenger_version=2, challenger_value=challenger,
                            champion_version=1, champion_value=champion, tolerance=0.0)
    checks = (Check("not_current", True, "production is held by version 1"),
              Check("staged_first", True, "version 2 holds staging"),
              Check("champion", comparison.verdict != "worse", "numbers"))
    return Decision(project="wages", alias="production", version=2, action="promote", from_version=1,
                    checks=checks, comparison=comparison)


def _shown(capsys, decision: Decision) -> str:
    show_decision(Printer(), decision)
    return capsys.readouterr().out


def test_a_higher_error_reads_as_a_negative_delta_as_in_the_tui(capsys):
    # Lower is better: the challenger's RMSE is 0.0009852 above the champion's, so it is worse.
    text = _shown(capsys, _decision("minimize", 0.5009852, 0.5))
    assert "delta (+ is better) -0.0009852" in text and "→ worse" in text, text
    assert "Δ" not in text and "+0.0009852" not in text


def test_a_lower_error_reads_as_a_positive_delta(capsys):
    text = _shown(capsys, _decision("minimize", 0.49, 0.5))
    assert "delta (+ is better) +0.01" in text and "→ better" in text, text


def test_checks_are_named_as_people_read_them_not_by_their_ids(capsys):
    text = _shown(capsys, _decision("maximize", 0.9, 0.8))
    assert "not there already" in text and "staged first" in text, text
    assert "not_current" not in text and "staged_first" not in text
    checks = _decision("maximize", 0.9, 0.8).checks
    assert [c.label for c in checks] == ["not there already", "staged first", "champion/challenger"]

"""Gates: rules a run's metrics must pass, written in the manifest as `auc = ">= 0.80"`."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from workbench.core.formatting import metric as format_metric

OPERATORS = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
RULE_RE = re.compile(r"^\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class GateResult:
    metric: str
    op: str
    threshold: float
    value: float | None
    passed: bool | None
    """True or False once evaluated; None when the run did not produce the metric's stage."""
    detail: str

    @property
    def rule(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


def parse_gate(metric: str, rule: str) -> Gate:
    match = RULE_RE.match(rule)
    if not match:
        raise ValueError(f"{rule!r} is not a rule; write an operator and a number, e.g. \">= 0.80\"")
    return Gate(metric=metric, op=match.group(1), threshold=float(match.group(2)))


def evaluate_gates(gates: tuple[Gate, ...] | list[Gate], metrics: dict[str, float],
                   complete: bool) -> list[GateResult]:
    """Check each gate against the run's metrics.

    `complete` says whether every stage of the pipeline ran (or was reused) successfully; a
    missing metric then fails its gate, while in a partial run (`--stage`) it is not evaluated.
    """
    results = []
    for gate in gates:
        value = metrics.get(gate.metric)
        if value is None:
            passed = False if complete else None
            detail = "metric was not reported" if complete else "not evaluated (metric's stage did not run)"
        elif isinstance(value, float) and math.isnan(value):
            passed, detail = False, "metric is NaN"
        else:
            passed = bool(OPERATORS[gate.op](value, gate.threshold))
            shown = format_metric(value)  # plain digits: a gate on an RMSE of 10,432 read `1.043e+04`
            detail = f"{shown} {gate.op} {gate.threshold:g}" if passed else f"{shown} is not {gate.op} {gate.threshold:g}"
        results.append(GateResult(gate.metric, gate.op, gate.threshold, value, passed, detail))
    return results


def gates_passed(results: list[GateResult]) -> bool:
    return all(r.passed is not False for r in results)

"""Reproducibility checks: does a cold rerun of a run's snapshot give the same results?

Timing metrics (latency, seconds) are expected to differ between runs and are left out of the
comparison; everything else must match to a relative tolerance (deterministic training gives
identical numbers; the tolerance only absorbs float formatting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workbench.core.planning import matches_any

VOLATILE_METRICS = ("*_ms", "*_seconds", "*_s", "*latency*", "*duration*", "*time*")
REL_TOL = 1e-9


@dataclass(frozen=True)
class MetricDifference:
    name: str
    original: float | None
    reproduced: float | None

    def __str__(self) -> str:
        return f"{self.name}: {_fmt(self.original)} then {_fmt(self.reproduced)}"


@dataclass(frozen=True)
class Reproduction:
    original_run: int
    reproduce_run: int
    compared: tuple[str, ...]
    """The metrics compared (timings are left out)."""
    differences: tuple[MetricDifference, ...]
    artifacts_identical: dict[str, bool]
    """Per model artifact (e.g. model.txt): whether the reproduced file is byte-identical."""

    @property
    def matched(self) -> bool:
        return not self.differences and all(self.artifacts_identical.values())


def _fmt(value: float | None) -> str:
    return "missing" if value is None else f"{value:.6g}"


def compare_metrics(original: dict[str, float], reproduced: dict[str, float],
                    volatile: tuple[str, ...] = VOLATILE_METRICS) -> tuple[tuple[str, ...], tuple[MetricDifference, ...]]:
    names = sorted(n for n in set(original) | set(reproduced) if not matches_any(n, volatile))
    differences = []
    for name in names:
        a, b = original.get(name), reproduced.get(name)
        same = a is not None and b is not None and (
            (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12))
        if not same:
            differences.append(MetricDifference(name, a, b))
    return tuple(names), tuple(differences)

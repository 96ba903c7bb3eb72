"""A batch's verdict: whether the columns that drifted matter to the model that will see them.

Pure: no I/O, no numpy. workbench.core.drift compares the columns; this module judges the
batch from them (and is re-run when a report gains findings or weights).

    weights, unmapped = column_weights(importance, columns)      # model features -> data columns
    report = weigh(report, importance, "explanations of version 3 (gain)", spec)

Each compared feature column carries the production model's importance (ColumnDrift.importance:
its share of the model's gain, or mean |SHAP|, summing to 1 over the compared feature columns;
the target never weighs). Two verdict rules, `[drift] verdict`:

  weighted (the default), first rule that fires:
    not checked  a blocking finding (unreadable, empty, missing or retyped columns).
    drifted      a severe shift (ColumnDrift.major: PSI at least MAJOR_PSI_FACTOR x psi, or the
                 mean moved MAJOR_MEAN_SHIFT reference standard deviations or more, above the
                 noise of a batch that size) in an important feature: its weight is at least
                 `important_feature` (5%). It drifts the batch on its own.
    drifted      the drifted columns together carry at least `drift_importance` (30%) of the
                 model's importance.
    drifted      the share rule (drift_rule) fires: it stays as one input, since a model is
                 retrained on all of its columns and many drifted columns are news whatever
                 they weigh.
    warning      a severe shift in a minor column (as under `share`): worth a look, not a retrain.
    no drift     none of these.
  With no weights (no model yet, a model that is not LightGBM, features that match no column)
  the weighted rules have nothing to weigh: the share rule and the warning decide, exactly as
  under `share`, and the report says why there was no importance.

  share: the rule before weights (today's `judge`, unchanged): drifted when drift_rule fires,
  a warning on a severe shift, else no drift.

Why these defaults, checked on the example (its model trained on data/churn.csv: contract
holds about 40% of its gain, tenure 13%, online_security, monthly_charges and total_charges about
9% each, internet_service 7%, the other 13 features 4% or less) and on 50-column tables
(tests/test_drift_verdict.py, tests/test_drift_importance.py):

  important_feature 5%: about the even share of a 20-feature model, 2.5 times it on a 50-feature
    one. The example's monthly_charges holds under 10%, and a 40% price rise of it (PSI 2.4)
    is drift its model feels: at 5% it drifts the batch, at 10% it would be a mere warning.
    A severe shift is never noise (PSI past 2 x psi, or a whole standard deviation, above the
    noise of a batch that size), so a lower bar risks no clean batch; the 13 features under 5%
    here, or 49 features of 1-2% on a wide table, still only warn.
  drift_importance 30%: the example's clean batches drift no column at 1,000 rows and at most
    one at 200 (tenure, 13%, in 20 seeds); its drifted batches (tools/make_batch.py --kind
    drifted) drift contract, tenure, monthly_charges and more, about 70% of the importance.
    30% sits between, with room both sides: two or three mid features, or the main one alone.

Features map to columns (feature_column): by exact name; else with whitespace read as `_`
(LightGBM writes `monthly charges` as `monthly_charges`); else an encoded feature by prefix:
the longest column name followed by one of ENCODED_SEPARATORS (one-hot `contract_Month-to-month`
and `contract=Two year` -> `contract`; `payment_method_Electronic check` -> `payment_method`,
not `payment`). A feature that maps to no compared feature column is left out, and the others
renormalized; several features of one column add up.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Mapping, Sequence

from workbench.core.drift_report import (
    BREAKS_CONTRACT, DRIFTED, NO_DRIFT, NOT_CHECKED, WARNING, ColumnDrift, DriftReport, Finding,
)
from workbench.core.manifest import DriftSpec

SHARE, WEIGHTED = "share", "weighted"
"""`[drift] verdict` (workbench.core.manifest.DRIFT_VERDICTS): count the drifted columns only,
or weigh them by the model's importance."""
MAJOR_PSI_FACTOR = 2.0
"""A column whose PSI is at least this many times `psi` (the major-shift threshold) shifted a
lot: the batch is at least a warning, however few columns drifted."""
MAJOR_MEAN_SHIFT = 1.0
"""A number column whose mean moved this many reference standard deviations or more: the
same (a one-sd move of a main feature is large for any model that uses it)."""
ENCODED_SEPARATORS = "_=.:"
"""What follows a column's name in an encoded feature's (one-hot `contract_Two year`,
`contract=Two year`, `contract.Two year`, `contract:Two year`)."""
SHOWN = 3
"""Columns named in a verdict's words; the rest are counted."""
_EPSILON = 1e-9
"""Shares are sums of floats: 0.1 + 0.2 must reach 0.3."""


# -- the share rule (the verdict before weights) -----------------------------------------------

def drift_rule(compared: int, spec: DriftSpec) -> tuple[int, str]:
    """How many drifted columns make a batch drifted, and the rule in words: at least
    drift_share of the compared columns, or drift_columns of them, whichever is fewer."""
    by_share = max(1, math.ceil(spec.drift_share * compared - 1e-9))
    if by_share <= spec.drift_columns:
        return by_share, f"share >= {spec.drift_share:.0%}"
    return spec.drift_columns, f">= {spec.drift_columns} columns"


def major_shift(name: str, psi_value: float | None, mean_shift: float | None, spec: DriftSpec) -> str:
    """A column's shift that matters on its own, in words, or "": its PSI at least
    MAJOR_PSI_FACTOR times the major threshold, or its mean moved MAJOR_MEAN_SHIFT reference
    standard deviations or more."""
    said = []
    if mean_shift is not None and abs(mean_shift) >= MAJOR_MEAN_SHIFT:
        said.append(f"shifted by {mean_shift:+.1f} sd")
    if psi_value is not None and psi_value >= MAJOR_PSI_FACTOR * spec.psi:
        said.append(f"PSI {psi_value:.2f} (>= {MAJOR_PSI_FACTOR:g} x {spec.psi:g})")
    return f"{name} {', '.join(said)}" if said else ""


# -- the verdict -------------------------------------------------------------------------------

def judge(counted: Sequence[ColumnDrift], findings: Sequence[Finding], spec: DriftSpec) -> tuple[str, str]:
    """The batch's verdict and the rule that decided it, in words (workbench.core.drift_report's).

    An unusable batch (any blocking finding) is not checked, whatever its columns say: a
    missing or retyped column makes every other number suspect, and none of it is clean.
    Otherwise `spec.verdict` decides: the weighted rules (the columns' `importance`, when they
    carry it) or the share rule alone (see the module's docstring)."""
    blocking = [f for f in findings if f.blocking]
    broken = [f for f in blocking if f.kind == "contract"]
    if broken:  # invalid by the project's own definition of valid data: neither drifted nor clean
        return BREAKS_CONTRACT, "; ".join(f.message for f in broken[:SHOWN]) + (
            f" and {len(broken) - SHOWN} more" if len(broken) > SHOWN else "")
    if blocking:
        return NOT_CHECKED, "unusable batch: " + _unusable(blocking)
    if spec.verdict == WEIGHTED and any(c.importance is not None for c in counted):
        return _weighted(counted, spec)
    return _by_share(counted, spec)


def _by_share(counted: Sequence[ColumnDrift], spec: DriftSpec) -> tuple[str, str]:
    """Drifted when enough columns drifted (drift_rule); else a warning when a single column
    shifted a lot on its own (major_shift); else no drift."""
    needed, rule = drift_rule(len(counted), spec)
    if counted and sum(c.drifted for c in counted) >= needed:
        return DRIFTED, rule
    major = [c.major for c in counted if c.major]
    if major:
        return WARNING, _listed(major)
    return NO_DRIFT, rule


def _weighted(counted: Sequence[ColumnDrift], spec: DriftSpec) -> tuple[str, str]:
    """The weighted rules, in the order of the module's docstring; the words name the columns,
    how far they moved and how much of the model's importance they carry."""
    def weight(c: ColumnDrift) -> float:
        return c.importance or 0.0

    severe = sorted((c for c in counted if c.major and weight(c) >= spec.important_feature - _EPSILON),
                    key=lambda c: -weight(c))
    if severe:
        return DRIFTED, _listed([f"{c.major}, {percent(weight(c))} of the model's importance" for c in severe])
    drifted = sorted((c for c in counted if c.drifted), key=lambda c: (-weight(c), c.column))
    carried = sum(weight(c) for c in drifted)
    if drifted and carried >= spec.drift_importance - _EPSILON:
        names = ", ".join(c.column for c in drifted[:SHOWN]) + (
            f" and {len(drifted) - SHOWN} more" if len(drifted) > SHOWN else "")
        columns = "1 column" if len(drifted) == 1 else f"{len(drifted)} columns"
        return DRIFTED, (f"{columns} carrying {percent(carried)} of the importance drifted "
                         f"(>= {spec.drift_importance:.0%}): {names}")
    needed, rule = drift_rule(len(counted), spec)
    if len(drifted) >= needed:
        return DRIFTED, rule
    major = sorted((c for c in counted if c.major), key=lambda c: -weight(c))
    if major:
        return WARNING, _listed([f"{c.major}, {percent(weight(c))} of the model's importance "
                                 f"(< {spec.important_feature:.0%})" for c in major])
    return NO_DRIFT, f"{rule}; {percent(carried)} of the importance drifted, < {spec.drift_importance:.0%}"


def _listed(said: list[str]) -> str:
    return "; ".join(said[:SHOWN]) + (f" and {len(said) - SHOWN} more" if len(said) > SHOWN else "")


def percent(share: float) -> str:
    """A share of importance in words: `34%`, `<1%` for a sliver (not `0%`: it is not nothing)."""
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def _unusable(blocking: Sequence[Finding]) -> str:
    """Why a batch cannot be used, grouped: unreadable, empty, missing columns, retyped columns."""
    order = ("unreadable", "malformed_rows", "empty_batch", "missing_column", "type_change")
    by_kind: dict[str, list[Finding]] = {}
    for finding in sorted(blocking, key=lambda f: order.index(f.kind) if f.kind in order else len(order)):
        by_kind.setdefault(finding.kind, []).append(finding)
    parts = []
    for kind, found in by_kind.items():
        names = ", ".join(f.column for f in found if f.column)
        if kind == "missing_column":
            parts.append(f"missing column{'s' if len(found) > 1 else ''}: {names}")
        elif kind == "type_change":
            parts.append(f"retyped column{'s' if len(found) > 1 else ''} (numbers in the reference, text in the "
                         f"batch): {names}")
        elif kind == "empty_batch":
            parts.append("empty (no rows)")
        elif kind == "unreadable":
            parts.append(f"unreadable ({found[0].message})")
        elif kind == "malformed_rows":
            parts.append(f"malformed rows: {found[0].message.split(': ', 1)[-1]}")
        else:
            parts.append("; ".join(f.message for f in found))
    return "; ".join(parts)


# -- the weights -------------------------------------------------------------------------------

def feature_column(feature: str, columns: Sequence[str]) -> str | None:
    """The data column a model feature was made from, or None (see the module's docstring)."""
    if feature in columns:
        return feature
    spaced = {re.sub(r"\s", "_", c): c for c in columns}
    if feature in spaced:
        return spaced[feature]
    prefixes = [c for c in columns if len(feature) > len(c) and feature.startswith(c)
                and feature[len(c)] in ENCODED_SEPARATORS]
    return max(prefixes, key=len) if prefixes else None


def column_weights(importance: Mapping[str, float], columns: Sequence[str]) -> tuple[dict[str, float], list[str]]:
    """Each column's share of the model's importance (summing to 1; 0 for a column the model
    does not use), and the features that map to no column. All zeros ({} weights) when nothing
    the model leans on is one of the columns."""
    summed = dict.fromkeys(columns, 0.0)
    unmapped = []
    for feature, value in importance.items():
        column = feature_column(feature, columns)
        if column is None:
            unmapped.append(feature)
        elif math.isfinite(value) and value > 0:
            summed[column] += value
    total = sum(summed.values())
    if total <= 0:
        return {}, unmapped
    return {c: v / total for c, v in summed.items()}, unmapped


def weigh(report: DriftReport, importance: Mapping[str, float], source: str, spec: DriftSpec,
          why_none: str = "") -> DriftReport:
    """The report with each compared feature column's importance, where it came from, and the
    verdict they make. `importance`: model feature -> gain (or mean |SHAP|), any scale; empty
    when there is none, and `why_none` says why."""
    features = [c.column for c in report.features]
    weights, unmapped = column_weights(importance, features) if importance else ({}, [])
    note = ""
    if not weights:
        if importance:
            why_none = (f"none of the model's {len(importance)} features ({_few(sorted(importance))}) is a compared "
                        f"column of the data")
        note, source = f"no feature importance: {why_none or 'none recorded'}", "none"
    elif unmapped:
        note = f"left out, matching no compared column: {_few(sorted(unmapped))}"
    columns = tuple(replace(c, importance=weights.get(c.column) if c.role == "feature" and c.compared else None)
                    for c in report.columns)
    weighed = replace(report, columns=columns, importance_source=source, importance_note=note)
    verdict, rule = judge(weighed.features, weighed.findings, spec)
    return replace(weighed, verdict=verdict, rule=rule, drifted=verdict == DRIFTED)


def _few(names: list[str], limit: int = 4) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more

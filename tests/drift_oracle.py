"""The drift comparison as it was before reference profiles (commit c787f7a's
workbench/core/drift.py, one-column code and compare verbatim): the oracle the fast path is held
to in tests/test_drift_profile.py. Only the verdict (judge, major_shift) is imported from the
live module, so that a change of the verdict rule changes both sides alike."""

# ruff: noqa
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from workbench.core.drift import CATEGORICAL, NUMERIC, ColumnData, judge, major_shift
from workbench.core.drift_profile import ID_LIKE_MIN, ID_LIKE_SHARE, LOW_CARDINALITY
from workbench.core.drift_report import DRIFTED, ColumnDrift, DriftReport, Finding
from workbench.core.drift_stats import (
    category_counts, chi2_test, js_distance, js_noise, ks_test, mean_noise, noise_rng, psi, psi_level, psi_noise,
    quantile_bins, wasserstein_noise, wasserstein_normalized,
)
from workbench.core.manifest import DriftSpec

def compare(reference: Mapping[str, ColumnData], batch: Mapping[str, ColumnData], batch_rows: int,
            spec: DriftSpec, *, target: str | None = None, batch_name: str = "batch",
            reference_name: str = "reference", reference_rows: int | None = None) -> DriftReport:
    """Compare a batch with the reference, column by column (reference columns, in order)."""
    ref_rows = reference_rows if reference_rows is not None else max((len(c.text) for c in reference.values()),
                                                                      default=0)
    findings: list[Finding] = []
    columns: list[ColumnDrift] = []
    ignored = set(spec.ignore_columns)
    if batch_rows == 0:
        findings.append(Finding("empty_batch", f"{batch_name} has no rows: nothing to compare", blocking=True))
    else:
        for name, ref in reference.items():
            if name in ignored:
                continue
            role = "target" if name == target else "feature"
            current = batch.get(name)
            if current is None:
                if role == "target":
                    continue  # labels are optional
                findings.append(Finding("missing_column", f"column {name} is missing from the batch", name,
                                        blocking=True))
                columns.append(_flagged(name, ref, "missing", "missing from the batch", role))
                continue
            columns.append(_compare_column(ref, current, spec, role, findings))
        for name in batch:
            if name not in reference and name not in ignored:
                findings.append(Finding("new_column", f"column {name} is not in the reference: not compared", name))
    counted = [c for c in columns if c.role == "feature" and c.compared]
    drifted_n = sum(c.drifted for c in counted)
    share = drifted_n / len(counted) if counted else 0.0
    verdict, rule = judge(counted, findings, spec)
    return DriftReport(
        batch=batch_name, rows=batch_rows, reference=reference_name, reference_rows=ref_rows,
        columns=tuple(columns), findings=tuple(findings), drift_share=spec.drift_share, share=share,
        drifted=verdict == DRIFTED, target=target,
        has_labels=bool(target) and target in batch and batch[target].present > 0,
        verdict=verdict, rule=rule, drift_columns=spec.drift_columns,
    )



# -- one column --------------------------------------------------------------------------------

def _flagged(name: str, ref: ColumnData, test: str, detail: str, role: str, batch_count: int = 0,
             null_share: float = 1.0, drifted: bool = True) -> ColumnDrift:
    kind = NUMERIC if ref.numeric else CATEGORICAL
    return ColumnDrift(name, kind, test, None, None, None, None, drifted, 1.0 if drifted else 0.0, detail,
                       reference_count=ref.present, batch_count=batch_count, batch_null_share=null_share, role=role)


def _compare_column(ref: ColumnData, cur: ColumnData, spec: DriftSpec, role: str,
                    findings: list[Finding]) -> ColumnDrift:
    name = ref.name
    n_cur = len(cur.text)
    null_share = 1 - cur.present / n_cur if n_cur else 1.0
    if ref.present == 0:
        findings.append(Finding("not_compared", f"column {name} has no values in the reference: not compared", name))
        return _flagged(name, ref, "not_compared", "no values in the reference", role, cur.present, null_share,
                        drifted=False)
    if cur.present == 0:
        findings.append(Finding("all_null", f"column {name} has no values in the batch (all {n_cur} missing)", name,
                                blocking=False))
        return _flagged(name, ref, "all_null", f"all {n_cur} values missing", role, 0, 1.0)
    if ref.numeric and not cur.numeric:
        bad = [v for v, x in zip(cur.text, cur.numbers) if v is not None and math.isnan(x)]
        examples = ", ".join(repr(v) for v in dict.fromkeys(bad[:50]))
        examples = examples if len(examples) < 60 else examples[:57] + "..."
        findings.append(Finding("type_change", f"column {name}: numbers in the reference, text in the batch "
                                               f"({len(bad)} value{'s' if len(bad) != 1 else ''} such as {examples})", name,
                                blocking=True))
        return _flagged(name, ref, "type_change", f"was numbers, now text ({len(bad)} non-numbers)", role,
                        cur.present, null_share)
    small = ref.present <= spec.small_reference_rows
    if ref.numeric and not _low_cardinality(ref):
        return _numeric(ref, cur, spec, small, role, null_share)
    if not ref.numeric and _id_like(ref):
        findings.append(Finding("not_compared", f"column {name} looks like an identifier "
                                                f"({len(set(ref.text.tolist()) - {None})} distinct values): not compared", name))
        return _flagged(name, ref, "not_compared", "an identifier: not compared", role, cur.present, null_share,
                        drifted=False)
    return _categorical(ref, cur, spec, small, role, null_share, findings)


def _low_cardinality(col: ColumnData) -> bool:
    values = col.numbers[~np.isnan(col.numbers)]
    distinct = np.unique(values)
    return len(distinct) <= LOW_CARDINALITY and bool(np.all(distinct == np.round(distinct)))


def _id_like(col: ColumnData) -> bool:
    distinct = len(set(col.text.tolist()) - {None})
    return distinct > ID_LIKE_MIN and distinct > ID_LIKE_SHARE * col.present


def _numeric(ref: ColumnData, cur: ColumnData, spec: DriftSpec, small: bool, role: str,
             null_share: float) -> ColumnDrift:
    r = ref.numbers[~np.isnan(ref.numbers)]
    c = cur.numbers[~np.isnan(cur.numbers)]
    rng = noise_rng(ref.name, len(c))
    if small:
        test = _by_p_value("ks", "KS", *ks_test(r, c), spec.ks_pvalue)
    else:
        test = _by_distance("wasserstein", "Wasserstein", wasserstein_normalized(r, c), spec.wasserstein,
                            wasserstein_noise(r, len(c), rng), len(c), " sd")
    sd = float(np.std(r))
    mean_shift = float((np.mean(c) - np.mean(r)) / sd) if sd > 0 else None
    ref_bins, cur_bins = quantile_bins(r, c, spec.psi_bins)
    return _verdict(ref.name, NUMERIC, test, psi(ref_bins, cur_bins), psi_noise(ref_bins, len(c), rng), spec,
                    len(r), len(c), null_share, role, mean_shift)


def _categorical(ref: ColumnData, cur: ColumnData, spec: DriftSpec, small: bool, role: str,
                 null_share: float, findings: list[Finding]) -> ColumnDrift:
    # Low-cardinality numbers are named by their value (a type change was caught before).
    order, ref_n, cur_n = category_counts(_counts(ref, ref.numeric), _counts(cur, ref.numeric))
    new = [(cat, int(n)) for cat, e, n in zip(order, ref_n, cur_n) if e == 0 and n > 0]
    if new:
        listed = ", ".join(f"{cat!r} ({n})" for cat, n in new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
        findings.append(Finding("new_category", f"column {ref.name}: {len(new)} categor{'y' if len(new) == 1 else 'ies'} "
                                                f"not in the reference: {listed}", ref.name))
    rows = int(cur_n.sum())
    rng = noise_rng(ref.name, rows)
    if small:
        test = _by_p_value("chi2", "chi-squared", *chi2_test(ref_n, cur_n), spec.chi2_pvalue)
    else:
        test = _by_distance("jensen_shannon", "JS", js_distance(ref_n, cur_n), spec.jensen_shannon,
                            js_noise(ref_n, rows, rng), rows)
    return _verdict(ref.name, CATEGORICAL, test, psi(ref_n, cur_n), psi_noise(ref_n, rows, rng), spec,
                    int(ref_n.sum()), rows, null_share, role)


def _counts(col: ColumnData, as_numbers: bool) -> dict[str, int]:
    """{category: count} of a column's present values; numbers are named by their value."""
    if as_numbers:
        values, counts = np.unique(col.numbers[~np.isnan(col.numbers)], return_counts=True)
        return {f"{v:g}": int(n) for v, n in zip(values.tolist(), counts.tolist())}
    counts = Counter(col.text.tolist())
    counts.pop(None, None)
    return dict(counts)


@dataclass(frozen=True)
class _TestOutcome:
    """A column's test (ks, wasserstein, chi2 or jensen_shannon) against its threshold."""

    test: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    score: float
    said: str
    """The outcome in words, for the column's detail."""


def _by_p_value(test: str, label: str, statistic: float, p: float, alpha: float) -> _TestOutcome:
    """A test that drifts when its p-value is below `alpha`."""
    drifted = p < alpha
    return _TestOutcome(test, statistic, p, alpha, drifted, _p_score(p, alpha),
                        f"{label} p {_fmt(p)} {'<' if drifted else '>='} {alpha:g}")


def _by_distance(test: str, label: str, distance: float, limit: float, noise: float, rows: int,
                 unit: str = "") -> _TestOutcome:
    """A distance that drifts when it is above `limit` and above the sampling noise of a batch
    of `rows` (workbench.core.drift_stats): the threshold reported is whichever is higher."""
    bar = max(limit, noise)
    drifted = distance > bar
    said = f"{label} {_fmt(distance)}{unit} {'>' if drifted else '<='} {_fmt(bar)}"
    if noise > limit:
        said += f" (the noise of {rows:,} rows; threshold {limit:g})"
    return _TestOutcome(test, distance, None, bar, drifted, _d_score(distance, bar), said)


def _verdict(name: str, kind: str, outcome: _TestOutcome, psi_value: float, psi_floor: float, spec: DriftSpec,
             n_ref: int, n_cur: int, null_share: float, role: str, mean_shift: float | None = None) -> ColumnDrift:
    """The column drifts when its test or its PSI does; its bar shows whichever is nearer. PSI,
    like a distance, counts only above the noise of a batch this size."""
    psi_bar = max(spec.psi, psi_floor)
    psi_drift = psi_value > psi_bar
    detail = f"{outcome.said}; PSI {psi_value:.3f} ({psi_level(psi_value)})"
    if psi_drift and not outcome.drifted:
        detail += f" > {_fmt(psi_bar)}"
    if psi_floor > spec.psi:
        detail += f" (PSI noise of {n_cur:,} rows: {psi_floor:.3f})"
    if mean_shift is not None:
        detail += f"; mean {mean_shift:+.2f} sd"
    score = max(outcome.score, _d_score(psi_value, psi_bar))
    major = major_shift(name, psi_value if psi_drift else None,
                        mean_shift if mean_shift is not None and abs(mean_shift) > mean_noise(n_cur) else None, spec)
    return ColumnDrift(name, kind, outcome.test, outcome.statistic, outcome.p_value, outcome.threshold, psi_value,
                       outcome.drifted or psi_drift, score, detail,
                       reference_count=n_ref, batch_count=n_cur, batch_null_share=null_share, role=role,
                       mean_shift=mean_shift, major=major)


def _d_score(value: float, threshold: float) -> float:
    """A distance as a bar: half full at the threshold, full at twice the threshold."""
    return float(min(1.0, max(0.0, value / (2 * threshold))))


def _p_score(p: float, alpha: float) -> float:
    """A p-value as a bar, on a log scale: half full at alpha, full at alpha squared."""
    if p >= 1:
        return 0.0
    if p <= 0:
        return 1.0
    return float(min(1.0, max(0.0, math.log(p) / (2 * math.log(alpha)))))


def _fmt(value: float) -> str:
    return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"

"""Drift: how far a batch of new data is from the data a model was trained on, column by column.

Pure: no I/O. numpy and scipy.stats are allowed here and in workbench.core.drift_stats (and only
there in the core) because the statistics are the domain; adapters read the files and hand
columns in as numpy arrays. The reference is compared through its profile
(workbench.core.drift_profile: what the statistics need of it, computed once per reference
content) and the batch through BatchColumns (each with only what its reference column needs);
`compare` makes both from in-memory columns, the drift service from DuckDB queries. The
report's types are workbench.core.drift_report's; whether a report warrants a retrain is
workbench.core.drift_retrain's.

Per column (the target is reported but not counted in the batch's share):

  numbers     reference <= small_reference_rows: two-sample Kolmogorov-Smirnov, drifted when
              p < ks_pvalue; larger references: Wasserstein distance divided by the reference's
              standard deviation, drifted when > wasserstein. (On large samples a test's p-value
              flags differences too small to matter; a distance measures the size of the shift.)
  categories  small: chi-squared test of homogeneity on the two count vectors, drifted when
              p < chi2_pvalue; large: Jensen-Shannon distance (base 2, 0..1), drifted when > js.
  every column  PSI (population stability index) over reference deciles or categories; above
              `psi` (0.25, the common reading of "major shift") it drifts too.

A distance (Wasserstein, JS) or PSI counts only above the sampling noise of a batch of its
size as well as above its threshold (workbench.core.drift_stats: what random samples of that
size drawn from the reference itself score): a small batch of a many-category column is never
at distance zero from its own source, and on a wide table that noise alone used to drift three
columns of every small clean batch. The threshold a column reports is whichever was higher.

Numbers with at most LOW_CARDINALITY distinct integer values in the reference (flags such as
0/1, small counts) are compared as categories: a distance scaled by a standard deviation makes
a two-point shift in a 0/1 rate look large. A text column whose reference values are nearly all
distinct (an id) is not compared.

The batch's verdict (judge, workbench.core.drift_verdict: this is `[drift] verdict = "share"`,
and the weighted default's fallback when there is no feature importance), with its rule:

  not checked  a blocking finding: the batch is unreadable, empty, or misses or retypes a
               column. Nothing else it says counts, and it is never clean.
  drifted      at least `drift_share` of the compared feature columns drifted, or at least
               `drift_columns` of them, whichever is fewer columns (defaults 20% and 3: three
               columns of a 13-column table, three of 53, one of 4).
  warning      fewer columns drifted, but one shifted a lot on its own: its PSI is at least
               MAJOR_PSI_FACTOR times `psi`, or its mean moved MAJOR_MEAN_SHIFT reference
               standard deviations or more.
  no drift     none of these.

Findings (empty batch, missing or new columns, type changes, all-null columns, new
categories) are reported, never raised; the blocking ones stop a retrain on the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Mapping, Sequence

import numpy as np

from workbench.core.drift_profile import (  # noqa: F401 (LOW_CARDINALITY, ID_LIKE_*: defined there, used here)
    ATOMS, ID_LIKE_MIN, ID_LIKE_SHARE, LOW_CARDINALITY, NOTHING, BatchColumn, ReferenceColumn, ReferenceProfile,
    batch_from_column, exact_rows_for, needed, number_categories, profile_from_columns,
)
from workbench.core.drift_report import DRIFTED, NO_DRIFT, NOT_CHECKED, WARNING, ColumnDrift, DriftReport, Finding
from workbench.core.drift_stats import (
    bin_counts, category_counts, chi2_test, js_distance, js_noise, ks_test, mean_noise, noise_rng, psi, psi_level,
    psi_noise, wasserstein_noise_on_grid, wasserstein_sorted,
)
from workbench.core.drift_verdict import MAJOR_MEAN_SHIFT, MAJOR_PSI_FACTOR, drift_rule, judge, major_shift  # noqa: F401
from workbench.core.manifest import DriftSpec

NUMERIC, CATEGORICAL = "numeric", "categorical"


# -- the input ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnData:
    """One column of a table, as the adapter read it."""

    name: str
    text: np.ndarray
    """The values as text (object array; None where missing)."""
    numbers: np.ndarray
    """The values as float64; NaN where missing or not a number."""
    source_type: str = ""
    """What the file said the type was (DOUBLE, VARCHAR, ...), for messages."""

    @cached_property
    def present(self) -> int:
        """Values that are not missing."""
        return len(self.text) - int(np.count_nonzero(self.text == None))  # noqa: E711 (elementwise)

    @cached_property
    def numeric(self) -> bool:
        """Every present value is a number (and there is at least one)."""
        return self.present > 0 and int(np.count_nonzero(~np.isnan(self.numbers))) == self.present


def column_from_values(name: str, values: Sequence) -> ColumnData:
    """A ColumnData from plain Python values (tests, small tables); None is missing."""
    text = np.array([None if v is None else str(v) for v in values], dtype=object)
    numbers = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or isinstance(v, bool):
            continue
        try:
            numbers[i] = float(v)
        except (TypeError, ValueError):
            pass
    return ColumnData(name, text, numbers)


# -- the batch ---------------------------------------------------------------------------------

def compare(reference: Mapping[str, ColumnData], batch: Mapping[str, ColumnData], batch_rows: int,
            spec: DriftSpec, *, target: str | None = None, batch_name: str = "batch",
            reference_name: str = "reference", reference_rows: int | None = None) -> DriftReport:
    """Compare a batch with the reference, column by column (reference columns, in order),
    both in memory (tests, small tables): through the reference's profile, as the service does."""
    profile = profile_from_columns(reference, spec.psi_bins, exact_rows_for(spec.small_reference_rows), reference_rows)
    needs = needed(profile, list(batch))
    columns = {name: batch_from_column(col, needs.get(name, NOTHING)) for name, col in batch.items()}
    return compare_profile(profile, columns, batch_rows, spec, target=target, batch_name=batch_name,
                           reference_name=reference_name)


def compare_profile(profile: ReferenceProfile, batch: Mapping[str, BatchColumn], batch_rows: int, spec: DriftSpec,
                    *, target: str | None = None, batch_name: str = "batch",
                    reference_name: str = "reference") -> DriftReport:
    """compare, from the reference's profile and the batch's columns."""
    checks = {ref.name: check_column(ref, batch[ref.name], spec, role)
              for ref, role in planned(profile, list(batch), spec, target)} if batch_rows else {}
    has_labels = bool(target) and target in batch and batch[target].present > 0
    return report_from_checks(profile, checks, list(batch), batch_rows, spec, target=target, has_labels=has_labels,
                              batch_name=batch_name, reference_name=reference_name)


def planned(profile: ReferenceProfile, batch_names: Sequence[str], spec: DriftSpec,
            target: str | None) -> list[tuple[ReferenceColumn, str]]:
    """The reference columns a batch with these columns is checked on, in order, with their
    role (feature or target): not the ignored ones, nor those the batch lacks."""
    ignored, present = set(spec.ignore_columns), set(batch_names)
    return [(ref, "target" if name == target else "feature") for name, ref in profile.columns.items()
            if name not in ignored and name in present]


def report_from_checks(profile: ReferenceProfile, checks: Mapping[str, "ColumnCheck"], batch_names: Sequence[str],
                       batch_rows: int, spec: DriftSpec, *, target: str | None, has_labels: bool,
                       batch_name: str = "batch", reference_name: str = "reference") -> DriftReport:
    """The report of a batch whose planned columns were checked (check_column, in any order):
    the columns in the reference's order, the findings, the verdict."""
    findings: list[Finding] = []
    columns: list[ColumnDrift] = []
    ignored = set(spec.ignore_columns)
    present = set(batch_names)
    if batch_rows == 0:
        findings.append(Finding("empty_batch", f"{batch_name} has no rows: nothing to compare", blocking=True))
    else:
        for name, ref in profile.columns.items():
            if name in ignored:
                continue
            role = "target" if name == target else "feature"
            if name not in present:
                if role == "target":
                    continue  # labels are optional
                findings.append(Finding("missing_column", f"column {name} is missing from the batch", name,
                                        blocking=True))
                columns.append(_flagged(name, ref, "missing", "missing from the batch", role))
                continue
            column, found = checks[name]
            findings.extend(found)
            columns.append(column)
        for name in batch_names:
            if name not in profile.columns and name not in ignored:
                findings.append(Finding("new_column", f"column {name} is not in the reference: not compared", name))
    counted = [c for c in columns if c.role == "feature" and c.compared]
    drifted_n = sum(c.drifted for c in counted)
    share = drifted_n / len(counted) if counted else 0.0
    verdict, rule = judge(counted, findings, spec)
    return DriftReport(
        batch=batch_name, rows=batch_rows, reference=reference_name, reference_rows=profile.rows,
        columns=tuple(columns), findings=tuple(findings), drift_share=spec.drift_share, share=share,
        drifted=verdict == DRIFTED, target=target, has_labels=has_labels,
        verdict=verdict, rule=rule, drift_columns=spec.drift_columns,
    )


# -- one column --------------------------------------------------------------------------------

ColumnCheck = tuple[ColumnDrift, tuple[Finding, ...]]
"""A checked column and the findings it made."""


def check_column(ref: ReferenceColumn, cur: BatchColumn, spec: DriftSpec, role: str) -> ColumnCheck:
    """One reference column against the batch's (which has what ref.needs asked for)."""
    findings: list[Finding] = []
    return _compare_column(ref, cur, spec, role, findings), tuple(findings)


def _flagged(name: str, ref: ReferenceColumn, test: str, detail: str, role: str, batch_count: int = 0,
             null_share: float = 1.0, drifted: bool = True) -> ColumnDrift:
    kind = NUMERIC if ref.numeric else CATEGORICAL
    return ColumnDrift(name, kind, test, None, None, None, None, drifted, 1.0 if drifted else 0.0, detail,
                       reference_count=ref.present, batch_count=batch_count, batch_null_share=null_share, role=role)


def _compare_column(ref: ReferenceColumn, cur: BatchColumn, spec: DriftSpec, role: str,
                    findings: list[Finding]) -> ColumnDrift:
    name = ref.name
    n_cur = cur.rows
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
        bad = cur.non_numbers
        examples = ", ".join(repr(v) for v in dict.fromkeys(cur.examples))
        examples = examples if len(examples) < 60 else examples[:57] + "..."
        findings.append(Finding("type_change", f"column {name}: numbers in the reference, text in the batch "
                                               f"({bad} value{'s' if bad != 1 else ''} such as {examples})", name,
                                blocking=True))
        return _flagged(name, ref, "type_change", f"was numbers, now text ({bad} non-numbers)", role,
                        cur.present, null_share)
    small = ref.present <= spec.small_reference_rows
    if ref.compared_as_numbers:
        return _numeric(ref, cur, spec, small, role, null_share)
    if ref.id_like:
        findings.append(Finding("not_compared", f"column {name} looks like an identifier "
                                                f"({ref.distinct} distinct values): not compared", name))
        return _flagged(name, ref, "not_compared", "an identifier: not compared", role, cur.present, null_share,
                        drifted=False)
    return _categorical(ref, cur, spec, small, role, null_share, findings)


def _numeric(ref: ReferenceColumn, cur: BatchColumn, spec: DriftSpec, small: bool, role: str,
             null_share: float) -> ColumnDrift:
    c = cur.values
    ordered = np.sort(c)
    rng = noise_rng(ref.name, len(c))
    if small:
        if not ref.values.size:
            raise ValueError(f"the profile of {ref.name} kept no values for KS (built for fewer small rows)")
        test = _by_p_value("ks", "KS", *ks_test(ref.values, ordered), spec.ks_pvalue)
    else:
        scale = ref.scale
        test = _by_distance("wasserstein", "Wasserstein", wasserstein_sorted(ref.distribution, ordered) / scale,
                            spec.wasserstein,
                            wasserstein_noise_on_grid(ref.noise_grid, ref.noise_counts, scale, len(c), rng), len(c),
                            " sd", error=ref.wasserstein_error / scale)
    sd = ref.sd
    mean_shift = float((np.mean(c) - ref.mean) / sd) if sd > 0 else None
    ref_bins, cur_bins = ref.psi_counts, bin_counts(ref.psi_edges, ordered)
    return _verdict(ref.name, NUMERIC, test, psi(ref_bins, cur_bins), psi_noise(ref_bins, len(c), rng), spec,
                    ref.present, len(c), null_share, role, mean_shift)


def _categorical(ref: ReferenceColumn, cur: BatchColumn, spec: DriftSpec, small: bool, role: str,
                 null_share: float, findings: list[Finding]) -> ColumnDrift:
    # Low-cardinality numbers are named by their value (a type change was caught before).
    if ref.numeric:
        names, counts = number_categories(cur.values)
        current = dict(zip(names, counts.tolist()))
    else:
        current = cur.categories or {}
    order, ref_n, cur_n = category_counts(ref.category_map(), current)
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
                 unit: str = "", error: float = 0.0) -> _TestOutcome:
    """A distance that drifts when it is above `limit` and above the sampling noise of a batch
    of `rows` (workbench.core.drift_stats): the threshold reported is whichever is higher.
    `error`: how far the distance may be from the exact one (a compressed reference); said when
    the exact one could lie on the other side of the threshold."""
    bar = max(limit, noise)
    drifted = distance > bar
    said = f"{label} {_fmt(distance)}{unit} {'>' if drifted else '<='} {_fmt(bar)}"
    if noise > limit:
        said += f" (the noise of {rows:,} rows; threshold {limit:g})"
    if error > 0 and abs(distance - bar) <= error:
        said += f" (within {_fmt(error)} of the exact distance: the reference is kept as {ATOMS:,} quantiles)"
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

"""Drift: how far a batch of new data is from the data a model was trained on, column by column,
and whether that (or the model's decay on the batch) warrants a retrain.

Pure: no I/O. numpy and scipy.stats are allowed here (and only here in the core) because the
statistics are the domain; adapters read the files and hand columns in as numpy arrays.

Per column (the target is reported but not counted in the batch's share):

  numbers     reference <= small_reference_rows: two-sample Kolmogorov-Smirnov, drifted when
              p < ks_pvalue; larger references: Wasserstein distance divided by the reference's
              standard deviation, drifted when > wasserstein. (On large samples a test's p-value
              flags differences too small to matter; a distance measures the size of the shift.)
  categories  small: chi-squared test of homogeneity on the two count vectors, drifted when
              p < chi2_pvalue; large: Jensen-Shannon distance (base 2, 0..1), drifted when > js.
  every column  PSI (population stability index) over reference deciles or categories; above
              `psi` (0.25, the common reading of "major shift") it drifts too.

Numbers with at most LOW_CARDINALITY distinct integer values in the reference (flags such as
0/1, small counts) are compared as categories: a distance scaled by a standard deviation makes
a two-point shift in a 0/1 rate look large. A text column whose reference values are nearly all
distinct (an id) is not compared.

A batch is drifted when the share of its compared feature columns that drifted is at least
`drift_share`; a column missing from the batch, or whose numbers turned to text, counts as
drifted. Findings (empty batch, missing or new columns, type changes, all-null columns, new
categories) are reported, never raised; the blocking ones stop a retrain on the batch.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Mapping, Sequence

import numpy as np

from workbench.core.manifest import DriftSpec, RetrainSpec

NUMERIC, CATEGORICAL = "numeric", "categorical"
LOW_CARDINALITY = 10
"""Integer-valued numbers with at most this many distinct reference values are categories."""
ID_LIKE_SHARE = 0.9
"""A text column whose reference has distinct values for more than this share of its rows (and
more than ID_LIKE_MIN of them) looks like an identifier and is not compared."""
ID_LIKE_MIN = 50
PSI_EPSILON = 1e-4
"""Stands in for an empty bin's share in PSI (ln 0 is undefined); the usual choice."""
PSI_LEVELS = ((0.1, "stable"), (0.25, "moderate"), (math.inf, "major"))


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


# -- statistics ------------------------------------------------------------------------------

def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: (D statistic, p-value)."""
    from scipy import stats  # here, not at import: reading drift records needs no scipy

    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def wasserstein_normalized(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein (earth mover's) distance in units of the reference's standard deviation.

    A constant reference has no spread to scale by: its mean's magnitude (or 1) stands in."""
    from scipy import stats

    distance = float(stats.wasserstein_distance(reference, current))
    scale = float(np.std(reference))
    if scale <= 0:
        scale = abs(float(np.mean(reference))) or 1.0
    return distance / scale


def chi2_test(reference_counts: Sequence[float], current_counts: Sequence[float]) -> tuple[float, float]:
    """Chi-squared test of homogeneity of two count vectors over the same categories:
    (statistic, p-value). Categories absent from both are dropped; one category left means
    there is nothing to test (0, 1)."""
    from scipy import stats

    table = np.array([reference_counts, current_counts], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def js_distance(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """Jensen-Shannon distance (the square root of the divergence), base 2: 0 same, 1 disjoint."""
    from scipy.spatial.distance import jensenshannon

    p = np.asarray(reference_counts, dtype=float)
    q = np.asarray(current_counts, dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    value = float(jensenshannon(p / p.sum(), q / q.sum(), base=2))
    return 0.0 if math.isnan(value) else value


def psi(reference_counts: Sequence[float], current_counts: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index: sum over bins of (a - e) * ln(a / e), where e and a are the
    reference's and the batch's shares; an empty bin's share counts as `epsilon`."""
    e = np.asarray(reference_counts, dtype=float)
    a = np.asarray(current_counts, dtype=float)
    if e.sum() == 0 or a.sum() == 0:
        return 0.0
    e = np.where(e == 0, epsilon, e / e.sum())
    a = np.where(a == 0, epsilon, a / a.sum())
    return float(np.sum((a - e) * np.log(a / e)))


def psi_level(value: float) -> str:
    """stable (< 0.1), moderate (0.1 to 0.25), major (above 0.25)."""
    return next(name for bound, name in PSI_LEVELS if value < bound)


def quantile_bins(reference: np.ndarray, current: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both samples over the reference's quantile bins: right-closed, with edges at
    reference values (repeated edges of a discrete variable merge into one bin), the first bin
    open below and the last above."""
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf")
    inner = np.unique(edges[edges < np.max(reference)])
    size = len(inner) + 1
    ref = np.bincount(np.searchsorted(inner, reference, side="left"), minlength=size)
    cur = np.bincount(np.searchsorted(inner, current, side="left"), minlength=size)
    return ref, cur


def category_counts(reference: Sequence | Mapping[str, int], current: Sequence | Mapping[str, int]
                    ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The union of categories (the reference's, most frequent first, then new ones) and the
    count of each in both samples. Either side may be given as values or as {category: count}."""
    ref_map = reference if isinstance(reference, Mapping) else Counter(map(str, reference))
    cur_map = current if isinstance(current, Mapping) else Counter(map(str, current))
    order = sorted(ref_map, key=lambda c: (-ref_map[c], c)) + sorted(c for c in cur_map if c not in ref_map)
    return (order, np.array([ref_map.get(c, 0) for c in order], dtype=float),
            np.array([cur_map.get(c, 0) for c in order], dtype=float))


def _counts(col: ColumnData, as_numbers: bool) -> dict[str, int]:
    """{category: count} of a column's present values; numbers are named by their value."""
    if as_numbers:
        values, counts = np.unique(col.numbers[~np.isnan(col.numbers)], return_counts=True)
        return {f"{v:g}": int(n) for v, n in zip(values.tolist(), counts.tolist())}
    counts = Counter(col.text.tolist())
    counts.pop(None, None)
    return dict(counts)


# -- the report ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """Something about the batch worth knowing that is not a statistic."""

    kind: str
    """empty_batch, unreadable, missing_column, new_column, type_change, all_null, new_category,
    not_compared, no_reference."""
    message: str
    column: str | None = None
    blocking: bool = False
    """The batch cannot be appended to the training data as it is (no retrain on it)."""


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str
    """numeric or categorical (as compared)."""
    test: str
    """ks, wasserstein, chi2, jensen_shannon; or missing, type_change, all_null, not_compared."""
    statistic: float | None
    """KS D, normalized Wasserstein distance, chi-squared or JS distance."""
    p_value: float | None
    threshold: float | None
    """The test's threshold: a p-value level for ks and chi2, a distance for the others."""
    psi: float | None
    drifted: bool
    score: float
    """0..1 for a bar: 0.5 is the nearest threshold (of the test and PSI), 1 twice past it."""
    detail: str
    """The verdict in words, with the numbers."""
    reference_count: int = 0
    batch_count: int = 0
    batch_null_share: float = 0.0
    role: str = "feature"
    """feature, or target (reported, not counted in the batch's share)."""

    @property
    def compared(self) -> bool:
        """Counted in the batch's share (a missing, emptied or retyped column counts, drifted)."""
        return self.test != "not_compared"


@dataclass(frozen=True)
class Decay:
    """The production model's performance on a labelled batch against its recorded evaluation."""

    metric: str
    baseline: float
    """What the version's evaluation recorded."""
    value: float
    """What it scored on the batch."""
    drop: float
    """How much worse on the batch (positive = worse), whichever way the metric points."""
    max_drop: float | None
    decayed: bool
    metrics: dict[str, float] = field(default_factory=dict)
    """Everything the scoring step measured on the batch."""


@dataclass(frozen=True)
class DriftReport:
    batch: str
    rows: int
    reference: str
    """Where the reference came from, in words (file, run, version)."""
    reference_rows: int
    columns: tuple[ColumnDrift, ...]
    findings: tuple[Finding, ...]
    drift_share: float
    """The share of compared feature columns that must drift for the batch to be drifted."""
    share: float
    drifted: bool
    target: str | None = None
    has_labels: bool = False
    decay: Decay | None = None
    decay_note: str = ""
    """Why performance was not measured, when it was not."""

    @property
    def features(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.role == "feature" and c.compared]

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.features if c.drifted]

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    @property
    def summary(self) -> str:
        n, total = len(self.drifted_columns), len(self.features)
        verdict = "drifted" if self.drifted else "no drift"
        line = f"{verdict}: {n} of {total} columns ({self.share:.0%}; drifted at {self.drift_share:.0%})"
        if self.decay is not None:
            line += (f"; {self.decay.metric} {self.decay.value:.4g} on the batch vs {self.decay.baseline:.4g} "
                     f"evaluated" + (" (decayed)" if self.decay.decayed else ""))
        return line


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
    return DriftReport(
        batch=batch_name, rows=batch_rows, reference=reference_name, reference_rows=ref_rows,
        columns=tuple(columns), findings=tuple(findings), drift_share=spec.drift_share, share=share,
        drifted=bool(counted) and share >= spec.drift_share, target=target,
        has_labels=bool(target) and target in batch and batch[target].present > 0,
    )


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
    value = psi(*quantile_bins(r, c, spec.psi_bins))
    if small:
        statistic, p = ks_test(r, c)
        test_drift, test_score = p < spec.ks_pvalue, _p_score(p, spec.ks_pvalue)
        test, threshold = "ks", spec.ks_pvalue
        said = f"KS p {_fmt(p)} {'<' if test_drift else '>='} {spec.ks_pvalue:g}"
    else:
        statistic, p = wasserstein_normalized(r, c), None
        test_drift, test_score = statistic > spec.wasserstein, _d_score(statistic, spec.wasserstein)
        test, threshold = "wasserstein", spec.wasserstein
        said = f"Wasserstein {_fmt(statistic)} sd {'>' if test_drift else '<='} {spec.wasserstein:g}"
    return _verdict(ref.name, NUMERIC, test, statistic, p, threshold, value, test_drift, test_score, said,
                    spec, len(r), len(c), null_share, role)


def _categorical(ref: ColumnData, cur: ColumnData, spec: DriftSpec, small: bool, role: str,
                 null_share: float, findings: list[Finding]) -> ColumnDrift:
    # Low-cardinality numbers are named by their value (a type change was caught before).
    order, ref_n, cur_n = category_counts(_counts(ref, ref.numeric), _counts(cur, ref.numeric))
    new = [(cat, int(n)) for cat, e, n in zip(order, ref_n, cur_n) if e == 0 and n > 0]
    if new:
        listed = ", ".join(f"{cat!r} ({n})" for cat, n in new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
        findings.append(Finding("new_category", f"column {ref.name}: {len(new)} categor{'y' if len(new) == 1 else 'ies'} "
                                                f"not in the reference: {listed}", ref.name))
    value = psi(ref_n, cur_n)
    if small:
        statistic, p = chi2_test(ref_n, cur_n)
        test_drift, test_score = p < spec.chi2_pvalue, _p_score(p, spec.chi2_pvalue)
        test, threshold = "chi2", spec.chi2_pvalue
        said = f"chi-squared p {_fmt(p)} {'<' if test_drift else '>='} {spec.chi2_pvalue:g}"
    else:
        statistic, p = js_distance(ref_n, cur_n), None
        test_drift, test_score = statistic > spec.jensen_shannon, _d_score(statistic, spec.jensen_shannon)
        test, threshold = "jensen_shannon", spec.jensen_shannon
        said = f"JS {_fmt(statistic)} {'>' if test_drift else '<='} {spec.jensen_shannon:g}"
    return _verdict(ref.name, CATEGORICAL, test, statistic, p, threshold, value, test_drift, test_score, said,
                    spec, int(ref_n.sum()), int(cur_n.sum()), null_share, role)


def _verdict(name, kind, test, statistic, p, threshold, psi_value, test_drift, test_score, said, spec: DriftSpec,
             n_ref, n_cur, null_share, role) -> ColumnDrift:
    psi_drift = psi_value > spec.psi
    detail = f"{said}; PSI {psi_value:.3f} ({psi_level(psi_value)})"
    if psi_drift and not test_drift:
        detail += f" > {spec.psi:g}"
    score = max(test_score, _d_score(psi_value, spec.psi))
    return ColumnDrift(name, kind, test, statistic, p, threshold, psi_value, test_drift or psi_drift, score, detail,
                       reference_count=n_ref, batch_count=n_cur, batch_null_share=null_share, role=role)


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


# -- performance decay ------------------------------------------------------------------------

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


# -- retraining -------------------------------------------------------------------------------

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
    causes = []
    if report.drifted:
        if policy.on_drift:
            causes.append(("drift", f"drift in {len(report.drifted_columns)} of {len(report.features)} columns "
                                    f"({report.share:.0%} >= {report.drift_share:.0%})"))
    decay = report.decay
    if decay is not None and decay.decayed:
        causes.append(("decay", f"{decay.metric} {decay.value:.4g} on the batch vs {decay.baseline:.4g} evaluated: "
                                f"worse by {decay.drop:.4g} > {decay.max_drop:g}"))
    if not causes:
        if report.drifted:
            return RetrainDecision(False, "drifted, but retraining on drift is off ([drift.retrain] on_drift)")
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


# -- records ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckedBatch:
    """A batch as the lineage store keeps it: the check's outcome and the retrain it caused."""

    id: int
    project: str
    path: str
    """Relative to the project (when inside it)."""
    sha256: str
    state: str
    """checking (a process is on it) or checked."""
    landed_at: datetime
    checked_at: datetime | None = None
    rows: int | None = None
    reference_path: str | None = None
    reference_run_id: int | None = None
    reference_version: int | None = None
    drifted: bool | None = None
    share: float | None = None
    drifted_columns: int = 0
    compared_columns: int = 0
    decay_metric: str | None = None
    decay_baseline: float | None = None
    decay_value: float | None = None
    retrain: bool = False
    """Whether the check decided to retrain."""
    retrain_cause: str | None = None
    retrain_reason: str = ""
    retrain_run_id: int | None = None
    retrain_status: str | None = None
    """The retrain run's status (running, succeeded, ...), when there is one."""
    retrain_version: int | None = None
    """The model version the retrain run registered, if any."""
    retrain_version_status: str | None = None
    """That version's standing: production, staging, archived or registered."""
    report: DriftReport | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def report_to_dict(report: DriftReport) -> dict:
    """JSON-ready (NaN becomes None)."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    from dataclasses import asdict

    return clean(asdict(report))


def report_from_dict(data: dict) -> DriftReport:
    fields_ = dict(data)
    fields_["columns"] = tuple(ColumnDrift(**c) for c in data.get("columns", ()))
    fields_["findings"] = tuple(Finding(**f) for f in data.get("findings", ()))
    decay = data.get("decay")
    fields_["decay"] = Decay(**decay) if decay else None
    return DriftReport(**fields_)

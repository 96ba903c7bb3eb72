"""What a drift check says about a batch, and what the lineage store keeps of it: the findings,
the verdict per column, the model's decay, the batch's report, the checked batch's record, and
the report as JSON. workbench.core.drift produces the report; workbench.core.drift_retrain
decides on it.

Pure: dataclasses only.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Finding:
    """Something about the batch worth knowing that is not a statistic."""

    kind: str
    """empty_batch, unreadable, malformed_rows, missing_column, new_column, type_change,
    all_null, new_category, not_compared, no_reference, reference_rows, contract (a broken
    data contract: blocking for an error, not for a warning)."""
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
    mean_shift: float | None = None
    """Numbers: how far the batch's mean moved, in reference standard deviations (signed)."""
    major: str = ""
    """A shift large enough to matter on its own (PSI far past its threshold, or the mean moved
    a standard deviation or more), in words; empty when there is none."""
    importance: float | None = None
    """The column's share of the production model's importance (compared feature columns sum
    to 1; 0 for one the model does not use); None for the target, a column not compared, or
    when there was no importance to weigh by (workbench.core.drift_verdict)."""

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


DRIFTED, WARNING, NO_DRIFT, NOT_CHECKED = "drifted", "warning", "no drift", "not checked"
"""A batch's verdict: enough columns drifted; one column shifted a lot on its own; neither;
or the batch cannot be used as it is (unreadable, empty, missing or retyped columns), so
nothing it says counts, clean least of all."""
BREAKS_CONTRACT = "breaks the contract"
"""The batch breaks the data contract of the file it is compared with (an error-level check of
`<data file>.contract.toml`, docs/contracts.md): invalid data, neither drifted nor clean."""
_COUNT_RULE = re.compile(r"^(share >= \d+%|>= \d+ columns?)$")
"""The share rule's words (workbench.core.drift_verdict.drift_rule)."""


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
    verdict: str = ""
    """drifted, warning, no drift or not checked (see DRIFTED...); empty in reports recorded
    before verdicts (read back from `drifted`)."""
    rule: str = ""
    """Which rule decided the verdict, in words ("share >= 20%", "monthly_charges shifted by
    1.4 sd", "missing columns: tenure")."""
    drift_columns: int = 0
    """The number of drifted columns that makes the batch drifted whatever the share (0 in
    reports recorded before it existed)."""
    importance_source: str = ""
    """Where the columns' importance came from: "explanations of version 3 (gain)", "model file
    of version 3 (gain)", or "none" (importance_note says why); empty when the report was not
    weighed (recorded before weights)."""
    importance_note: str = ""
    """"no feature importance: <why>" when there was none, or the model's features left out
    because they match no compared column; else empty."""

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
    def status(self) -> str:
        """The verdict (reports recorded before verdicts: drifted or no drift)."""
        return self.verdict or (DRIFTED if self.drifted else NO_DRIFT)

    @property
    def usable(self) -> bool:
        return self.status not in (NOT_CHECKED, BREAKS_CONTRACT)

    @property
    def major_shifts(self) -> list[str]:
        """Compared feature columns whose shift matters on its own, in words."""
        return [c.major for c in self.features if c.major]

    @property
    def weighed(self) -> bool:
        """Its columns carry the model's importance."""
        return any(c.importance is not None for c in self.features)

    @property
    def importance_line(self) -> str:
        """Where the columns' weights came from, or why there were none, in one line ("" when
        the report was not weighed)."""
        if not self.importance_source:
            return ""
        if not self.weighed:
            return self.importance_note or "no feature importance"
        return f"importance: {self.importance_source}" + (f"; {self.importance_note}" if self.importance_note else "")

    @property
    def summary(self) -> str:
        """The verdict and why, in one line: the rule that decided it, with the columns, how
        far they moved and how much of the model's importance they carry."""
        n, total = len(self.drifted_columns), len(self.features)
        counted = f"{n} of {total} columns drifted ({self.share:.0%})"
        status = self.status
        # The share rule's words (drift_rule's) need the count beside them; the weighted rules'
        # words say it all.
        by_count = bool(_COUNT_RULE.search(self.rule))
        if not self.verdict:  # recorded before verdicts
            line = f"{status}: {counted}; drifted at {self.drift_share:.0%}"
        elif status in (NOT_CHECKED, BREAKS_CONTRACT):
            line = f"{status}: {self.rule}"
        elif status == DRIFTED:
            line = f"{status}: {counted}, rule: {self.rule}" if by_count else f"{status}: {self.rule}"
        elif status == WARNING:
            weighted = "of the model's importance" in self.rule
            line = f"{status}: {self.rule}; {counted}, below the drift rule{'s' if weighted else ''}"
        elif by_count:
            line = f"{status}: {counted}, below the drift rule ({self.rule})"
        else:
            line = f"{status}: {counted}, below the drift rules ({self.rule})"
        if self.decay is not None:
            line += (f"; {self.decay.metric} {self.decay.value:.4g} on the batch vs {self.decay.baseline:.4g} "
                     f"evaluated" + (" (decayed)" if self.decay.decayed else ""))
        return line


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
    def verdict(self) -> str:
        """checking, or the report's verdict (a checked batch recorded without one: from
        `drifted`, where NULL means it could not be checked)."""
        if self.state == "checking":
            return "checking"
        if self.report is not None:
            return self.report.status
        if self.drifted is None:
            return NOT_CHECKED
        return DRIFTED if self.drifted else NO_DRIFT

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

    return clean(asdict(report))


def report_from_dict(data: dict) -> DriftReport:
    fields_ = dict(data)
    fields_["columns"] = tuple(ColumnDrift(**c) for c in data.get("columns", ()))
    fields_["findings"] = tuple(Finding(**f) for f in data.get("findings", ()))
    decay = data.get("decay")
    fields_["decay"] = Decay(**decay) if decay else None
    return DriftReport(**fields_)

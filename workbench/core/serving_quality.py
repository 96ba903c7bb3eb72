"""What served traffic says about a model: its live quality (feedback labels against the
predictions it made) and the totals a status line shows (requests, errors, latency percentiles).

Pure: numbers in, numbers out; workbench.adapters.traffic_log reads the log.

The live metric follows the project's task as the drift decay measurement does: a binary
classifier that answers probabilities is judged by AUC (ranks, no threshold to pick), one that
answers labels by accuracy, a regression by RMSE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

POSITIVE = {"1", "true", "yes", "y", "positive"}
NEGATIVE = {"0", "false", "no", "n", "negative"}


@dataclass(frozen=True)
class Quality:
    metric: str
    """auc, accuracy or rmse."""
    value: float | None
    """None when it cannot be computed yet (one class only, no labelled row)."""
    labelled_rows: int
    goal: str = "maximize"


@dataclass(frozen=True)
class Totals:
    requests: int
    errors: int
    """Requests answered with another status than 200."""
    p50: float | None
    p95: float | None
    p99: float | None
    """Latency percentiles in seconds, over every request."""

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def totals(statuses: Sequence[int], seconds: Sequence[float]) -> Totals:
    if not statuses:
        return Totals(0, 0, None, None, None)
    values = np.asarray(seconds, dtype=float)
    p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
    return Totals(len(statuses), sum(1 for s in statuses if s != 200), p50, p95, p99)


def binary_label(value, positive: str | None = None) -> int | None:
    """1, 0, or None (not a binary label). With `positive` ([evaluation] positive), that value is
    1 and any other 0."""
    if value is None or isinstance(value, (list, dict)):
        return None
    text = str(value).strip().lower()
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    if positive is not None:
        return 1 if text == positive.strip().lower() else 0
    if text in POSITIVE:
        return 1
    if text in NEGATIVE:
        return 0
    return None


def auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """The area under the ROC curve (Mann-Whitney U over average ranks, ties counted half); None
    with one class only."""
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_scores = s[order]
    # Average ranks of ties: each run of equal scores gets the mean of its positions.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def live_quality(task: str, predictions: Sequence, labels: Sequence, positive: str | None = None) -> Quality:
    """The live metric of paired predictions and labels (rows whose label is None are left out).
    task: classification, regression or auto (as [evaluation] task)."""
    pairs = [(p, y) for p, y in zip(predictions, labels) if y is not None and p is not None]
    if task == "regression" or (task == "auto" and pairs and all(_number(y) for _, y in pairs)
                                and len({float(y) for _, y in pairs}) > 2):
        rows = [(float(p), float(y)) for p, y in pairs if _number(p) and _number(y)]
        if not rows:
            return Quality("rmse", None, 0, "minimize")
        error = np.array([p - y for p, y in rows])
        return Quality("rmse", float(math.sqrt(float(np.mean(error ** 2)))), len(rows), "minimize")
    answered = [p for p in predictions if p is not None]
    if answered and all(_number(p) and 0.0 <= float(p) <= 1.0 for p in answered):
        # Probabilities: judged by ranks; a label that is not binary cannot be ranked, and is left out.
        scored = [(float(p), binary_label(y, positive)) for p, y in pairs]
        scored = [(p, y) for p, y in scored if y is not None]
        return Quality("auc", auc([y for _, y in scored], [p for p, _ in scored]) if scored else None, len(scored))
    # Labels answered as labels: right when they read the same.
    hits = [_same_label(p, y, positive) for p, y in pairs]
    return Quality("accuracy", sum(hits) / len(hits) if hits else None, len(hits))


def _same_label(predicted, label, positive: str | None) -> bool:
    if str(predicted).strip().lower() == str(label).strip().lower():
        return True
    as_binary = binary_label(predicted, positive)
    return as_binary is not None and as_binary == binary_label(label, positive)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

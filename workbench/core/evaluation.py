"""Evaluation the workbench computes itself from a stage's predictions file (numpy only).

A stage that declares `predictions = "predictions.parquet"` writes one row per evaluated
example: the label, a score (probability of the positive class) or a prediction, and the
`data.sensitive` columns. From those arrays this module computes what every project otherwise
writes by hand: the confusion matrix at a threshold, ROC and precision-recall curves with their
areas, calibration, log loss; or, for regression, MAE, RMSE, R² and the residual distribution;
and per sensitive column, per group, the rates fairness is judged on. The formulas follow
scikit-learn's (roc_auc_score, average_precision_score, calibration_curve, log_loss, r2_score)
so the numbers agree with what a user would compute there (tests/test_evaluation_core.py).

`evaluate` returns the payload the lineage store keeps and the TUI and model card read;
`evaluation_metrics` flattens it into the metric names gates and comparisons use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.core.errors import WorkbenchError

MAX_CURVE_POINTS = 200
"""Stored curves are downsampled to this many points (the areas use the full curves)."""
CALIBRATION_BINS = 10
RESIDUAL_BINS = 20
MAX_GROUPS = 100
"""A sensitive column with more distinct values than this is an id, not a group."""
MISSING_GROUP = "(missing)"
KNOWN_POSITIVE = {"1", "true", "yes", "y", "positive", "pos"}
"""With string labels, the value (of two) taken as the positive class when none is configured."""
TASKS = ("auto", "classification", "regression")


class PredictionsError(WorkbenchError):
    """A predictions file cannot be evaluated: the message names the file and the column."""


@dataclass(frozen=True)
class Predictions:
    """The columns of a predictions file, as arrays of equal length."""

    source: str
    """The file, as the user knows it (e.g. `evaluate/predictions.parquet`), for messages."""
    label_name: str
    label: np.ndarray
    score: np.ndarray | None = None
    """Probability of the positive class (binary classification)."""
    prediction: np.ndarray | None = None
    """A predicted value (regression) or a predicted class."""
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    """Sensitive column -> its value per row."""


def evaluate(preds: Predictions, task: str = "auto", threshold: float = 0.5,
             positive: str | None = None) -> dict[str, Any]:
    """The evaluation payload (see DuckDBEvaluationStore for its shape); PredictionsError when
    the columns cannot support it."""
    if len(preds.label) == 0:
        raise PredictionsError(f"{preds.source}: has no rows to evaluate")
    kind = infer_task(preds, task)
    if kind == "binary":
        return _evaluate_binary(preds, threshold, positive)
    return _evaluate_regression(preds)


def infer_task(preds: Predictions, task: str = "auto") -> str:
    """`binary` or `regression`. `classification` and `regression` are taken as told; `auto`
    is binary when there is a score or the label has two values, regression otherwise."""
    if task == "classification":
        return "binary"
    if task == "regression":
        if preds.prediction is None:
            raise PredictionsError(f"{preds.source}: a regression needs a 'prediction' column "
                                   f"(columns read: {_columns_read(preds)})")
        return "regression"
    if preds.score is not None:
        return "binary"
    values = _distinct(_present(preds.label))
    if len(values) <= 2:
        return "binary"
    if not _numeric(preds.label):
        raise PredictionsError(f"{preds.source}: column {preds.label_name!r} has {len(values)} distinct values "
                               "that are not numbers: only binary classification and regression are evaluated")
    return "regression"


def evaluation_metrics(payload: dict[str, Any]) -> dict[str, float]:
    """The payload as flat metrics (`auc`, `f1`, `demographic_parity_difference.female`,
    `group.female.1.tpr`, ...); undefined values (an AUC of a one-class group) are left out."""
    metrics: dict[str, float | None] = {}
    if payload["task"] == "binary":
        metrics.update(threshold_metrics(payload["confusion"]["matrix"]))
        metrics["auc"] = payload["roc"]["auc"] if payload["roc"] else None
        metrics["average_precision"] = payload["pr"]["average_precision"] if payload["pr"] else None
        metrics["ece"] = payload["calibration"]["ece"] if payload["calibration"] else None
        metrics["log_loss"] = payload["log_loss"]
    else:
        regression = payload["regression"]
        metrics.update(mae=regression["mae"], rmse=regression["rmse"], r2=regression["r2"])
    for column, fairness in payload["fairness"].items():
        for name, value in fairness.items():
            metrics[f"{name}.{column}"] = value
    for column, groups in payload["groups"].items():
        for group in groups:
            for stat in ("size", "base_rate", "prediction_rate", "tpr", "fpr", "auc", "mae"):
                metrics[f"group.{column}.{group['group']}.{stat}"] = group[stat]
    return {name: float(value) for name, value in metrics.items() if value is not None}


# Binary classification ---------------------------------------------------------------------

def _evaluate_binary(preds: Predictions, threshold: float, positive: str | None) -> dict[str, Any]:
    y, labels = binary_labels(preds.label, preds.label_name, preds.source, positive)
    score = preds.score
    if score is not None:
        _check_finite(score, "score", preds.source)
        if score.min() < 0 or score.max() > 1:
            raise PredictionsError(f"{preds.source}: column 'score' must hold probabilities of the positive class "
                                   f"(0 to 1), found values from {score.min():g} to {score.max():g}")
        predicted = (score >= threshold).astype(np.int64)
    elif preds.prediction is not None:
        predicted = _predicted_classes(preds.prediction, labels, preds.source)
    else:
        raise PredictionsError(f"{preds.source}: needs a 'score' column (probability of the positive class) "
                               f"or a 'prediction' column (columns read: {_columns_read(preds)})")
    tn, fp, fn, tp = confusion(y, predicted)
    payload: dict[str, Any] = {
        "task": "binary", "rows": len(y), "threshold": float(threshold) if score is not None else None,
        "label": preds.label_name,
        "confusion": {"labels": labels, "matrix": [[tn, fp], [fn, tp]]},
        "roc": None, "pr": None, "calibration": None, "log_loss": None, "regression": None,
    }
    if score is not None:
        payload["roc"] = _roc(y, score)
        payload["pr"] = _precision_recall(y, score)
        payload["calibration"] = calibration(y, score)
        payload["log_loss"] = log_loss(y, score)
    groups, fairness = {}, {}
    for column, values in preds.groups.items():
        rows = _binary_groups(y, predicted, score, _group_keys(values, column, preds.source))
        groups[column] = rows
        fairness[column] = {
            "demographic_parity_difference": _spread([r["prediction_rate"] for r in rows]),
            "equalized_odds_difference": max(_spread([r["tpr"] for r in rows]), _spread([r["fpr"] for r in rows])),
        }
    payload["groups"], payload["fairness"] = groups, fairness
    return payload


def binary_labels(label: np.ndarray, name: str, source: str, positive: str | None = None) -> tuple[np.ndarray, list]:
    """(0/1 per row, [negative value, positive value]). Numbers and booleans: the larger value is
    positive; strings: `positive` if given, else the one of yes/true/1/positive."""
    _check_present(label, name, source)
    values = _distinct(label)
    if len(values) > 2:
        shown = ", ".join(map(str, values[:5]))
        raise PredictionsError(f"{source}: column {name!r} has {len(values)} distinct values ({shown}, ...): "
                               "binary classification needs two (set [evaluation] task = \"regression\" "
                               "for a numeric target)")
    if positive is not None:
        texts = [str(v) for v in values]
        if positive not in texts:
            raise PredictionsError(f"{source}: [evaluation] positive = {positive!r} is not a value of column "
                                   f"{name!r} (values: {', '.join(texts)})")
        pos = values[texts.index(positive)]
    elif all(_is_number(v) for v in values):
        pos = max(values, key=float)
        if len(values) == 1 and float(pos) <= 0:  # a test set of negatives only
            return np.zeros(len(label), dtype=np.int64), [_plain(pos), None]
    else:
        known = [v for v in values if str(v).strip().lower() in KNOWN_POSITIVE]
        if len(known) != 1:
            raise PredictionsError(f"{source}: cannot tell which value of column {name!r} is the positive class "
                                   f"({', '.join(map(str, values))}); set [evaluation] positive in workbench.toml")
        pos = known[0]
    y = np.array([v == pos for v in label], dtype=np.int64) if label.dtype == object else (label == pos).astype(np.int64)
    others = [v for v in values if v != pos]
    return y, [_plain(others[0]) if others else None, _plain(pos)]


def threshold_metrics(matrix: list[list[int]]) -> dict[str, float]:
    """Accuracy, precision, recall and F1 from [[tn, fp], [fn, tp]]; an undefined ratio is 0
    (scikit-learn's zero_division=0)."""
    (tn, fp), (fn, tp) = matrix
    return {"accuracy": _ratio(tp + tn, tn + fp + fn + tp), "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def confusion(y: np.ndarray, predicted: np.ndarray) -> tuple[int, int, int, int]:
    """(tn, fp, fn, tp) for 0/1 arrays."""
    tp = int(np.sum((y == 1) & (predicted == 1)))
    fp = int(np.sum((y == 0) & (predicted == 1)))
    fn = int(np.sum((y == 1) & (predicted == 0)))
    return len(y) - tp - fp - fn, fp, fn, tp


def _binary_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives above each distinct score, highest score first (scikit-learn's
    _binary_clf_curve)."""
    order = np.argsort(score, kind="mergesort")[::-1]
    score, y = score[order], y[order]
    distinct = np.where(np.diff(score))[0]
    thresholds = np.r_[distinct, len(y) - 1]
    tps = np.cumsum(y, dtype=np.float64)[thresholds]
    fps = 1 + thresholds - tps
    return tps, fps


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    curve = _roc(y, score)
    return curve["auc"] if curve else None


def _roc(y: np.ndarray, score: np.ndarray) -> dict[str, Any] | None:
    if len(np.unique(y)) < 2:
        return None
    tps, fps = _binary_curve(y, score)
    tpr = np.r_[0.0, tps] / tps[-1]
    fpr = np.r_[0.0, fps] / fps[-1]
    auc = float(np.trapezoid(tpr, fpr))
    keep = downsample(len(fpr))
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(), "auc": auc}


def _precision_recall(y: np.ndarray, score: np.ndarray) -> dict[str, Any] | None:
    if not y.any():
        return None
    tps, fps = _binary_curve(y, score)
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted != 0)
    recall = tps / tps[-1]
    precision, recall = np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]
    average_precision = float(-np.sum(np.diff(recall) * precision[:-1]))
    keep = downsample(len(recall))
    return {"recall": recall[keep].tolist(), "precision": precision[keep].tolist(),
            "average_precision": average_precision}


def calibration(y: np.ndarray, score: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability curve over `bins` equal-width bins of the score (empty bins left out, as
    scikit-learn's calibration_curve does) and the expected calibration error: the mean gap
    between a bin's observed positive rate and its mean score, weighted by the bin's rows."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], score)
    sums = np.bincount(ids, weights=score, minlength=bins)
    trues = np.bincount(ids, weights=y, minlength=bins)
    totals = np.bincount(ids, minlength=bins)
    used = totals != 0
    prob_true, prob_pred = trues[used] / totals[used], sums[used] / totals[used]
    counts = totals[used]
    ece = float(np.sum(counts / len(y) * np.abs(prob_true - prob_pred)))
    return {"prob_pred": prob_pred.tolist(), "prob_true": prob_true.tolist(), "counts": counts.astype(int).tolist(),
            "ece": ece}


def log_loss(y: np.ndarray, score: np.ndarray) -> float:
    """Mean cross-entropy, probabilities clipped to [eps, 1 - eps] as scikit-learn does."""
    eps = np.finfo(np.float64).eps
    p = np.clip(score.astype(np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _predicted_classes(prediction: np.ndarray, labels: list, source: str) -> np.ndarray:
    _check_present(prediction, "prediction", source)
    texts = {str(v) for v in _distinct(prediction)}
    known = {str(v) for v in labels if v is not None}
    if not texts <= known:
        raise PredictionsError(f"{source}: column 'prediction' holds {', '.join(sorted(texts - known))}, "
                               f"which are not values of the label ({', '.join(sorted(known))})")
    return np.array([str(v) == str(labels[1]) for v in prediction], dtype=np.int64)


def _binary_groups(y: np.ndarray, predicted: np.ndarray, score: np.ndarray | None,
                   keys: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(set(keys.tolist())):
        mask = keys == key
        y_g, p_g = y[mask], predicted[mask]
        rows.append({
            "group": key, "size": int(mask.sum()), "base_rate": float(y_g.mean()),
            "prediction_rate": float(p_g.mean()),
            "tpr": _mean_or_none(p_g[y_g == 1]), "fpr": _mean_or_none(p_g[y_g == 0]),
            "auc": roc_auc(y_g, score[mask]) if score is not None else None, "mae": None,
        })
    return rows


# Regression ---------------------------------------------------------------------------------

def _evaluate_regression(preds: Predictions) -> dict[str, Any]:
    y = _as_numbers(preds.label, preds.label_name, preds.source)
    if preds.prediction is None:
        raise PredictionsError(f"{preds.source}: a regression needs a 'prediction' column "
                               f"(columns read: {_columns_read(preds)})")
    p = _as_numbers(preds.prediction, "prediction", preds.source)
    residuals = y - p
    counts, edges = np.histogram(residuals, bins=RESIDUAL_BINS)
    payload: dict[str, Any] = {
        "task": "regression", "rows": len(y), "threshold": None, "label": preds.label_name,
        "confusion": None, "roc": None, "pr": None, "calibration": None, "log_loss": None,
        "regression": {
            "mae": float(np.mean(np.abs(residuals))), "rmse": float(np.sqrt(np.mean(residuals ** 2))),
            "r2": r2(y, p), "residuals": {"edges": edges.tolist(), "counts": counts.astype(int).tolist()},
        },
    }
    groups, fairness = {}, {}
    for column, values in preds.groups.items():
        keys = _group_keys(values, column, preds.source)
        rows = []
        for key in sorted(set(keys.tolist())):
            mask = keys == key
            rows.append({
                "group": key, "size": int(mask.sum()), "base_rate": float(y[mask].mean()),
                "prediction_rate": float(p[mask].mean()), "tpr": None, "fpr": None, "auc": None,
                "mae": float(np.mean(np.abs(residuals[mask]))),
            })
        groups[column] = rows
        # Parity for a regression: the spread of the mean prediction between groups, in the
        # label's units; equalized odds has no meaning without classes.
        fairness[column] = {"demographic_parity_difference": _spread([r["prediction_rate"] for r in rows]),
                            "equalized_odds_difference": None}
    payload["groups"], payload["fairness"] = groups, fairness
    return payload


def r2(y: np.ndarray, p: np.ndarray) -> float:
    """Coefficient of determination; a constant label gives 1.0 when predicted exactly, else
    0.0 (scikit-learn's force_finite)."""
    residual = float(np.sum((y - p) ** 2))
    total = float(np.sum((y - np.mean(y)) ** 2))
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / total


# Helpers ------------------------------------------------------------------------------------

def downsample(n: int, limit: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most `limit` points spread evenly over a curve of n, first and last kept."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _group_keys(values: np.ndarray, column: str, source: str) -> np.ndarray:
    keys = np.array([MISSING_GROUP if _missing(v) else _group_text(v) for v in values], dtype=object)
    distinct = len(set(keys.tolist()))
    if distinct > MAX_GROUPS:
        raise PredictionsError(f"{source}: sensitive column {column!r} has {distinct} distinct values; a column "
                               f"fairness is measured over needs at most {MAX_GROUPS} groups")
    return keys


def _group_text(value: Any) -> str:
    # 1.0 and 1 are one group; a float column read from Parquet must not name it "1.0".
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(_plain(value))


def _spread(values: list[float | None]) -> float:
    defined = [v for v in values if v is not None]
    return float(max(defined) - min(defined)) if len(defined) > 1 else 0.0


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0  # scikit-learn's zero_division=0


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and np.isnan(value))


def _present(values: np.ndarray) -> np.ndarray:
    return np.array([v for v in values if not _missing(v)], dtype=object)


def _distinct(values: np.ndarray) -> list:
    seen: dict = {}
    for value in values.tolist():
        if not _missing(value):
            seen.setdefault(value, None)
    return sorted(seen, key=lambda v: (str(type(v)), v))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, bool, np.integer, np.floating, np.bool_))


def _numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "biuf" or all(_is_number(v) for v in _present(values))


def _plain(value: Any) -> Any:
    """A JSON-ready scalar."""
    return value.item() if isinstance(value, np.generic) else value


def _check_present(values: np.ndarray, name: str, source: str) -> None:
    missing = sum(1 for v in values if _missing(v)) if values.dtype == object else int(
        np.isnan(values).sum() if values.dtype.kind == "f" else 0)
    if missing:
        raise PredictionsError(f"{source}: column {name!r} is empty in {missing} of {len(values)} rows")


def _check_finite(values: np.ndarray, name: str, source: str) -> None:
    bad = int(np.sum(~np.isfinite(values)))
    if bad:
        raise PredictionsError(f"{source}: column {name!r} is empty or not a finite number in {bad} of "
                               f"{len(values)} rows")


def _as_numbers(values: np.ndarray, name: str, source: str) -> np.ndarray:
    if not _numeric(values):
        raise PredictionsError(f"{source}: column {name!r} must hold numbers for a regression")
    numbers = np.asarray(values, dtype=np.float64)
    _check_finite(numbers, name, source)
    return numbers


def _columns_read(preds: Predictions) -> str:
    names = [preds.label_name] + [n for n, v in (("score", preds.score), ("prediction", preds.prediction))
                                  if v is not None]
    return ", ".join(names + list(preds.groups))

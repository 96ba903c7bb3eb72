"""Evaluate the trained model on the held-out split: quality, fairness across the sensitive
columns, and single-row prediction latency. Writes evaluation.json."""

import json
import time

import lightgbm as lgb
import numpy as np
from sklearn import metrics as skm

# common.py sits beside this file: every runner (warm, cold, local) starts a stage as
# `python stages/NAME.py` does, with the script's folder first on sys.path.
import common
import wb

LATENCY_WARMUP = 20  # untimed predictions first, so one-off setup costs don't count


def quality(y, proba, pred):
    return {
        "auc": skm.roc_auc_score(y, proba),
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "log_loss": skm.log_loss(y, proba),
    }


def _rate(values):
    return float(values.mean()) if len(values) else None  # undefined for an empty group


def group_rates(y, pred, groups):
    """Per group: size, actual churn rate, predicted churn rate (selection rate), TPR and FPR."""
    rates = {}
    for value in np.unique(groups):
        in_group = groups == value
        y_g, pred_g = y[in_group], pred[in_group]
        rates[str(value)] = {
            "n": int(in_group.sum()),
            "base_rate": _rate(y_g),
            "selection_rate": _rate(pred_g),
            "tpr": _rate(pred_g[y_g == 1]),
            "fpr": _rate(pred_g[y_g == 0]),
        }
    return rates


def spread(rates, key):
    """Largest difference of a rate between groups (groups where it is undefined are skipped)."""
    values = [r[key] for r in rates.values() if r[key] is not None]
    return max(values) - min(values) if len(values) > 1 else 0.0


def fairness(y, pred, test_df, sensitive):
    """Demographic parity difference (gap in selection rate) and equalized odds difference
    (the larger of the TPR gap and the FPR gap) per sensitive column, plus the worst of each."""
    result, groups = {}, {}
    for column in sensitive:
        rates = group_rates(y, pred, test_df[column].to_numpy())
        groups[column] = rates
        result[f"demographic_parity_difference.{column}"] = spread(rates, "selection_rate")
        result[f"equalized_odds_difference.{column}"] = max(spread(rates, "tpr"), spread(rates, "fpr"))
    for name in ("demographic_parity_difference", "equalized_odds_difference"):
        result[name] = max(result[f"{name}.{column}"] for column in sensitive)
    return result, groups


def latency_ms(booster, X, samples):
    """p50 and p95 of predicting one row at a time, as a service scoring single customers would."""
    rows = [X.iloc[[i % len(X)]] for i in range(LATENCY_WARMUP + samples)]
    for row in rows[:LATENCY_WARMUP]:
        booster.predict(row)
    timings = []
    for row in rows[LATENCY_WARMUP:]:
        start = time.perf_counter()
        booster.predict(row)
        timings.append((time.perf_counter() - start) * 1000)
    return {"latency_p50_ms": np.percentile(timings, 50), "latency_p95_ms": np.percentile(timings, 95)}


def main():
    split_params = wb.load_params("params.toml", "split")
    params = wb.load_params("params.toml", "evaluate")
    model_file = wb.upstream("train", "model.txt")
    booster = lgb.Booster(model_file=model_file)

    _, test_df = common.load_split(split_params)
    X, y = common.features(test_df), common.target(test_df)
    proba = booster.predict(X)
    pred = (proba >= params["threshold"]).astype(int)

    results = quality(y, proba, pred)
    fair, groups = fairness(y, pred, test_df, params["sensitive"])
    results.update(fair)
    results.update(latency_ms(booster, X, params["latency_samples"]))
    # Mean |SHAP| per feature on up to 1,000 held-out rows: the workbench shows and compares them.
    wb.explain(booster, X, sample=1000, model_file=model_file)
    results = {name: float(value) for name, value in results.items()}

    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    evaluation = {
        "rows": len(X),
        "threshold": params["threshold"],
        "metrics": results,
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "groups": groups,
    }
    with open(wb.output_path("evaluation.json"), "w") as fh:
        json.dump(evaluation, fh, indent=2)
    wb.log_artifact("evaluation.json", "report")
    wb.log_metrics(results)

    print(f"held-out rows: {len(X)}, threshold {params['threshold']}")
    for name, value in results.items():
        print(f"  {name:45} {value:.4f}")
    print(f"  confusion matrix: tn={tn} fp={fp} fn={fn} tp={tp}")


if __name__ == "__main__":
    main()

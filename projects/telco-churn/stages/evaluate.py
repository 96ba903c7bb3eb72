"""Score the held-out split with the trained model and measure single-row prediction latency.

Writes predictions.parquet (one row per held-out customer: id, churn label, score, and the
sensitive columns), which workbench.toml declares as this stage's `predictions`: the workbench
computes the quality metrics, calibration, curves and per-group fairness from it."""

import time

import lightgbm as lgb
import numpy as np
import pandas as pd

# common.py sits beside this file: every runner (warm, cold, local) starts a stage as
# `python stages/NAME.py` does, with the script's folder first on sys.path.
import common
import wb

LATENCY_WARMUP = 20  # untimed predictions first, so one-off setup costs don't count
SENSITIVE = ["female", "senior_citizen"]  # the [data] sensitive columns of workbench.toml


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
    return {"latency_p50_ms": float(np.percentile(timings, 50)), "latency_p95_ms": float(np.percentile(timings, 95))}


def main():
    split_params = wb.load_params("params.toml", "split")
    params = wb.load_params("params.toml", "evaluate")
    model_file = wb.upstream("train", "model.txt")
    booster = lgb.Booster(model_file=model_file)

    _, test_df = common.load_split(split_params)
    X, y = common.features(test_df), common.target(test_df)
    proba = booster.predict(X)

    # id: the customer's row in data/churn.csv (0 = the first row after the header).
    predictions = pd.DataFrame({"id": test_df.index, common.TARGET: y, "score": proba})
    for column in SENSITIVE:
        predictions[column] = test_df[column].to_numpy()
    predictions.to_parquet(wb.output_path("predictions.parquet"), index=False)

    latency = latency_ms(booster, X, params["latency_samples"])
    # Mean |SHAP| per feature on up to 1,000 held-out rows: the workbench shows and compares them.
    wb.explain(booster, X, sample=1000, model_file=model_file)
    wb.log_metrics(latency)

    print(f"held-out rows: {len(X)}, written to predictions.parquet")
    for name, value in latency.items():
        print(f"  {name:20} {value:.3f}")


if __name__ == "__main__":
    main()

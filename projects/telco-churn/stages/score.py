"""Score a batch of labelled data with a trained model: the drift check's performance step
(`[drift] score` in workbench.toml). The workbench runs it like a stage, with the batch at
$WB_UPSTREAM_DIR/batch/$WB_BATCH_FILE and the production model's train output at
$WB_UPSTREAM_DIR/train, and compares the metrics it logs with the model's evaluation (the
metrics the workbench computed from the evaluate stage's predictions, same names)."""

import os

import lightgbm as lgb
import pandas as pd
from sklearn import metrics as skm

# common.py sits beside this file: every runner (warm, cold, local) starts a stage as
# `python stages/NAME.py` does, with the script's folder first on sys.path.
import common
import wb


def quality(y, proba, pred):
    return {
        "auc": skm.roc_auc_score(y, proba),
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "log_loss": skm.log_loss(y, proba),
    }


def main():
    params = wb.load_params("params.toml", "evaluate")
    batch = pd.read_csv(wb.upstream("batch", os.environ["WB_BATCH_FILE"]))
    booster = lgb.Booster(model_file=wb.upstream(os.environ.get("WB_MODEL_STAGE", "train"), "model.txt"))
    X, y = common.features(batch), common.target(batch)
    proba = booster.predict(X)
    pred = (proba >= params["threshold"]).astype(int)
    results = {name: float(value) for name, value in quality(y, proba, pred).items()}
    wb.log_metrics(results)
    print(f"scored {len(X)} rows: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))


if __name__ == "__main__":
    main()

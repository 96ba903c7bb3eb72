"""Score a batch of labelled data with a trained model: the drift check's performance step
(`[drift] score` in workbench.toml). The workbench runs it like a stage, with the batch at
$WB_UPSTREAM_DIR/batch/$WB_BATCH_FILE and the production model's train output at
$WB_UPSTREAM_DIR/train, and compares the metrics it logs with the model's evaluation."""

import os
import sys

# Run without its folder on sys.path by a warm worker; must not write a __pycache__ there.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lightgbm as lgb
import pandas as pd

import common
import evaluate
import wb


def main():
    params = wb.load_params("params.toml", "evaluate")
    batch = pd.read_csv(wb.upstream("batch", os.environ["WB_BATCH_FILE"]))
    booster = lgb.Booster(model_file=wb.upstream(os.environ.get("WB_MODEL_STAGE", "train"), "model.txt"))
    X, y = common.features(batch), common.target(batch)
    proba = booster.predict(X)
    pred = (proba >= params["threshold"]).astype(int)
    results = {name: float(value) for name, value in evaluate.quality(y, proba, pred).items()}
    wb.log_metrics(results)
    print(f"scored {len(X)} rows: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))


if __name__ == "__main__":
    main()

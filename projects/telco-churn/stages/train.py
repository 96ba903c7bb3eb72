"""Train a LightGBM churn classifier on the training split and save it as model.txt."""

import time

import lightgbm as lgb
from sklearn.metrics import roc_auc_score

# common.py sits beside this file: every runner (warm, cold, local) starts a stage as
# `python stages/NAME.py` does, with the script's folder first on sys.path.
import common
import wb

PROGRESS_EVERY = 10  # boosting rounds between progress reports


def progress_callback(total):
    def report(env):
        done = env.iteration + 1
        if done % PROGRESS_EVERY == 0 or done == total:
            wb.progress(done, total, "boosting rounds")

    return report


def main():
    split_params = wb.load_params("params.toml", "split")
    params = wb.load_params("params.toml", "train")
    rounds = params.pop("num_boost_round")  # an argument of lightgbm.train, not a booster param

    train_df, _ = common.load_split(split_params)
    X, y = common.features(train_df), common.target(train_df)

    start = time.perf_counter()
    booster = lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=rounds,
                        callbacks=[progress_callback(rounds)])
    train_seconds = time.perf_counter() - start

    booster.save_model(wb.output_path("model.txt"))
    wb.log_artifact("model.txt", "model")
    wb.log_params({
        **params,
        "num_boost_round": rounds,
        "split.test_size": split_params["test_size"],
        "split.seed": split_params["seed"],
    })
    train_auc = roc_auc_score(y, booster.predict(X))
    wb.log_metrics({"train_auc": train_auc, "num_trees": booster.num_trees(), "train_seconds": train_seconds})
    print(f"trained {booster.num_trees()} trees on {len(X)} rows in {train_seconds:.2f}s; train AUC {train_auc:.4f}")


if __name__ == "__main__":
    main()

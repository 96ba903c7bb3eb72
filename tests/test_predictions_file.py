"""Reading a stage's predictions file on the host (workbench.adapters.predictions_file): Parquet
and CSV through DuckDB, missing values, a join by the data file's own id column, and what a
stage output must never make the host do (follow a symlink, block on a FIFO)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.adapters.predictions_file import read_predictions
from workbench.core.evaluation import PredictionsError, evaluate


def test_parquet_with_a_missing_group_value_and_string_labels(tmp_path):
    path = tmp_path / "predictions.parquet"
    pd.DataFrame({"churn": ["No", "Yes", "Yes", "No"], "score": [0.1, 0.8, 0.4, 0.3],
                  "region": ["north", None, "south", "north"]}).to_parquet(path)
    preds = read_predictions(path, "predictions.parquet", "churn", ("region",))
    assert preds.label.tolist() == ["No", "Yes", "Yes", "No"] and preds.score.dtype == np.float64
    payload = evaluate(preds)
    assert payload["confusion"] == {"labels": ["No", "Yes"], "matrix": [[2, 0], [1, 1]]}
    assert [g["group"] for g in payload["groups"]["region"]] == ["(missing)", "north", "south"]


def test_a_label_column_named_label_and_a_join_on_the_data_files_id(tmp_path):
    data = tmp_path / "customers.csv"
    data.write_text("id,female,tenure\n10,1,3\n11,0,5\n12,1,8\n")
    path = tmp_path / "predictions.csv"
    path.write_text("id,label,score\n12,1,0.9\n10,0,0.2\n")
    preds = read_predictions(path, "predictions.csv", "churn", ("female",), data, "customers.csv")
    assert preds.label_name == "label" and preds.groups["female"].tolist() == [1, 1]
    path.write_text("id,label,score\n12,1,0.9\n99,0,0.2\n")
    with pytest.raises(PredictionsError, match=r"predictions.csv: 1 rows have an id that is not in customers.csv"):
        read_predictions(path, "predictions.csv", "churn", ("female",), data, "customers.csv")


def test_a_file_that_is_not_parquet_names_the_file(tmp_path):
    path = tmp_path / "predictions.parquet"
    path.write_text("churn,score\n1,0.5\n")
    with pytest.raises(PredictionsError, match=r"^predictions.parquet: cannot be read as Parquet"):
        read_predictions(path, "predictions.parquet", "churn", ())


def test_a_symlink_is_refused_not_followed(tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("churn,score\n1,0.5\n0,0.1\n")
    link = tmp_path / "predictions.csv"
    link.symlink_to(secret)
    with pytest.raises(PredictionsError, match="symbolic link"):
        read_predictions(link, "predictions.csv", "churn", ())


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "predictions.csv"
    os.mkfifo(fifo)
    outcome = {}

    def read():
        try:
            read_predictions(fifo, "predictions.csv", "churn", ())
        except PredictionsError as exc:
            outcome["error"] = str(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert "FIFO" in outcome["error"]

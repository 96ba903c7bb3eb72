"""Data loading, encoding and splitting shared by the stages, so that all of them see the
same columns, the same encoding and the same train/test rows."""

import os

import pandas as pd
from sklearn.model_selection import train_test_split

import wb

DATA_PATH = "data/churn.csv"
TARGET = "churn"
POSITIVE = "Yes"
TARGET_VALUES = ("No", POSITIVE)

# Every expected column and its kind, in file order. validate.py checks the data against this;
# the kinds also decide how a column is encoded below.
SCHEMA = {
    "churn": "target",
    "female": "binary",
    "senior_citizen": "binary",
    "partner": "binary",
    "dependents": "binary",
    "tenure": "integer",
    "phone_service": "binary",
    "multiple_lines": "category",
    "internet_service": "category",
    "online_security": "category",
    "online_backup": "category",
    "device_protection": "category",
    "tech_support": "category",
    "streaming_tv": "category",
    "streaming_movies": "category",
    "contract": "category",
    "paperless_billing": "binary",
    "payment_method": "category",
    "monthly_charges": "float",
    "total_charges": "float",
}

# The known levels of each categorical column. Fixing them (rather than taking whatever values a
# file happens to contain) keeps the category codes, and so the model, identical across files.
_INTERNET_ADDON = ["No", "Yes", "No internet service"]
CATEGORIES = {
    "multiple_lines": ["No", "Yes", "No phone service"],
    "internet_service": ["No", "DSL", "Fiber optic"],
    "online_security": _INTERNET_ADDON,
    "online_backup": _INTERNET_ADDON,
    "device_protection": _INTERNET_ADDON,
    "tech_support": _INTERNET_ADDON,
    "streaming_tv": _INTERNET_ADDON,
    "streaming_movies": _INTERNET_ADDON,
    "contract": ["Month-to-month", "One year", "Two year"],
    "payment_method": [
        "Bank transfer (automatic)",
        "Credit card (automatic)",
        "Electronic check",
        "Mailed check",
    ],
}

FEATURES = [column for column, kind in SCHEMA.items() if kind != "target"]


def load():
    """The raw table, as in the CSV file."""
    return pd.read_csv(os.path.join(wb.project_dir(), DATA_PATH))


def features(df):
    """The model's input: categoricals become pandas categories with the fixed levels above (which
    LightGBM treats as categorical features); missing numbers stay NaN, which LightGBM handles."""
    X = df[FEATURES].copy()
    for column, levels in CATEGORIES.items():
        X[column] = X[column].astype(pd.CategoricalDtype(levels))
    return X


def target(df):
    """1 for customers who churned, else 0."""
    return (df[TARGET] == POSITIVE).astype(int).to_numpy()


def load_split(split_params):
    """The raw (train, test) frames: stratified on the target and seeded, so every stage that
    calls this with the same [split] params gets exactly the same rows."""
    df = load()
    return train_test_split(
        df,
        test_size=split_params["test_size"],
        random_state=split_params["seed"],
        stratify=df[TARGET],
    )

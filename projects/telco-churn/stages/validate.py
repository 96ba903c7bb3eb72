"""Check the data before anything is trained on it: schema, missing values, value ranges,
target balance and duplicate rows. Writes report.json and fails on any error-level finding."""

import json
import sys

import pandas as pd

# common.py sits beside this file: every runner (warm, cold, local) starts a stage as
# `python stages/NAME.py` does, with the script's folder first on sys.path.
import common
import wb

# Dtype checks per schema kind: text columns may be read as `str` or `object` depending on pandas.
KIND_CHECKS = {
    "target": ("text", pd.api.types.is_string_dtype),
    "category": ("text", pd.api.types.is_string_dtype),
    "binary": ("integer", pd.api.types.is_integer_dtype),
    "integer": ("integer", pd.api.types.is_integer_dtype),
    "float": ("numeric", pd.api.types.is_numeric_dtype),
}

# Bounds on numeric columns (checked on non-missing values).
RANGE_RULES = [
    ("tenure", ">= 0", lambda s: s >= 0),
    ("monthly_charges", "> 0", lambda s: s > 0),
    ("total_charges", ">= 0", lambda s: s >= 0),
]

# Outside these bounds the positive class is too rare (or too common) to learn and evaluate well.
MIN_POSITIVE_RATE, MAX_POSITIVE_RATE = 0.05, 0.95


class Findings(list):
    def add(self, level, check, column, message):
        self.append({"level": level, "check": check, "column": column, "message": message})

    def count(self, level):
        return sum(1 for f in self if f["level"] == level)


def check_schema(df, findings):
    """Returns the expected columns that are present with the right type; later checks use only
    those, since their results would be meaningless on a missing or mistyped column."""
    usable = []
    for column, kind in common.SCHEMA.items():
        expected, has_type = KIND_CHECKS[kind]
        if column not in df.columns:
            findings.add("error", "schema", column, "column is missing")
        elif not has_type(df[column]):
            findings.add("error", "schema", column, f"expected {expected} values, got dtype {df[column].dtype}")
        else:
            usable.append(column)
    for column in df.columns:
        if column not in common.SCHEMA:
            findings.add("warning", "schema", column, "unexpected column (not used by the model)")
    return usable


def check_missing(df, findings):
    missing = df.isna().sum()
    for column, count in missing[missing > 0].items():
        # Missing features are tolerable (LightGBM handles NaN); a missing label is not.
        level = "error" if column == common.TARGET else "warning"
        findings.add(level, "missing_values", column, f"{count} missing values ({count / len(df):.2%})")
    if missing.sum() == 0:
        findings.add("info", "missing_values", None, "no missing values")
    return int(missing.sum())


def check_ranges(df, usable, findings):
    def report(column, bad, rule):
        if bad.any():
            examples = ", ".join(repr(v) for v in df.loc[bad, column].drop_duplicates().head(5).tolist())
            findings.add("error", "range", column, f"{int(bad.sum())} values not {rule} (e.g. {examples})")

    for column, rule, within in RANGE_RULES:
        if column in usable:
            values = df[column]
            report(column, values.notna() & ~within(values), rule)
    allowed_sets = {c: {0, 1} for c, kind in common.SCHEMA.items() if kind == "binary"}
    allowed_sets.update({c: set(levels) for c, levels in common.CATEGORIES.items()})
    allowed_sets[common.TARGET] = set(common.TARGET_VALUES)
    for column, allowed in allowed_sets.items():
        if column in usable:
            values = df[column]
            report(column, values.notna() & ~values.isin(allowed), f"in {sorted(allowed, key=str)}")


def check_target_balance(df, usable, findings):
    if common.TARGET not in usable:
        return float("nan")
    rate = float((df[common.TARGET].dropna() == common.POSITIVE).mean())
    if MIN_POSITIVE_RATE <= rate <= MAX_POSITIVE_RATE:
        findings.add("info", "target_balance", common.TARGET, f"positive rate {rate:.2%}")
    else:
        findings.add("warning", "target_balance", common.TARGET,
                     f"positive rate {rate:.2%} is outside [{MIN_POSITIVE_RATE:.0%}, {MAX_POSITIVE_RATE:.0%}]")
    return rate


def check_duplicates(df, findings):
    # Without a customer id, identical rows can be distinct customers with the same plan and
    # charges, so duplicates are worth knowing about but are not an error.
    count = int(df.duplicated().sum())
    if count:
        findings.add("warning", "duplicates", None, f"{count} duplicate rows ({count / len(df):.2%})")
    else:
        findings.add("info", "duplicates", None, "no duplicate rows")
    return count


def main():
    df = common.load()
    findings = Findings()
    usable = check_schema(df, findings)
    missing_cells = check_missing(df, findings)
    check_ranges(df, usable, findings)
    positive_rate = check_target_balance(df, usable, findings)
    duplicate_rows = check_duplicates(df, findings)

    errors, warnings = findings.count("error"), findings.count("warning")
    report = {"ok": errors == 0, "rows": len(df), "columns": len(df.columns), "findings": findings}
    with open(wb.output_path("report.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    wb.log_artifact("report.json", "validation_report")
    wb.log_metrics({
        "rows": len(df),
        "missing_cells": missing_cells,
        "duplicate_rows": duplicate_rows,
        "positive_rate": positive_rate,
        "errors": errors,
        "warnings": warnings,
    })

    for f in findings:
        where = f"[{f['column']}]" if f["column"] else ""
        print(f"{f['level'].upper():7} {f['check']}{where}: {f['message']}")
    verdict = "passed" if errors == 0 else "FAILED"
    print(f"validation {verdict}: {len(df)} rows, {len(df.columns)} columns, {errors} errors, {warnings} warnings")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

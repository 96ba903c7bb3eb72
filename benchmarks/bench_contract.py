"""How long a data contract check of a 1,000,000-row, 50-column file takes: DuckDB (the
workbench's check) against the same checks written in pandas, the way the example's
stages/validate.py writes its own (read the file, then a mask per check, examples with .loc).

    python benchmarks/bench_contract.py [--rows 1000000] [--seed 7]

The table is generated from the seed: an `id` (unique), 24 floats (three with missing values),
15 integers and 10 text columns of 4 to 12 categories. The contract is inferred from the
Parquet file (`workbench contract infer`'s code) plus two custom SQL rules, so every check type
runs: types, nullability, 49 ranges or category lists, uniqueness, row counts, rules. Each
figure is one run (the issue asks for one run, not a median), file reading included in both:

  infer          DuckDB statistics of the Parquet file -> the contract (once)
  clean          the generated file, which passes (the usual run): a clean CSV is read once
  broken         a copy with 482 rows that break 6 checks: DuckDB reads a CSV a second time,
                 into a table, to name the rows by line
  duckdb         workbench.adapters.duckdb_contract.check_file
  pandas         pd.read_csv / pd.read_parquet + the same checks in pandas

Both sides must agree on every breach count (checked), so the ratio compares the same work.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workbench.adapters.duckdb_contract import check_file, table_stats  # noqa: E402
from workbench.core.contract import Contract, SqlRule, infer_contract  # noqa: E402

RULES = (SqlRule("f0_above_floor", "f0 >= -6"), SqlRule("i0_below_i1_plus", "i0 <= i1 + 900", "warning"))
"""Written so that SQL and pandas' eval read them alike."""


def generate(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns: dict[str, pa.Array] = {"id": pa.array(rng.permutation(rows) + 1)}
    for i in range(24):
        values = rng.normal(i, 1 + i / 10, rows)
        mask = rng.random(rows) < 0.02 if i in (3, 7, 11) else None
        columns[f"f{i}"] = pa.array(values, mask=mask)
    for i in range(15):
        columns[f"i{i}"] = pa.array(rng.integers(0, 100 * (i + 1), rows))
    for i in range(10):
        levels = np.array([f"level_{i}_{k}" for k in range(4 + i % 9)])
        columns[f"s{i}"] = pa.array(levels[rng.integers(0, len(levels), rows)])
    return pa.table(columns)


def planted(table: pa.Table, seed: int) -> pa.Table:
    """A copy with a few hundred rows that break the contract inferred from `table`."""
    frame = table.to_pandas()
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(len(frame), 400, replace=False)
    frame.loc[rows[:100], "f5"] = 1e6            # above max
    frame.loc[rows[100:200], "s2"] = "unknown"   # not a category
    frame.loc[rows[200:250], "id"] = frame.loc[rows[250:300], "id"].to_numpy()  # repeated ids
    frame.loc[rows[300:400], "f0"] = -50.0       # breaks the rule f0_above_floor and min
    frame.loc[rows[:30], "i3"] = None            # missing where none were
    frame["i3"] = frame["i3"].astype("Int64")
    return pa.Table.from_pandas(frame, preserve_index=False)


def pandas_check(path: Path, contract: Contract) -> dict[tuple[str, str | None], int]:
    """The contract's checks in pandas, the validate stage's way: masks, counts, 5 examples each."""
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    found: dict[tuple[str, str | None], int] = {}

    def report(rule: str, column: str | None, bad: pd.Series) -> None:
        count = int(bad.sum())
        if count:
            examples = df.index[bad][:5] + (1 if path.suffix == ".parquet" else 2)  # row / CSV line
            _ = df.loc[bad, column].head(5).tolist() if column else examples.tolist()
            found[(rule, column)] = count

    kinds = {"integer": pd.api.types.is_integer_dtype, "float": pd.api.types.is_numeric_dtype,
             "string": lambda s: pd.api.types.is_string_dtype(s) or s.dtype == object}
    for col in contract.columns:
        if col.name not in df.columns:
            found[("column", col.name)] = 1
            continue
        values = df[col.name]
        if col.type in kinds and not kinds[col.type](values) and not (col.type == "integer" and values.isna().any()):
            found[("type", col.name)] = 1
            continue
        present = values.notna()
        if not col.nullable:
            report("nullable", col.name, ~present)
        if col.min is not None:
            report("min", col.name, present & (values < col.min))
        if col.max is not None:
            report("max", col.name, present & (values > col.max))
        if col.categories is not None:
            report("categories", col.name, present & ~values.isin(col.categories))
        if col.unique:
            report("unique", col.name, present & values.duplicated(keep="first"))
    for rule in contract.rules:
        report(rule.name, None, ~df.eval(rule.sql).fillna(True).astype(bool))
    if contract.min_rows is not None and len(df) < contract.min_rows:
        found[("min_rows", None)] = 1
    return found


def duckdb_counts(report) -> dict[tuple[str, str | None], int]:
    return {(b.rule, b.column): b.count for b in report.breaches}


def timed(call):
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-contract-") as tmp:
        root = Path(tmp)
        table, generate_s = timed(lambda: generate(args.rows, args.seed))
        pq.write_table(table, root / "clean.parquet")
        (rows, stats), infer_s = timed(lambda: table_stats(str(root / "clean.parquet")))
        inferred = infer_contract("bench.contract.toml", rows, stats)
        contract = Contract(inferred.source, inferred.columns, RULES, inferred.min_rows)
        pacsv.write_csv(table, root / "clean.csv")
        bad = planted(table, args.seed)
        pq.write_table(bad, root / "broken.parquet")
        pacsv.write_csv(bad, root / "broken.csv")
        sizes = {p.suffix: p.stat().st_size for p in root.glob("broken.*")}
        print(f"{args.rows:,} rows x {table.num_columns} columns (seed {args.seed}; generated in {generate_s:.1f} s); "
              f"CSV {sizes['.csv'] / 1e6:.0f} MB, Parquet {sizes['.parquet'] / 1e6:.0f} MB")
        print(f"infer (Parquet)      {infer_s:6.2f} s")
        print(f"{'file':<16} {'duckdb':>8} {'pandas':>8} {'ratio':>6}  breaches (same counts in both)")
        for name in ("clean.csv", "clean.parquet", "broken.csv", "broken.parquet"):
            path = root / name
            report, duck_s = timed(lambda: check_file(str(path), contract))
            found, pandas_s = timed(lambda: pandas_check(path, contract))
            same = duckdb_counts(report) == found
            print(f"{name:<16} {duck_s:7.2f}s {pandas_s:7.2f}s {pandas_s / duck_s:5.1f}x  "
                  f"{len(report.breaches)} checks, {sum(b.count for b in report.breaches):,} rows"
                  f"{'' if same else '  COUNTS DIFFER'}")
            if not same:
                print(f"  duckdb {duckdb_counts(report)}\n  pandas {found}")


if __name__ == "__main__":
    main()

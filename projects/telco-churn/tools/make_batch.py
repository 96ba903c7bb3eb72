"""Make a batch of production-like data from the example's real data, for the drift loop.

    python projects/telco-churn/tools/make_batch.py --kind drifted --labels \
        --out projects/telco-churn/data/incoming/batch-001.csv

clean    rows drawn at random from data/churn.csv: what the model was trained on, so no drift.
drifted  the customer mix moved toward month-to-month contracts (rows are drawn with
         month-to-month customers six times as likely, which also moves what goes with them:
         shorter tenure, electronic checks, fewer add-ons, more churn), and prices went up:
         monthly_charges +25%.

Deterministic: the same arguments write the same file. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "churn.csv"
TARGET = "churn"
MONTH_TO_MONTH = "Month-to-month"
MONTH_TO_MONTH_WEIGHT = 6.0
"""How much likelier a month-to-month customer is to be drawn in a drifted batch."""
PRICE_RISE = 1.25


def make_batch(kind: str, rows: int, labels: bool, seed: int) -> tuple[list[str], list[dict[str, str]]]:
    with open(DATA, newline="") as fh:
        reader = csv.DictReader(fh)
        header, table = list(reader.fieldnames or []), list(reader)
    rng = random.Random(f"{kind}:{seed}")
    if kind == "clean":
        picked = rng.choices(table, k=rows)
    else:
        weights = [MONTH_TO_MONTH_WEIGHT if row["contract"] == MONTH_TO_MONTH else 1.0 for row in table]
        picked = [dict(row) for row in rng.choices(table, weights=weights, k=rows)]
        for row in picked:
            row["monthly_charges"] = f"{float(row['monthly_charges']) * PRICE_RISE:.2f}"
    columns = [c for c in header if labels or c != TARGET]
    return columns, [{c: row[c] for c in columns} for row in picked]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["clean", "drifted"], required=True)
    parser.add_argument("--rows", type=int, default=1000, help="rows in the batch (default 1000)")
    parser.add_argument("--labels", action="store_true",
                        help=f"keep the {TARGET} column (a retrain needs labels; so does measuring decay)")
    parser.add_argument("--seed", type=int, default=1, help="another seed, another batch (default 1)")
    parser.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    columns, rows = make_batch(args.kind, args.rows, args.labels, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Written next to the target and renamed over it, so a watcher never sees half a file.
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(rows)} {args.kind} rows{' with labels' if args.labels else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

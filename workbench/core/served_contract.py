"""The part of a data contract one served request can be held to, as a small JSON document.

A model server checks each request against the contract of the data file its version was
trained on (runtime/wb_serve.py). The server imports nothing of the workbench and reads no TOML
or DuckDB, so at promotion the contract is boiled down to what a single row can break, per
column: `type`, `nullable`, `min`, `max`, `categories` (and the column's `severity`). It is
written into the release as `contract.json`:

    {"source": "data/churn.csv.contract.toml",
     "columns": {"tenure": {"type": "integer", "nullable": false, "min": 0, "max": 80,
                            "severity": "error"}, ...},
     "left_out": ["unique (customer_id)", "min_rows", "rule charges_add_up"]}

Batch-level rules cannot be judged on one request and are left out (and named in `left_out`):
`unique` (a value seen twice needs the other rows), row counts (`min_rows`, `max_rows`),
`extra_columns` (the server's schema check already refuses unknown columns) and the SQL
`[[rules]]` (they need DuckDB). The target column is left out too: requests do not carry it.
"""

from __future__ import annotations

from workbench.core.contract import Contract

SERVED_CONTRACT_DOCUMENT = "contract.json"
"""The release document wb_serve.py reads (its RELEASE_CONTRACT)."""


def served_contract(contract: Contract, target: str | None) -> dict:
    """`contract` as the per-row checks a server makes, in the document's shape (module docstring)."""
    columns: dict[str, dict] = {}
    left_out: list[str] = []
    for column in contract.columns:
        if column.name == target:
            continue
        rules: dict = {"nullable": column.nullable, "severity": column.severity}
        if column.type is not None:
            rules["type"] = column.type
        for key, bound in (("min", column.min), ("max", column.max)):
            if bound is not None:
                # an integer column's bounds as integers, so a refusal says "at most 80", not 80.0
                whole = column.type == "integer" and isinstance(bound, float) and bound.is_integer()
                rules[key] = int(bound) if whole else bound
        if column.categories is not None:
            rules["categories"] = list(column.categories)
        columns[column.name] = rules
        if column.unique:
            left_out.append(f"unique ({column.name})")
    left_out += [name for name, value in (("min_rows", contract.min_rows), ("max_rows", contract.max_rows))
                 if value is not None]
    left_out += [f"rule {rule.name}" for rule in contract.rules]
    return {"source": contract.source, "columns": columns, "left_out": left_out}

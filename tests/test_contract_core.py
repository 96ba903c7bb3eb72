"""The pure half of data contracts: parsing (one clear error per bad value, naming the file and
the key), rendering that reads back the same, and inference margins."""

from __future__ import annotations

import pytest

from workbench.core.contract import (
    ColumnContract, ColumnStats, Contract, ContractError, SqlRule, infer_contract, parse_contract, render_contract,
    sql_expression_problem,
)

GOOD = """
[table]
min_rows = 10
max_rows = 1000
extra_columns = "error"

[columns.tenure]
type = "integer"
nullable = false
min = 0
max = 80
unique = true

[columns."monthly charges"]
type = "float"
min = 0.5
max = 130.25
severity = "warning"

[columns.contract]
type = "string"
categories = ["Month-to-month", "One year", "Two year"]

[columns.day]
type = "date"
min = 2024-01-01
max = "2024-12-31"

[[rules]]
name = "charges_add_up"
sql = "total_charges >= monthly_charges"
severity = "warning"
"""


def test_a_full_contract_parses_with_every_field():
    c = parse_contract(GOOD, "data/churn.csv.contract.toml")
    assert (c.min_rows, c.max_rows, c.extra_columns) == (10, 1000, "error")
    assert c.column("tenure") == ColumnContract("tenure", "integer", False, 0, 80, None, True, "error")
    assert c.column("monthly charges").severity == "warning" and c.column("monthly charges").max == 130.25
    assert c.column("contract").categories == ("Month-to-month", "One year", "Two year")
    assert (c.column("day").min, c.column("day").max) == ("2024-01-01", "2024-12-31")
    assert c.rules == (SqlRule("charges_add_up", "total_charges >= monthly_charges", "warning"),)


@pytest.mark.parametrize("text, key, problem", [
    ("[columns.x]\ntype = 'int'", "columns.x.type", "must be one of integer, float"),
    ("[columns.x]\ntypo = 'integer'", "columns.x.typo", "unknown key"),
    ("[columns.x]\ntype = 'integer'\nmin = 5\nmax = 1", "columns.x.max", "must be at least min (5)"),
    ("[columns.x]\ntype = 'string'\nmin = 1", "columns.x.min", "a string column has no range"),
    ("[columns.x]\ntype = 'date'\nmin = 'yesterday'", "columns.x.min", "must be an ISO date"),
    ("[columns.x]\ncategories = []", "columns.x.categories", "at least one value"),
    ("[columns.x]\ncategories = ['a', 'a']", "columns.x.categories", "'a' is listed twice"),
    ("[columns.x]\nnullable = 'no'", "columns.x.nullable", "must be true or false"),
    ("[columns.x]\nseverity = 'fatal'", "columns.x.severity", "must be 'error' or 'warning'"),
    ("[table]\nmin_rows = 10\nmax_rows = 5", "table.max_rows", "must be at least min_rows (10)"),
    ("[table]\nmin_rows = -1", "table.min_rows", "between 0 and"),
    ("[table]\nextra_columns = 'ignore'", "table.extra_columns", "must be one of error, warning, allow"),
    ("[[rules]]\nname = 'r'\nsql = 'x > 0; DROP TABLE data'", "rules[0].sql", "without ';'"),
    ("[[rules]]\nname = 'r'\nsql = 'x > (0'", "rules[0].sql", "'(' is not closed"),
    ("[[rules]]\nname = 'r'\nsql = 'x > 0) OR (1'", "rules[0].sql", "')' closes nothing"),
    ("[[rules]]\nname = 'r'", "rules[0].sql", "is required"),
    ("[[rules]]\nname = 'r'\nsql = 'a > 0'\n[[rules]]\nname = 'r'\nsql = 'b > 0'", "rules[1].name",
     "another rule is named 'r'"),
    ("[colums.x]\ntype = 'integer'", "colums", "unknown key"),
])
def test_a_bad_contract_names_the_file_the_key_and_the_problem(text, key, problem):
    with pytest.raises(ContractError) as err:
        parse_contract(text, "data/a.csv.contract.toml")
    assert err.value.path == "data/a.csv.contract.toml"
    assert err.value.key == key
    assert problem in err.value.problem


def test_not_toml_is_one_error_naming_the_file():
    with pytest.raises(ContractError, match=r"^data/a.csv.contract.toml: not valid TOML"):
        parse_contract("[columns.x\n", "data/a.csv.contract.toml")


def test_rendered_contracts_read_back_the_same():
    c = parse_contract(GOOD, "c.toml")
    again = parse_contract(render_contract(c, "a header\nof two lines"), "c.toml")
    assert again == c


@pytest.mark.parametrize("sql", ["a >= -60", "name IN ('a;b', 'c')", "coalesce(a, 0) > (b - 1)",
                                 "regexp_matches(code, '^[A-Z]{2}$')"])
def test_expressions_with_quotes_and_parentheses_are_accepted(sql):
    assert sql_expression_problem(sql) is None


def stats(name, kind, rows=100, nulls=0, distinct=100, low=None, high=None, values=None):
    return ColumnStats(name, kind, rows, nulls, distinct, low, high, values)


def test_inference_margins_a_person_can_tighten():
    c = infer_contract("t.csv.contract.toml", 100, [
        stats("tenure", "integer", distinct=73, low=0, high=72),
        stats("charge", "float", distinct=90, low=18.25, high=118.75),
        stats("delay", "float", distinct=90, nulls=3, low=-43.0, high=1301.0),
        stats("plan", "string", distinct=3, values=("b", "a", "c")),
        stats("name", "string", distinct=100, values=None),
        stats("flag", "integer", distinct=2, low=0, high=1, values=(1, 0)),
        stats("id", "integer", distinct=100, low=1, high=100),
    ])
    col = {c.name: c for c in c.columns}
    assert (col["tenure"].min, col["tenure"].max) == (0, 80)  # 10% of 72 each side, never below zero
    assert (col["charge"].min, col["charge"].max) == (0.0, 130.0)
    assert col["delay"].min <= -43.0 - 134.4 and col["delay"].max >= 1301.0 + 134.4
    assert col["delay"].nullable and not col["tenure"].nullable
    assert col["plan"].categories == ("a", "b", "c") and col["name"].categories is None
    assert col["flag"].categories == (0, 1) and col["flag"].min is None
    assert col["id"].unique and col["name"].unique and not col["charge"].unique  # floats are never unique keys
    assert c.min_rows == 50 and c.max_rows is None
    assert parse_contract(render_contract(c), c.source) == c


def test_a_table_of_a_few_rows_gives_types_and_nullability_alone():
    c = infer_contract("t", 3, [stats("x", "integer", rows=3, distinct=3, low=1, high=3),
                                stats("s", "string", rows=3, nulls=1, distinct=1, values=("a",))])
    assert c.columns == (ColumnContract("x", "integer", nullable=False), ColumnContract("s", "string", nullable=True))


def test_a_margin_of_zero_keeps_the_range_seen():
    c = infer_contract("t", 30, [stats("x", "float", rows=30, distinct=30, low=1.5, high=2.5)], margin=0.0)
    assert (c.columns[0].min, c.columns[0].max) == (1.5, 2.5)
    with pytest.raises(ValueError, match="margin"):
        infer_contract("t", 10, [], margin=-1)


def test_contract_lookup_by_column():
    c = Contract("c", columns=(ColumnContract("a"),))
    assert c.column("a") is not None and c.column("b") is None


def test_a_contract_edit_is_a_change_that_runs_every_stage_in_watch_mode():
    from workbench.core.changes import affected_stages, stage_inputs_matcher
    from workbench.core.manifest import parse_manifest

    manifest = parse_manifest('[project]\nname = "p"\n[data]\npaths = ["data/*.csv"]\n'
                              '[stages.a]\ncommand = "python a.py"\ninputs = ["a.py"]\n'
                              '[stages.b]\ncommand = "python b.py"\ninputs = ["b.py"]\n')
    assert stage_inputs_matcher(manifest)("data/churn.csv.contract.toml")
    assert affected_stages(manifest, ["data/churn.csv.contract.toml"]) == {"a", "b"}
    assert affected_stages(manifest, ["notes/x.contract.toml"]) == set()

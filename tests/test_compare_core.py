"""The compare table's pure core: the --where parser, --sort, which params differ, the layout."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from workbench.core.compare import (AllOf, AnyOf, Column, Comparison, CompareRow, SortKey, build_table,
                                    differing_params, labelled_columns, param_value, parse_sort, parse_where,
                                    parse_wheres, resolve_column, resolve_where, sort_rows)
from workbench.core.errors import UsageError

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def row(run_id: int, params: dict | None = None, metrics: dict | None = None, status: str = "succeeded") -> CompareRow:
    return CompareRow(run_id, status, T0, params or {}, metrics or {})


@pytest.mark.parametrize("text, expected", [
    ("auc > 0.84", Comparison("auc", ">", 0.84)),
    ("auc>=0.8", Comparison("auc", ">=", 0.8)),
    ("lr == 0.1", Comparison("lr", "=", 0.1)),
    ("objective != binary", Comparison("objective", "!=", "binary")),
    ("name = 'two words'", Comparison("name", "=", "two words")),
    ('name = "x"', Comparison("name", "=", "x")),
    ("param:auc < 1e-3", Comparison("param:auc", "<", 0.001)),
    ("a < 1 and b > 2", AllOf((Comparison("a", "<", 1.0), Comparison("b", ">", 2.0)))),
    ("a < 1 or b > 2 and c = 3", AnyOf((Comparison("a", "<", 1.0),
                                        AllOf((Comparison("b", ">", 2.0), Comparison("c", "=", 3.0)))))),
    ("a < 1 AND b > 2", AllOf((Comparison("a", "<", 1.0), Comparison("b", ">", 2.0)))),
    ("x = nan", Comparison("x", "=", "nan")),
])
def test_where_parses(text, expected):
    assert parse_where(text) == expected


@pytest.mark.parametrize("text, problem", [
    ("auc >", "a value is missing after 'auc' >"),
    ("auc", "expected an operator"),
    ("> 0.8", "expected a param or metric name, found '>'"),
    ("auc > 0.8 and", "a comparison is missing at the end"),
    ("auc > 0.8 auc < 1", "unexpected 'auc'"),
    ("auc > > 1", "a value is missing after 'auc' >"),
    ("auc > 'open", "cannot read"),
    ("and > 1", "expected a param or metric name, found 'and'"),
    ("   ", "empty expression"),
])
def test_where_errors_name_the_expression_and_the_problem(text, problem):
    with pytest.raises(UsageError) as caught:
        parse_where(text)
    assert problem in str(caught.value)
    assert caught.value.exit_code == 64
    if text.strip():
        assert repr(text) in str(caught.value)


def test_several_wheres_must_all_hold():
    assert parse_wheres(["a > 1", "b < 2"]) == AllOf((Comparison("a", ">", 1.0), Comparison("b", "<", 2.0)))
    assert parse_wheres([]) is None


def test_names_that_clash_are_prefixed_and_resolved():
    columns = labelled_columns(["auc", "lr", "status"], ["auc", "f1"])
    assert [c.label for c in columns] == ["param:auc", "lr", "param:status", "metric:auc", "f1"]
    assert resolve_column("metric:auc", columns, "--sort") == Column("metric:auc", "metric", "auc")
    assert resolve_column("param:lr", columns, "--sort") == Column("lr", "param", "lr")
    assert resolve_column("f1", columns, "--sort").kind == "metric"
    with pytest.raises(UsageError, match="both a param and a metric: say param:auc or metric:auc"):
        resolve_column("auc", columns, "--sort")
    with pytest.raises(UsageError, match=r"--where: no param or metric named 'f2'; did you mean 'f1'\?"):
        resolve_column("f2", columns, "--where", run_columns=False)


def test_a_metric_compared_with_a_word_is_refused():
    columns = labelled_columns(["objective"], ["auc"])
    with pytest.raises(UsageError, match="metric 'auc' is a number; 'high' is not"):
        resolve_where(parse_where("auc > high"), columns)
    resolved = resolve_where(parse_where("objective = binary or auc > 0.8"), columns)
    assert [t.column.kind for t in resolved.terms] == ["param", "metric"]


@pytest.mark.parametrize("text, expected", [
    ("auc", SortKey("auc")), ("-auc", SortKey("auc", True)), ("+lr", SortKey("lr")), (None, None), ("", None),
])
def test_sort_parses(text, expected):
    assert parse_sort(text) == expected


def test_sort_is_numeric_missing_values_last_and_stable():
    rows = [row(5, {"lr": "0.1"}, {"auc": 0.8}), row(4, {"lr": "0.05"}, {"auc": 0.9}),
            row(3, {"lr": "1"}, {}), row(2, {"lr": "0.1"}, {"auc": 0.8}), row(1, {}, {"auc": float("nan")})]
    lr = Column("lr", "param", "lr")
    auc = Column("auc", "metric", "auc")
    # numbers by value, not as text ("1" > "0.1" > "0.05"); the run without lr last
    assert [r.run_id for r in sort_rows(rows, lr)] == [4, 5, 2, 3, 1]
    assert [r.run_id for r in sort_rows(rows, lr, descending=True)] == [3, 5, 2, 4, 1]
    # equal values keep their order (newest first) either way; NaN and missing are last
    assert [r.run_id for r in sort_rows(rows, auc, descending=True)] == [4, 5, 2, 3, 1]
    assert [r.run_id for r in sort_rows(rows, auc)] == [5, 2, 4, 3, 1]


def test_text_params_sort_after_numbers():
    rows = [row(1, {"opt": "adam"}), row(2, {"opt": "3"}), row(3, {"opt": "sgd"})]
    assert [r.run_id for r in sort_rows(rows, Column("opt", "param", "opt"))] == [2, 1, 3]


@pytest.mark.parametrize("values, differs", [
    (["0.1", "0.1", "0.1"], False),
    (["0.1", "0.2", "0.1"], True),
    (["0.1", None, "0.1"], True),   # a run without the param differs
    ([None, None], False),
    (["0.1"], False),               # one run: nothing differs
])
def test_which_params_differ(values, differs):
    rows = [row(i, {} if v is None else {"lr": v}) for i, v in enumerate(values)]
    assert differing_params(rows, ["lr"]) == (["lr"] if differs else [])


def test_table_hides_equal_params_says_which_and_highlights_against_the_reference():
    rows = [row(3, {"lr": "0.1", "seed": "7"}, {"auc": 0.85}), row(2, {"lr": "0.2", "seed": "7"}, {"auc": 0.85}),
            row(1, {"lr": "0.1", "seed": "7"}, {"auc": 0.8})]
    table = build_table(rows)
    assert [c.label for c in table.columns] == ["lr", "auc"]
    assert table.hidden == {"seed": "7"}
    assert table.reference == 3
    lr, auc = table.columns
    assert [table.differs(r, lr) for r in table.rows] == [False, True, False]
    assert [table.differs(r, auc) for r in table.rows] == [False, False, True]
    every = build_table(rows, all_params=True)
    assert [c.label for c in every.columns] == ["lr", "seed", "auc"] and every.hidden == {}
    by_auc = build_table(rows, sort=SortKey("auc", True), reference=1)
    assert [r.run_id for r in by_auc.rows] == [3, 2, 1] and by_auc.reference == 1
    assert [r.run_id for r in by_auc.sorted_by(SortKey("lr")).rows] == [3, 1, 2]
    assert [r.run_id for r in by_auc.sorted_by(None).rows] == [3, 2, 1]
    assert build_table(rows, sort=SortKey("seed")).rows == rows  # a hidden param may be sorted by


def test_json_shape_types_params():
    table = build_table([row(2, {"lr": "0.1", "opt": "adam", "early": "true"}, {"auc": 0.9}),
                         row(1, {"lr": "0.2", "opt": "adam", "early": "false"}, {"auc": float("nan")})])
    data = table.to_json()
    assert data["params"] == ["early", "lr"] and data["equal_params"] == {"opt": "adam"}
    assert data["runs"][0]["params"] == {"early": True, "lr": 0.1}
    assert data["runs"][1]["metrics"] == {"auc": None}


@pytest.mark.parametrize("text, value", [("0.1", 0.1), ("3", 3), ("true", True), ("adam", "adam"),
                                         ('{"a": 1}', '{"a": 1}'), ("NaN", "NaN"), (None, None)])
def test_param_values_are_typed_as_params_json_wrote_them(text, value):
    assert param_value(text) == value

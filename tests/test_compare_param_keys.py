"""`workbench compare` shows the params-file keys each stage ran with (stage_params), flattened
to dotted names, beside the logged params: a real project (local runner) whose train stage
names `train` and `split.seed` and whose evaluate stage names `evaluate`; two runs differing
only in `[evaluate] threshold` (train reused in the second). The CLI table, --all, --json,
--where and --sort, and the TUI's compare view through the same service."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_params_keys import TOML, run, write_keys_project
from tests.test_tui import asyncio_test, make_app, opened, private_config, wait_for  # noqa: F401 (fixture)
from workbench.adapters.duckdb_compare import DuckDBCompareStore
from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.core.compare import labelled_columns, parse_where, resolve_where
from workbench.core.compare_keys import flatten_key_value, key_value_columns
from workbench.core.model import RunRecord, RunStatus, StageResult, StageStatus, Trigger
from workbench.ui.screens.compare import CompareScreen


def test_a_key_value_flattens_to_dotted_scalar_names():
    assert flatten_key_value("evaluate", '{"threshold":0.5,"latency_samples":200}') == [
        ("evaluate.threshold", "0.5"), ("evaluate.latency_samples", "200")]
    assert flatten_key_value("split.seed", "1") == [("split.seed", "1")]
    assert flatten_key_value("m", '{"a":{"b":[1,2]},"s":"hi","t":true,"n":null,"e":{}}') == [
        ("m.a.b", "[1,2]"), ("m.s", "hi"), ("m.t", "true"), ("m.n", "null"), ("m.e", "{}")]


def test_a_file_prefixes_a_name_only_when_two_files_give_it():
    columns = key_value_columns([("params.toml", "split.seed", "1"), ("extra.json", "split.seed", "2"),
                                 ("params.toml", "evaluate", '{"threshold":0.5}')])
    assert [c[3] for c in columns] == ["params.toml:split.seed", "extra.json:split.seed", "evaluate.threshold"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare-keys")
    folder = write_keys_project(root)
    first = run(root)
    (folder / "params.toml").write_text(TOML.replace("threshold = 0.5", "threshold = 0.7"))
    second = run(root)
    assert [s["status"] for s in second["stages"]] == ["reused", "succeeded"]
    assert (first["id"], second["id"]) == (1, 2)
    return root


@pytest.mark.slow
def test_compare_shows_the_key_that_differs_and_hides_the_equal_ones(two_runs):
    done = wb(two_runs, "compare", "keys")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "evaluate.threshold" in lines[0] and "split.seed" not in lines[0] and "train.lr" not in lines[0]
    assert lines[1].split()[0] == "2" and "0.7" in lines[1].split()
    assert lines[2].split()[0] == "1" and "0.5" in lines[2].split()
    assert "1 param differs" in done.stdout and "split.seed=1, train.lr=0.1" in done.stdout

    table = json.loads(wb(two_runs, "compare", "keys", "--all", "--json").stdout)
    assert table["params"] == ["evaluate.threshold", "split.seed", "train.lr"]
    # the reused train stage's keys are the values run 2 ran with, as run 1's
    assert [r["params"] for r in table["runs"]] == [
        {"evaluate.threshold": 0.7, "split.seed": 1, "train.lr": 0.1},
        {"evaluate.threshold": 0.5, "split.seed": 1, "train.lr": 0.1}]


@pytest.mark.slow
def test_where_and_sort_name_a_key(two_runs):
    picked = json.loads(wb(two_runs, "compare", "keys", "--where", "evaluate.threshold > 0.6", "--json").stdout)
    assert [r["id"] for r in picked["runs"]] == [2]
    picked = json.loads(wb(two_runs, "compare", "keys", "--where", "evaluate.threshold = 0.5", "--json").stdout)
    assert [r["id"] for r in picked["runs"]] == [1]
    ordered = json.loads(wb(two_runs, "compare", "keys", "--sort", "evaluate.threshold", "--json").stdout)
    assert [r["id"] for r in ordered["runs"]] == [1, 2]
    wrong = wb(two_runs, "compare", "keys", "--where", "evaluate.treshold > 1")
    assert wrong.returncode != 0 and "evaluate.threshold" in wrong.stderr


@pytest.mark.slow
@asyncio_test
async def test_the_tui_compare_view_shows_the_key(two_runs):
    app = make_app(two_runs)
    async with app.run_test(size=(120, 36)) as pilot:
        main = await opened(pilot, runs=2)
        main.table.focus()
        await pilot.pause()
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.table is not None,
                       what="the compare view")
        table = app.screen.table
        assert "evaluate.threshold" in [c.label for c in table.columns]
        assert {r.run_id: r.params["evaluate.threshold"] for r in table.rows} == {1: "0.5", 2: "0.7"}


def test_a_logged_param_wins_over_a_key_of_the_same_name_and_two_files_are_told_apart(tmp_path):
    store = DuckDBLineageStore(tmp_path / "lineage.duckdb")
    run_id, started = store.start_run("p", "/ws/p", "manual", "local", [], [])
    stages = [StageResult("train", StageStatus.SUCCEEDED, "true", "k1", "/ws/out/train", params={"train.lr": "0.3"},
                          param_values={"params.toml:train": '{"lr":0.1,"depth":4}', "params.toml:split.seed": "1",
                                        "extra.json:split.seed": "2"}),
              StageResult("evaluate", StageStatus.SUCCEEDED, "true", "k2", "/ws/out/evaluate",
                          param_values={"params.toml:evaluate": '{"threshold":0.5}'})]
    store.finish_run(RunRecord(run_id, "p", Trigger.MANUAL, RunStatus.SUCCEEDED, "local", started,
                               finished_at=datetime.now(timezone.utc), stages=stages))
    compare = DuckDBCompareStore(store)
    assert compare.rows("p", None)[0].params == {
        "train.lr": "0.3", "train.depth": "4", "evaluate.threshold": "0.5",
        "params.toml:split.seed": "1", "extra.json:split.seed": "2"}
    assert compare.names("p", None)[0] == ["evaluate.threshold", "extra.json:split.seed", "params.toml:split.seed",
                                           "train.depth", "train.lr"]
    columns = labelled_columns(*compare.names("p", None))
    where = resolve_where(parse_where("extra.json:split.seed = 2 and train.lr > 0.2"), columns)
    assert [r.run_id for r in compare.rows("p", None, where)] == [run_id]

"""Planning: stage order, selection, globs, cache keys; and gates."""

import math

import pytest

from workbench.core.gates import evaluate_gates, gates_passed, parse_gate
from workbench.core.planning import (
    CacheKeyParts, CycleError, downstream_of, glob_match, select_stages, stage_inputs, topological_order,
)

DEPS = {"validate": (), "train": ("validate",), "evaluate": ("train",), "report": ("validate",)}


def test_topological_order_keeps_declaration_order_for_ties():
    assert topological_order(DEPS) == ["validate", "train", "evaluate", "report"]


def test_cycle_is_reported_with_its_path():
    with pytest.raises(CycleError, match="a -> b -> a"):
        topological_order({"a": ("b",), "b": ("a",)})


@pytest.mark.parametrize("targets,expected", [
    (None, ["validate", "train", "evaluate", "report"]),
    (["train"], ["validate", "train"]),
    (["evaluate"], ["validate", "train", "evaluate"]),
    (["report", "train"], ["validate", "train", "report"]),
])
def test_select_stages_adds_dependencies(targets, expected):
    assert select_stages(DEPS, targets) == expected


def test_select_unknown_stage():
    with pytest.raises(KeyError, match="unknown stage 'nope'"):
        select_stages(DEPS, ["nope"])


def test_downstream_of():
    assert downstream_of(DEPS, {"train"}) == {"train", "evaluate"}
    assert downstream_of(DEPS, {"validate"}) == set(DEPS)


@pytest.mark.parametrize("path,pattern,expected", [
    ("data/churn.csv", "data/*.csv", True),
    ("data/sub/churn.csv", "data/*.csv", False),
    ("data/sub/churn.csv", "data/**/*.csv", True),
    ("data/churn.csv", "data/**/*.csv", True),
    ("data/churn.csv", "data", True),
    ("database.csv", "data", False),
    ("src/a.py", "**/*.py", True),
    ("a.py", "**/*.py", True),
    ("params.toml", "./params.toml", True),
    ("x/__pycache__/a.pyc", "**/__pycache__/**", True),
    ("notes.txt~", "**/*~", True),
    ("data/c1.csv", "data/c[0-9].csv", True),
])
def test_glob_match(path, pattern, expected):
    assert glob_match(path, pattern) is expected


def test_stage_inputs_selects_matching_files_sorted():
    files = {"b.py": "2", "a.py": "1", "data/x.csv": "3", "README.md": "4"}
    assert stage_inputs(files, ("*.py", "data/*.csv")) == {"a.py": "1", "b.py": "2", "data/x.csv": "3"}


def _key(**overrides):
    parts = dict(stage="train", command="python train.py", inputs={"train.py": "aa"}, image_id="img1",
                 upstream={"validate": "out1"}, network=False)
    parts.update(overrides)
    return CacheKeyParts(**parts).digest()


@pytest.mark.parametrize("change", [
    {"command": "python train.py --fast"},
    {"inputs": {"train.py": "ab"}},
    {"inputs": {"train.py": "aa", "params.toml": "cc"}},
    {"image_id": "img2"},
    {"upstream": {"validate": "out2"}},
    {"network": True},
    {"stage": "train2"},
])
def test_cache_key_changes_with_anything_that_changes_outputs(change):
    assert _key(**change) != _key()


def test_cache_key_is_stable_and_order_independent():
    assert _key(inputs={"a": "1", "b": "2"}) == _key(inputs={"b": "2", "a": "1"})


GATES = [parse_gate("auc", ">= 0.8"), parse_gate("latency_p95_ms", "<= 20"), parse_gate("dpd", "< 0.1")]


@pytest.mark.parametrize("metrics,complete,expected", [
    ({"auc": 0.85, "latency_p95_ms": 3, "dpd": 0.05}, True, [True, True, True]),
    ({"auc": 0.80, "latency_p95_ms": 20, "dpd": 0.1}, True, [True, True, False]),
    ({"auc": 0.79, "latency_p95_ms": 25, "dpd": 0.0}, True, [False, False, True]),
    ({"auc": 0.9}, True, [True, False, False]),
    ({"auc": 0.9}, False, [True, None, None]),
    ({"auc": math.nan, "latency_p95_ms": 1, "dpd": 0}, True, [False, True, True]),
])
def test_gates(metrics, complete, expected):
    results = evaluate_gates(GATES, metrics, complete)
    assert [r.passed for r in results] == expected
    assert gates_passed(results) is (False not in expected)


def test_gate_failure_detail_has_the_numbers():
    (result,) = evaluate_gates([parse_gate("auc", ">= 0.8")], {"auc": 0.7512}, True)
    assert result.detail == "0.7512 is not >= 0.8"
    (missing,) = evaluate_gates([parse_gate("auc", ">= 0.8")], {}, True)
    assert missing.detail == "metric was not reported"


@pytest.mark.parametrize("rule", ["0.8", ">= x", "=> 0.8", ">=", "~ 1"])
def test_bad_gate_rules(rule):
    with pytest.raises(ValueError, match="is not a rule"):
        parse_gate("auc", rule)

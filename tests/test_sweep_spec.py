"""The pure part of sweeps: `--param KEY=SPEC` read into a search space, a trial's values put
into a params document (workbench.core.sweep_spec)."""

from __future__ import annotations

import pytest

from workbench.core.params_keys import ParamRef
from workbench.core.sweep_spec import SweepParam, check_key, grid_size, parse_param_spec, parse_param_specs, with_values


@pytest.mark.parametrize("text, expected", [
    ("train.learning_rate=0.01..0.3:log",
     SweepParam("train.learning_rate", ParamRef("train.learning_rate"), "float", 0.01, 0.3, True)),
    ("train.num_leaves=15..255:int", SweepParam("train.num_leaves", ParamRef("train.num_leaves"), "int", 15, 255)),
    ("train.num_leaves=8..256:int:log",
     SweepParam("train.num_leaves", ParamRef("train.num_leaves"), "int", 8, 256, True)),
    ("train.num_leaves=15,31,63",
     SweepParam("train.num_leaves", ParamRef("train.num_leaves"), "choice", choices=(15, 31, 63))),
    ("params.yaml:model.kind=gbdt, dart",
     SweepParam("params.yaml:model.kind", ParamRef("model.kind", "params.yaml"), "choice", choices=("gbdt", "dart"))),
    ("train.balanced=true,false", SweepParam("train.balanced", ParamRef("train.balanced"), "choice",
                                             choices=(True, False))),
    ("train.rate=0.1,1", SweepParam("train.rate", ParamRef("train.rate"), "choice", choices=(0.1, 1))),
])
def test_a_spec_is_read_into_a_search_space(text, expected):
    assert parse_param_spec(text) == expected


@pytest.mark.parametrize("text, says", [
    ("train.lr", "write KEY=SPEC"),
    ("=0.1..0.3", "write KEY=SPEC"),
    ("train.lr=", "no values after '='"),
    ("train.lr=0.3..0.1", "must be below the high bound"),
    ("train.lr=0..0.3:log", "a log range needs a low bound above 0"),
    ("train.lr=a..b", "a range needs two numbers"),
    ("train.n=1.5..8:int", "whole-number bounds"),
    ("train.lr=0.1..0.3:logg", "unknown modifier 'logg'"),
    ("train.n=15,31:int", "apply to a range"),
    ("train.n=15", "at least two different values"),
    ("train.n=15,15", "at least two different values"),
    ("train.n=15,,31", "an empty value"),
    ("train..lr=1,2", "is not a dotted key"),
    ("notes.txt:lr=1,2", "must be a params file"),
    ("train.lr=0.1..inf", "finite"),
])
def test_a_bad_spec_says_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_param_spec(text)


def test_a_key_given_twice_or_none_at_all_is_refused():
    with pytest.raises(ValueError, match="given twice"):
        parse_param_specs(["train.lr=0.1..0.2", "train.lr=1,2"])
    with pytest.raises(ValueError, match="at least one --param"):
        parse_param_specs([])


def test_the_grid_is_the_choices_and_integer_ranges_but_not_real_ranges():
    leaves, depth = parse_param_spec("t.leaves=15,31,63"), parse_param_spec("t.depth=3..6:int")
    assert leaves.grid() == (15, 31, 63) and depth.grid() == (3, 4, 5, 6)
    assert grid_size((leaves, depth)) == 12
    with pytest.raises(ValueError, match="grid sampler needs a list of values"):
        parse_param_spec("t.lr=0.01..0.3").grid()


def test_a_trials_values_go_into_a_copy_of_the_params_document():
    document = {"train": {"lr": 0.1, "layers": [1, 2]}, "split": {"seed": 7}}
    values = {ParamRef("train.lr"): 0.3, ParamRef("train.layers.1"): 5}
    assert with_values(document, values) == {"train": {"lr": 0.3, "layers": [1, 5]}, "split": {"seed": 7}}
    assert document["train"] == {"lr": 0.1, "layers": [1, 2]}  # the original is left as it was


@pytest.mark.parametrize("spec, says", [
    ("train.lrr=1,2", "key 'train.lrr' is not in params.toml"),
    ("train=1,2", "is a table, not a single value"),
    ("train.layers=1,2", "is a list, not a single value"),
])
def test_a_key_must_hold_one_value_in_the_params_file(spec, says):
    document = {"train": {"lr": 0.1, "layers": [1, 2]}}
    with pytest.raises(ValueError, match=says):
        check_key(document, parse_param_spec(spec), "params.toml")

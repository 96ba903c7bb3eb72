"""Manifest parsing: good manifests parse, bad ones name the file, the key and the problem."""

import pytest

from workbench.core.errors import ManifestError
from workbench.core.manifest import parse_manifest, parse_size

GOOD = """
[project]
name = "churn"
primary_metric = "auc"

[data]
paths = ["data/*.csv"]
target = "churn"
sensitive = ["female"]

[environment]
memory = "512m"
cpus = 2
network = true

[stages.validate]
command = "python validate.py"
inputs = ["validate.py", "data/*.csv"]
outputs = ["report.json"]

[stages.train]
command = "python train.py"
inputs = ["train.py", "params.toml"]
depends_on = ["validate"]
timeout_s = 60

[gates]
auc = ">= 0.80"
"demographic_parity_difference.female" = "<= 0.1"

[watch]
debounce_ms = 500
ignore = ["notebooks/**"]
"""


def test_good_manifest_parses_every_section():
    m = parse_manifest(GOOD, "p/workbench.toml")
    assert m.name == "churn" and m.primary_metric == "auc"
    assert m.data.paths == ("data/*.csv",) and m.data.sensitive == ("female",)
    assert m.environment.memory_bytes == 512 * 1024**2 and m.environment.cpus == 2.0 and m.environment.network
    assert m.stage_order() == ["validate", "train"]
    assert m.stages["train"].depends_on == ("validate",) and m.stages["train"].timeout_s == 60
    assert [str(g) for g in m.gates] == ["auc >= 0.8", "demographic_parity_difference.female <= 0.1"]
    assert m.watch.debounce_ms == 500 and "notebooks/**" in m.ignores and ".git/**" in m.ignores


def test_minimal_manifest_gets_defaults():
    m = parse_manifest('[project]\nname = "x"\n[stages.a]\ncommand = "true"\n')
    assert m.environment.network is False and m.environment.memory == "2g" and m.watch.debounce_ms == 300
    assert m.gates == () and m.stages["a"].inputs == ()
    p = m.promotion
    assert (p.tolerance, p.champion_challenger, p.require_reproducibility, p.auto_staging, p.model_artifact_kind) == (
        0.0, True, False, False, "model")


def test_promotion_policy_parses():
    m = parse_manifest(GOOD + "\n[promotion]\ntolerance = 0.005\nrequire_reproducibility = true\n"
                              'champion_challenger = false\nauto_staging = true\nmodel_artifact_kind = "booster"\n')
    p = m.promotion
    assert (p.tolerance, p.champion_challenger, p.require_reproducibility, p.auto_staging, p.model_artifact_kind) == (
        0.005, False, True, True, "booster")


def test_drift_table_parses_with_defaults_and_overrides():
    d = parse_manifest(GOOD).drift
    assert (d.small_reference_rows, d.ks_pvalue, d.wasserstein, d.chi2_pvalue, d.jensen_shannon, d.psi,
            d.psi_bins, d.drift_share, d.data_file, d.score) == (1000, 0.05, 0.1, 0.05, 0.1, 0.25, 10, 0.2, None, None)
    r = d.retrain
    assert (r.on_drift, r.max_decay, r.decay_metric, r.policy, r.cooldown_minutes, r.max_per_day) == (
        False, None, None, "append", 60.0, 3)
    d = parse_manifest(GOOD + '\n[drift]\ndata_file = "data/a.csv"\nsmall_reference_rows = 5000\nks_pvalue = 0.01\n'
                              'wasserstein = 0.2\njensen_shannon = 0.15\npsi = 0.2\ndrift_share = 0.3\n'
                              'ignore_columns = ["id"]\nscore = "python score.py"\n'
                              '[drift.retrain]\non_drift = true\nmax_decay = 0.03\ndecay_metric = "auc"\n'
                              'policy = "replace"\ncooldown_minutes = 0\nmax_per_day = 10\n').drift
    assert (d.data_file, d.small_reference_rows, d.ks_pvalue, d.wasserstein, d.jensen_shannon, d.psi,
            d.drift_share, d.ignore_columns, d.score) == (
        "data/a.csv", 5000, 0.01, 0.2, 0.15, 0.2, 0.3, ("id",), "python score.py")
    r = d.retrain
    assert (r.on_drift, r.max_decay, r.decay_metric, r.policy, r.cooldown_minutes, r.max_per_day) == (
        True, 0.03, "auc", "replace", 0.0, 10)


def _with(replace: str, by: str) -> str:
    assert replace in GOOD
    return GOOD.replace(replace, by)


BAD = [
    ("not toml", "[project\nname=1", None, "not valid TOML"),
    ("missing name", _with('name = "churn"', ""), "project.name", "is required"),
    ("bad name", _with('name = "churn"', 'name = "my project"'), "project.name", "must be letters"),
    ("typo key", _with('command = "python train.py"', 'command = "python train.py"\nimputs = []'),
     "stages.train.imputs", "unknown key"),
    ("wrong type", _with("cpus = 2", 'cpus = "two"'), "environment.cpus", "must be a number"),
    ("bool for int", _with("debounce_ms = 500", "debounce_ms = true"), "watch.debounce_ms", "must be an integer"),
    ("bad memory", _with('memory = "512m"', 'memory = "lots"'), "environment.memory", "not a size"),
    ("tiny memory", _with('memory = "512m"', 'memory = "1m"'), "environment.memory", "minimum"),
    ("unknown dep", _with('depends_on = ["validate"]', 'depends_on = ["prep"]'), "stages.train.depends_on",
     "unknown stage 'prep'"),
    ("cycle", _with('outputs = ["report.json"]', 'outputs = ["report.json"]\ndepends_on = ["train"]'), "stages",
     "cycle: "),
    ("bad gate", _with('auc = ">= 0.80"', 'auc = "at least 0.8"'), "gates.auc", "is not a rule"),
    ("gate not string", _with('auc = ">= 0.80"', "auc = 0.8"), "gates.auc", "must be a string"),
    ("no stages", '[project]\nname = "x"\n', "stages", "at least one stage"),
    ("empty command", _with('command = "python train.py"', 'command = "  "'), "stages.train.command", "must not be empty"),
    ("output escapes", _with('outputs = ["report.json"]', 'outputs = ["../x"]'), "stages.validate.outputs",
     "inside the stage's output folder"),
    ("bad goal", _with('primary_metric = "auc"', 'primary_metric = "auc"\nprimary_metric_goal = "up"'),
     "project.primary_metric_goal", "maximize"),
    ("list of ints", _with('sensitive = ["female"]', "sensitive = [1]"), "data.sensitive", "non-empty strings"),
    ("unknown section", GOOD + "\n[extras]\nx = 1\n", "extras", "unknown key"),
    ("promotion typo", GOOD + "\n[promotion]\ntolerence = 0.01\n", "promotion.tolerence", "unknown key"),
    ("negative tolerance", GOOD + "\n[promotion]\ntolerance = -0.01\n", "promotion.tolerance", "zero or positive"),
    ("tolerance as text", GOOD + '\n[promotion]\ntolerance = "1%"\n', "promotion.tolerance", "must be a number"),
    ("reproducibility not bool", GOOD + '\n[promotion]\nrequire_reproducibility = "yes"\n',
     "promotion.require_reproducibility", "must be true or false"),
    ("auto_staging not bool", GOOD + "\n[promotion]\nauto_staging = 1\n", "promotion.auto_staging",
     "must be true or false"),
    ("empty model kind", GOOD + '\n[promotion]\nmodel_artifact_kind = " "\n', "promotion.model_artifact_kind",
     "must not be empty"),
    ("drift typo", GOOD + "\n[drift]\nks_p_value = 0.01\n", "drift.ks_p_value", "unknown key"),
    ("drift p-value above 1", GOOD + "\n[drift]\nks_pvalue = 1.5\n", "drift.ks_pvalue", "at most 1"),
    ("drift p-value zero", GOOD + "\n[drift]\nchi2_pvalue = 0\n", "drift.chi2_pvalue", "above 0"),
    ("drift distance as text", GOOD + '\n[drift]\nwasserstein = "0.1"\n', "drift.wasserstein", "must be a number"),
    ("drift js above 1", GOOD + "\n[drift]\njensen_shannon = 2\n", "drift.jensen_shannon", "at most 1"),
    ("drift negative psi", GOOD + "\n[drift]\npsi = -0.1\n", "drift.psi", "above 0"),
    ("drift share above 1", GOOD + "\n[drift]\ndrift_share = 1.2\n", "drift.drift_share", "at most 1"),
    ("drift rows not int", GOOD + "\n[drift]\nsmall_reference_rows = 1e3\n", "drift.small_reference_rows",
     "must be an integer"),
    ("drift one bin", GOOD + "\n[drift]\npsi_bins = 1\n", "drift.psi_bins", "between 2 and 100"),
    ("drift data file escapes", GOOD + '\n[drift]\ndata_file = "../x.csv"\n', "drift.data_file",
     "inside the project"),
    ("drift empty score", GOOD + '\n[drift]\nscore = ""\n', "drift.score", "must not be empty"),
    ("drift ignore not list", GOOD + "\n[drift]\nignore_columns = [1]\n", "drift.ignore_columns",
     "non-empty strings"),
    ("retrain typo", GOOD + "\n[drift.retrain]\non_drfit = true\n", "drift.retrain.on_drfit", "unknown key"),
    ("retrain on_drift not bool", GOOD + '\n[drift.retrain]\non_drift = "yes"\n', "drift.retrain.on_drift",
     "must be true or false"),
    ("retrain bad policy", GOOD + '\n[drift.retrain]\npolicy = "merge"\n', "drift.retrain.policy",
     "'append' or 'replace'"),
    ("retrain negative cooldown", GOOD + "\n[drift.retrain]\ncooldown_minutes = -5\n",
     "drift.retrain.cooldown_minutes", "zero or positive"),
    ("retrain cap not int", GOOD + "\n[drift.retrain]\nmax_per_day = 2.5\n", "drift.retrain.max_per_day",
     "must be an integer"),
    ("retrain negative cap", GOOD + "\n[drift.retrain]\nmax_per_day = -1\n", "drift.retrain.max_per_day",
     "between 0 and 10000"),
    ("retrain negative decay", GOOD + "\n[drift.retrain]\nmax_decay = -0.1\n", "drift.retrain.max_decay",
     "zero or positive"),
    ("retrain empty metric", GOOD + '\n[drift.retrain]\ndecay_metric = ""\n', "drift.retrain.decay_metric",
     "must not be empty"),
]


@pytest.mark.parametrize("case,text,key,problem", BAD, ids=[b[0] for b in BAD])
def test_bad_manifest_names_file_key_and_problem(case, text, key, problem):
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "proj/workbench.toml")
    err = info.value
    assert str(err).startswith("proj/workbench.toml")
    assert err.key == key
    assert problem in err.problem


@pytest.mark.parametrize("text,expected", [("512m", 512 * 1024**2), ("2g", 2 * 1024**3), ("1.5G", int(1.5 * 1024**3)),
                                           ("64MB", 64 * 1024**2), ("1000", 1000)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_example_project_manifest_is_valid():
    from pathlib import Path

    path = Path(__file__).parent.parent / "projects" / "telco-churn" / "workbench.toml"
    m = parse_manifest(path.read_text(), str(path))
    assert m.stage_order() == ["validate", "train", "evaluate"]
    assert any(g.metric == "auc" for g in m.gates)


# Every value the manifest takes is range-checked where it is parsed: paths stay inside the
# project, numbers are finite and within what Docker and the clock can take, strings that reach
# a shell or a file system carry no NUL. Each row: the text added or replaced, the key named,
# and a piece of the problem the user reads.
MINIMAL = '[project]\nname = "x"\n[stages.a]\ncommand = "python a.py"\n'


def _section(extra: str) -> str:
    return MINIMAL + extra


RANGE = [
    # paths: inside the project, relative, no '..'
    ("incoming escapes", _section('[data]\nincoming = "../../../../etc"\n'), "data.incoming", "inside the project"),
    ("incoming absolute", _section('[data]\nincoming = "/etc"\n'), "data.incoming", "inside the project"),
    ("incoming home", _section('[data]\nincoming = "~/batches"\n'), "data.incoming", "inside the project"),
    ("incoming empty", _section('[data]\nincoming = " "\n'), "data.incoming", "must not be empty"),
    ("data path escapes", _section('[data]\npaths = ["data/a.csv", "../other/b.csv"]\n'), "data.paths",
     "'../other/b.csv' must be a path inside the project"),
    ("data path absolute", _section('[data]\npaths = ["/srv/data/*.csv"]\n'), "data.paths", "inside the project"),
    ("data path backslashes", _section('[data]\npaths = ["..\\\\..\\\\secret.csv"]\n'), "data.paths",
     "inside the project"),
    ("data path drive", _section('[data]\npaths = ["C:/data/a.csv"]\n'), "data.paths", "inside the project"),
    ("requirements escapes", _section('[environment]\nrequirements = "../../requirements.txt"\n'),
     "environment.requirements", "inside the project"),
    ("requirements absolute", _section('[environment]\nrequirements = "/etc/shadow"\n'),
     "environment.requirements", "inside the project"),
    ("input escapes", MINIMAL + 'inputs = ["a.py", "../../etc/hostname"]\n', "stages.a.inputs", "inside the project"),
    ("input absolute", MINIMAL + 'inputs = ["/etc/passwd"]\n', "stages.a.inputs", "inside the project"),
    ("input escapes midway", MINIMAL + 'inputs = ["data/../../x"]\n', "stages.a.inputs", "inside the project"),
    ("output absolute", MINIMAL + 'outputs = ["/tmp/model.txt"]\n', "stages.a.outputs", "output folder"),
    ("ignore escapes", _section('[watch]\nignore = ["../**"]\n'), "watch.ignore", "inside the project"),
    ("drift data file absolute", _section('[drift]\ndata_file = "/etc/passwd"\n'), "drift.data_file",
     "inside the project"),
    ("command script escapes", '[project]\nname = "x"\n[stages.a]\ncommand = "python ../../other/train.py"\n',
     "stages.a.command", "'../../other/train.py' must be a path inside the project"),
    ("command climbs out with cd", '[project]\nname = "x"\n[stages.a]\ncommand = "cd .. && python train.py"\n',
     "stages.a.command", "'../train.py' must be a path inside the project"),
    ("score script escapes", _section('[drift]\nscore = "python ../score.py"\n'), "drift.score", "inside the project"),
    # numbers: finite, and within what a machine or Docker can take
    ("cpus nan", _section("[environment]\ncpus = nan\n"), "environment.cpus", "a finite number"),
    ("cpus inf", _section("[environment]\ncpus = inf\n"), "environment.cpus", "a finite number"),
    ("cpus huge", _section("[environment]\ncpus = 1e308\n"), "environment.cpus", "at most 1024"),
    ("cpus overflowing", _section("[environment]\ncpus = 1e999\n"), "environment.cpus", "a finite number"),
    ("cpus below Docker's step", _section("[environment]\ncpus = 0.001\n"), "environment.cpus", "at least 0.01"),
    ("cpus zero", _section("[environment]\ncpus = 0\n"), "environment.cpus", "at least 0.01"),
    ("memory huge", _section('[environment]\nmemory = "99999999999999g"\n'), "environment.memory", "at most 1t"),
    ("memory 2 TiB", _section('[environment]\nmemory = "2048g"\n'), "environment.memory", "at most 1t"),
    ("memory as number", _section("[environment]\nmemory = 1e308\n"), "environment.memory", "must be a string"),
    ("stage memory huge", MINIMAL + 'memory = "5000g"\n', "stages.a.memory", "at most 1t"),
    ("stage memory tiny", MINIMAL + 'memory = "100k"\n', "stages.a.memory", "minimum of 6m"),
    ("timeout nan", _section("[environment]\ntimeout_s = nan\n"), "environment.timeout_s", "a finite number"),
    ("timeout inf", _section("[environment]\ntimeout_s = inf\n"), "environment.timeout_s", "a finite number"),
    ("timeout huge", _section("[environment]\ntimeout_s = 1e308\n"), "environment.timeout_s", "at most"),
    ("timeout negative", _section("[environment]\ntimeout_s = -1\n"), "environment.timeout_s", "above 0"),
    ("stage timeout nan", MINIMAL + "timeout_s = nan\n", "stages.a.timeout_s", "a finite number"),
    ("stage timeout zero", MINIMAL + "timeout_s = 0\n", "stages.a.timeout_s", "above 0"),
    ("gate nan", _section('[gates]\nauc = ">= nan"\n'), "gates.auc", "is not a rule"),
    ("gate overflowing", _section('[gates]\nauc = ">= 1e999"\n'), "gates.auc", "a finite number"),
    ("tolerance inf", _section("[promotion]\ntolerance = inf\n"), "promotion.tolerance", "a finite number"),
    ("tolerance nan", _section("[promotion]\ntolerance = nan\n"), "promotion.tolerance", "a finite number"),
    ("wasserstein inf", _section("[drift]\nwasserstein = inf\n"), "drift.wasserstein", "a finite number"),
    ("psi nan", _section("[drift]\npsi = nan\n"), "drift.psi", "a finite number"),
    ("drift share nan", _section("[drift]\ndrift_share = nan\n"), "drift.drift_share", "a finite number"),
    ("reference rows huge", _section("[drift]\nsmall_reference_rows = 99999999999999999999\n"),
     "drift.small_reference_rows", "between 0 and"),
    ("max decay inf", _section("[drift.retrain]\nmax_decay = inf\n"), "drift.retrain.max_decay", "a finite number"),
    ("cooldown inf", _section("[drift.retrain]\ncooldown_minutes = inf\n"), "drift.retrain.cooldown_minutes",
     "a finite number"),
    ("cooldown past a year", _section("[drift.retrain]\ncooldown_minutes = 1e308\n"),
     "drift.retrain.cooldown_minutes", "at most 525600"),
    ("retrains per day huge", _section("[drift.retrain]\nmax_per_day = 99999999999999999999\n"),
     "drift.retrain.max_per_day", "between 0 and"),
    ("debounce huge", _section("[watch]\ndebounce_ms = 99999999999999999999\n"), "watch.debounce_ms", "between 0"),
    # strings that reach a shell, Docker or a file system
    ("NUL in command", '[project]\nname = "x"\n[stages.a]\ncommand = "python a.py\\u0000"\n', "stages.a.command",
     "NUL"),
    ("NUL in input", MINIMAL + 'inputs = ["a\\u0000.py"]\n', "stages.a.inputs", "NUL"),
    ("base image with spaces", _section('[environment]\nbase_image = "python:3.11 slim"\n'),
     "environment.base_image", "image reference"),
    ("base image empty", _section('[environment]\nbase_image = ""\n'), "environment.base_image", "image reference"),
    ("preload not a module", _section('[environment]\npreload = ["numpy; import os"]\n'), "environment.preload",
     "module name"),
    ("project name too long", '[project]\nname = "' + "n" * 101 + '"\n[stages.a]\ncommand = "true"\n',
     "project.name", "at most 100"),
    ("stage name too long", '[project]\nname = "x"\n[stages.' + "s" * 101 + ']\ncommand = "true"\n',
     "stages." + "s" * 101, "at most 100"),
    ("empty primary metric", '[project]\nname = "x"\nprimary_metric = ""\n[stages.a]\ncommand = "true"\n',
     "project.primary_metric", "must not be empty"),
    ("empty target", _section('[data]\ntarget = ""\n'), "data.target", "must not be empty"),
]


@pytest.mark.parametrize("case,text,key,problem", RANGE, ids=[r[0] for r in RANGE])
def test_every_value_is_range_checked_with_file_and_key(case, text, key, problem):
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "proj/workbench.toml")
    err = info.value
    assert str(err).startswith(f"proj/workbench.toml: {key}: ")
    assert err.key == key
    assert problem in err.problem


GOOD_EDGES = [
    ("glob inside", MINIMAL + 'inputs = ["**/*.py", "./data/*.csv", "data/..hidden/a", "~$budget.csv"]\n'),
    ("cpus at Docker's step", _section("[environment]\ncpus = 0.01\n")),
    ("cpus at the cap", _section("[environment]\ncpus = 1024\n")),
    ("memory at the cap", _section('[environment]\nmemory = "1024g"\n')),
    ("memory in terabytes", _section('[environment]\nmemory = "1t"\n')),
    ("command with an absolute program", '[project]\nname = "x"\n[stages.a]\ncommand = "/usr/bin/env python a.py"\n'),
    ("command with pipes and options", '[project]\nname = "x"\n[stages.a]\n'
                                       'command = "python -u a.py --out ../x > log.txt && sh -c \'echo ..\'"\n'),
    ("dotted preload", _section('[environment]\npreload = ["sklearn.ensemble", "numpy"]\n')),
    ("registry image", _section('[environment]\nbase_image = "localhost:5000/team/python:3.11-slim@sha256:' + "a" * 64 + '"\n')),
]


@pytest.mark.parametrize("case,text", GOOD_EDGES, ids=[g[0] for g in GOOD_EDGES])
def test_values_at_the_edges_of_their_ranges_are_accepted(case, text):
    parse_manifest(text, "proj/workbench.toml")


UNREADABLE = [
    ("nested 10,000 deep", 'x = ' + "[" * 10_000 + "]" * 10_000 + "\n", "nested too deeply"),
    ("nested tables 10,000 deep", "x = " + "{a = " * 10_000 + "1" + "}" * 10_000 + "\n", "nested too deeply"),
    ("integer of 5,000 digits", "x = " + "9" * 5_000 + "\n", "too large"),
]


@pytest.mark.parametrize("case,text,problem", UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_a_manifest_the_toml_reader_cannot_take_is_one_manifest_error(case, text, problem):
    with pytest.raises(ManifestError) as info:
        parse_manifest(MINIMAL + text, "proj/workbench.toml")
    assert str(info.value).startswith("proj/workbench.toml: ") and problem in info.value.problem


def test_a_stage_may_ask_for_gpus_as_a_whole_number():
    base = '[project]\nname = "g"\n[stages.train]\ncommand = "python train.py"\n'
    assert parse_manifest(base).stages["train"].gpus == 0
    assert parse_manifest(base + "gpus = 2\n").stages["train"].gpus == 2
    for bad in ("gpus = -1", "gpus = 1.5", "gpus = 65", 'gpus = "one"'):
        with pytest.raises(ManifestError, match=r"stages\.train\.gpus"):
            parse_manifest(base + bad + "\n")

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
            d.psi_bins, d.drift_share, d.data_file, d.score) == (1000, 0.05, 0.1, 0.05, 0.1, 0.25, 10, 0.5, None, None)
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
     "zero or positive"),
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

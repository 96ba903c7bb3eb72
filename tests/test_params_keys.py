"""Params as dependencies, by key (issue 12 item 2): a stage names the keys of a params file it
reads, and only those values make up its cache key, its lineage and its run diff.

Core tables first, then real runs through the `workbench` command (local runner, real DuckDB),
the TUI's diff screen, `workbench init`, and watch mode with real files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_tui import SIZE, asyncio_test, make_app, opened, private_config, shown, wait_for  # noqa: F401
from tests.test_watch import Events, wait_until
from workbench.core.changes import affected_stages, params_changed
from workbench.core.errors import ManifestError
from workbench.core.events import ChangeDetected, ChangeIgnored, RunFinished, RunStarted, WatchStarted
from workbench.core.manifest import parse_manifest
from workbench.core.model import RunRecord, RunStatus, StageResult, StageStatus, Trigger
from workbench.core.params_keys import (
    ParamRef, ParamsFileError, canonical, default_params_file, parse_param_ref, resolve_stage_params, select,
)
from workbench.core.planning import CacheKeyParts
from workbench.core.rundiff import diff_runs
from workbench.core.scaffold import manifest_text, survey
from workbench.services.session import WorkbenchSession
from workbench.services.watch import WatchService
from workbench.ui.screens.diff import DiffScreen

# -- core tables -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, key, file", [
    ("train", "train", None),
    ("split.seed", "split.seed", None),
    (" split.seed ", "split.seed", None),
    ("other.yaml:train.lr", "train.lr", "other.yaml"),
    ("conf/p.json:a", "a", "conf/p.json"),
    ("./conf/p.json:a", "a", "conf/p.json"),
    ("layers.0", "layers.0", None),
])
def test_param_refs_parse(text, key, file):
    assert parse_param_ref(text) == ParamRef(key, file)


@pytest.mark.parametrize("text, problem", [
    ("split..seed", "not a dotted key"),
    (".train", "not a dotted key"),
    ("train.", "not a dotted key"),
    ("params.toml:", "names no key"),
    ("notes.txt:train", "must be a params file ending in"),
])
def test_bad_param_refs_say_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_param_ref(text)


STAGE = '[project]\nname = "p"\n{project}\n[stages.train]\ncommand = "python train.py"\n{stage}\n'


@pytest.mark.parametrize("project, stage, key, problem", [
    ("", 'params = ["split..seed"]', "stages.train.params", "not a dotted key"),
    ("", 'params = ["../up.toml:train"]', "stages.train.params", "without '..'"),
    ("", 'params = ["/etc/p.toml:train"]', "stages.train.params", "not an absolute path"),
    ("", 'params = ["train", "train"]', "stages.train.params", "listed twice"),
    ("", 'params = "train"\nparams_file = "x"', "stages.train.params_file", "unknown key"),
    ("", "params = [1]", "stages.train.params", "list of non-empty strings"),
    ('params = "settings.ini"', "", "project.params", "must be a TOML, YAML or JSON file"),
    ('params = "../params.toml"', "", "project.params", "without '..'"),
])
def test_manifest_refuses_bad_params_naming_the_key(project, stage, key, problem):
    with pytest.raises(ManifestError) as caught:
        parse_manifest(STAGE.format(project=project, stage=stage))
    assert caught.value.key == key and problem in str(caught.value)


def test_manifest_keeps_keys_and_the_project_params_file():
    manifest = parse_manifest(STAGE.format(project='params = "./conf/params.yaml"',
                                           stage='params = ["train", "other.json:lr"]'))
    assert manifest.params_file == "./conf/params.yaml"
    assert manifest.stages["train"].params == (ParamRef("train"), ParamRef("lr", "other.json"))


DOCUMENT = {"split": {"seed": 42, "test_size": 0.25}, "train": {"lr": 0.1, "layers": [8, 4]}, "name": "x"}


@pytest.mark.parametrize("key, expected", [
    ("split.seed", "42"),
    ("split", '{"seed":42,"test_size":0.25}'),         # a section: sorted keys, no spaces
    ("train.layers.1", "4"),                           # a number indexes a list
    ("name", '"x"'),
])
def test_select_and_canonical(key, expected):
    assert canonical(select(DOCUMENT, ParamRef(key), "params.toml")) == expected


@pytest.mark.parametrize("key, problem", [
    ("split.sede", "key 'split.sede' is not in params.toml ([split] has: seed, test_size)"),
    ("evaluate", "key 'evaluate' is not in params.toml (the top level has: name, split, train)"),
    ("name.x", "[name] is a value (\"x\"), not a table"),
    ("train.layers.5", "[train.layers] is a list of 2 values"),
])
def test_a_missing_key_names_the_key_the_file_and_what_is_there(key, problem):
    with pytest.raises(KeyError) as caught:
        select(DOCUMENT, ParamRef(key), "params.toml")
    assert problem in caught.value.args[0]


def test_canonical_keeps_types_apart():
    import datetime
    assert len({canonical(1), canonical(1.0), canonical(True), canonical("1"), canonical(float("nan"))}) == 5
    assert canonical({"b": 1, "a": [datetime.date(2026, 12, 1)]}) == '{"a":["2026-12-01"],"b":1}'


@pytest.mark.parametrize("configured, present, expected, why", [
    (None, ["params.toml", "train.py"], "params.toml", None),
    (None, ["params.yaml"], "params.yaml", None),
    ("./conf/p.json", ["params.toml", "params.yaml"], "conf/p.json", None),
    (None, ["train.py"], None, "no params file"),
    (None, ["params.toml", "params.json"], None, "several params files (params.toml, params.json)"),
])
def test_which_file_a_bare_key_reads(configured, present, expected, why):
    found, reason = default_params_file(configured, present)
    assert found == expected and (why is None) == (reason is None) and (why is None or why in reason)


def test_resolve_names_the_stage_key_and_file():
    files = {"params.toml": DOCUMENT}

    def load(name):
        if name not in files:
            raise ParamsFileError(f"params file {name} does not exist in the project")
        return files[name]

    refs = (ParamRef("train.lr"), ParamRef("split.seed"))
    ok = resolve_stage_params("train", refs, "params.toml", None, load)
    assert ok.problem is None and ok.values == {"params.toml:train.lr": "0.1", "params.toml:split.seed": "42"}
    missing = resolve_stage_params("evaluate", (ParamRef("evaluate.threshold"),), "params.toml", None, load)
    assert "'evaluate.threshold' is not in params.toml" in missing.problem
    assert "stages.evaluate.params" in missing.problem
    other = resolve_stage_params("train", (ParamRef("lr", "other.yaml"),), "params.toml", None, load)
    assert other.problem == "stages.train.params: params file other.yaml does not exist in the project"
    no_default = resolve_stage_params("train", (ParamRef("lr"),), None, "no params file: ...", load)
    assert no_default.problem == "stages.train.params: 'lr' needs a params file: no params file: ..."


def _key(**change) -> str:
    parts = dict(stage="train", command="python train.py", inputs={"train.py": "a"}, image_id="img",
                 upstream={}, network=False)
    return CacheKeyParts(**parts | change).digest()


def test_cache_key_takes_the_values_not_the_file():
    base = _key(params={"params.toml:train": '{"lr":0.1}'})
    assert _key(params={"params.toml:train": '{"lr":0.1}'}) == base
    assert _key(params={"params.toml:train": '{"lr":0.2}'}) != base
    assert _key(params={"params.toml:train": '{"lr":0.1}', "params.toml:split.seed": "1"}) != base
    assert _key() != base and _key() == _key(params={})  # no keys: the key a stage always had


WATCH_MANIFEST = parse_manifest("""
[project]
name = "p"
[stages.train]
command = "python train.py"
params = ["train"]
[stages.evaluate]
command = "python evaluate.py"
params = ["evaluate"]
depends_on = ["train"]
[stages.report]
command = "python report.py"
inputs = ["params.toml"]
""")


@pytest.mark.parametrize("before, after, changed", [
    ({"train": 1, "evaluate": 2}, {"train": 1, "evaluate": 3}, {"evaluate"}),
    ({"train": 1, "evaluate": 2}, {"train": 5, "evaluate": 2}, {"train"}),
    ({"train": 1, "evaluate": 2}, {"train": 1, "evaluate": 2}, set()),
    ({"train": 1}, {"train": 1, "evaluate": 2}, {"evaluate"}),
])
def test_params_changed_names_the_stages_whose_keys_moved(before, after, changed):
    assert params_changed(before, after) == changed


@pytest.mark.parametrize("paths, keys, expected", [
    (["params.toml"], {"evaluate"}, {"evaluate", "report"}),    # report lists the file whole
    (["params.toml"], {"train"}, {"train", "evaluate", "report"}),
    (["params.toml"], set(), {"report"}),
    (["train.py"], {"evaluate"}, {"evaluate"}),
])
def test_affected_stages_by_key(paths, keys, expected):
    assert affected_stages(WATCH_MANIFEST, paths, keys) == expected


def _run(run_id: int, values: dict[str, str]) -> RunRecord:
    stage = StageResult("train", StageStatus.SUCCEEDED, "python train.py", "k", "", param_values=values)
    return RunRecord(run_id, "p", Trigger.MANUAL, RunStatus.SUCCEEDED, "local", None, stages=[stage])


def test_run_diff_shows_a_changed_key():
    diff = diff_runs(_run(1, {"params.toml:train.lr": "0.1", "params.toml:split": "1"}),
                     _run(2, {"params.toml:train.lr": "0.2", "params.toml:split": "1"}))
    assert [(c.name, c.before, c.after, c.kind) for c in diff.param_keys] == [
        ("params.toml:train.lr", "0.1", "0.2", "changed")]
    assert not diff.unchanged


@pytest.mark.parametrize("train, keys, inputs", [
    ('import wb\nparams = wb.load_params()\nprint(params["train"]["lr"], params["split"]["seed"])\n',
     ("train.lr", "split.seed"), ("train.py",)),
    ('import tomllib\nparams = tomllib.load(open("params.toml", "rb"))\nfit(**params["train"])\n',
     ("train",), ("train.py",)),
    ('import wb\nfit(wb.load_params("params.toml", "train"), wb.load_params("params.toml", "split.seed"))\n',
     ("train", "split.seed"), ("train.py",)),
    ('import json\nwith open("conf.json") as fh:\n    conf = json.load(fh)\nfit(conf["model"])\n',
     ("conf.json:model",), ("train.py",)),
    # read whole (passed on), or from a file ast cannot name: the whole file, as before
    ('import wb\nparams = wb.load_params()\nfit(params)\n', (), ("train.py", "params.toml")),
    ('import wb, sys\nDEFAULT = "params.toml"\nfit(wb.load_params(sys.argv[1] if sys.argv[1:] else DEFAULT, "train"))\n',
     (), ("train.py", "params.toml")),
    ('import wb\nsection = "train"\nfit(wb.load_params("params.toml", section))\n', (), ("train.py", "params.toml")),
])
def test_init_writes_the_keys_a_script_reads(train, keys, inputs):
    files = ["train.py", "params.toml", "conf.json"]
    found = survey("p", files, {"train.py": train})
    manifest = parse_manifest(manifest_text(found))
    stage = manifest.stages["train"]
    assert tuple(r.label(None).removeprefix("?:") for r in stage.params) == keys
    assert stage.inputs == inputs


# -- real runs through the command -------------------------------------------------------------

TRAIN = """
import json, wb
train = wb.load_params(wb.PARAMS, "train")
seed = wb.load_params(wb.PARAMS, "split.seed")
json.dump({"lr": train["lr"], "seed": seed}, open(wb.output_path("model.json"), "w"))
wb.log_artifact("model.json", "model")
wb.log_metrics({"lr": train["lr"]})
"""
EVALUATE = """
import json, wb
model = json.load(open(wb.upstream("train", "model.json")))
threshold = wb.load_params(wb.PARAMS, "evaluate")["threshold"]
wb.log_metrics({"score": model["lr"] * 10, "threshold": threshold})
"""
MANIFEST = """
[project]
name = "keys"
{project}
[stages.train]
command = "python train.py"
inputs = ["train.py"]
params = ["train", "split.seed"]
outputs = ["model.json"]

[stages.evaluate]
command = "python evaluate.py"
inputs = ["evaluate.py"]
params = ["evaluate"]
depends_on = ["train"]

[watch]
debounce_ms = 150
"""
TOML = "[split]\nseed = 1\n\n[train]\nlr = 0.1\n\n[evaluate]\nthreshold = 0.5\n"
YAML = "split:\n  seed: 1\ntrain:\n  lr: 0.1\nevaluate:\n  threshold: 0.5\n"
JSON = '{"split": {"seed": 1}, "train": {"lr": 0.1}, "evaluate": {"threshold": 0.5}}\n'


def write_keys_project(root: Path, params_name: str = "params.toml", params_text: str = TOML,
                       project: str = "") -> Path:
    folder = root / "keys"
    folder.mkdir(parents=True, exist_ok=True)
    # Which file the scripts read is the test's business: wb.PARAMS is set for them here.
    prelude = f"import wb\nwb.PARAMS = {params_name!r}\n"
    files = {"workbench.toml": MANIFEST.format(project=project), "train.py": prelude + TRAIN,
             "evaluate.py": prelude + EVALUATE, params_name: params_text}
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def run(root: Path) -> dict:
    done = wb(root, "run", "keys", "--runner", "local", "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def statuses(record: dict) -> dict[str, str]:
    return {s["stage"]: s["status"] for s in record["stages"]}


def metrics(record: dict) -> dict[str, float]:
    return {name: value for s in record["stages"] for name, value in s["metrics"].items()}


@pytest.mark.slow
def test_an_evaluate_key_edit_reruns_evaluate_and_reuses_train(tmp_path):
    folder = write_keys_project(tmp_path)
    params = folder / "params.toml"
    first = run(tmp_path)
    assert first["status"] == "succeeded" and statuses(first) == {"train": "succeeded", "evaluate": "succeeded"}

    params.write_text(params.read_text().replace("threshold = 0.5", "threshold = 0.7"))
    second = run(tmp_path)
    assert statuses(second) == {"train": "reused", "evaluate": "succeeded"}
    assert metrics(second)["threshold"] == 0.7

    params.write_text(params.read_text().replace("lr = 0.1", "lr = 0.2"))
    third = run(tmp_path)
    assert statuses(third) == {"train": "succeeded", "evaluate": "succeeded"}
    assert metrics(third)["score"] == pytest.approx(2.0)

    # a comment, or a section no stage names, reruns nothing
    params.write_text(params.read_text() + "# a note\n\n[unused]\nx = 1\n")
    fourth = run(tmp_path)
    assert statuses(fourth) == {"train": "reused", "evaluate": "reused"}

    runs = json.loads(wb(tmp_path, "runs", "--json").stdout)
    assert [r["reused"] for r in runs] == [2, 0, 1, 0]


@pytest.mark.parametrize("params_name, text, project, edit_threshold, edit_lr", [
    ("params.yaml", YAML, "", ("threshold: 0.5", "threshold: 0.7"), ("lr: 0.1", "lr: 0.2")),
    ("settings.json", JSON, 'params = "settings.json"', ('"threshold": 0.5', '"threshold": 0.7'),
     ('"lr": 0.1', '"lr": 0.2')),
])
def test_yaml_and_json_params_files_by_key(tmp_path, params_name, text, project, edit_threshold, edit_lr):
    folder = write_keys_project(tmp_path, params_name, text, project)
    params = folder / params_name
    session = WorkbenchSession(tmp_path, runner="local")

    def run_statuses():
        record = session.run("keys")
        return {s.stage: str(s.status) for s in record.stages}, record

    assert run_statuses()[0] == {"train": "succeeded", "evaluate": "succeeded"}
    params.write_text(params.read_text().replace(*edit_threshold))
    done, record = run_statuses()
    assert done == {"train": "reused", "evaluate": "succeeded"} and record.metrics["threshold"] == 0.7
    assert record.stages[1].param_values == {f"{params_name}:evaluate": '{"threshold":0.7}'}
    params.write_text(params.read_text().replace(*edit_lr))
    assert run_statuses()[0] == {"train": "succeeded", "evaluate": "succeeded"}


def test_a_params_file_also_in_inputs_keeps_the_whole_file_behaviour(tmp_path):
    folder = write_keys_project(tmp_path)
    manifest = folder / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('inputs = ["train.py"]', 'inputs = ["train.py", "params.toml"]'))
    session = WorkbenchSession(tmp_path, runner="local")
    session.run("keys")
    params = folder / "params.toml"
    params.write_text(params.read_text().replace("threshold = 0.5", "threshold = 0.7"))
    again = session.run("keys")
    assert {s.stage: str(s.status) for s in again.stages} == {"train": "succeeded", "evaluate": "succeeded"}


def test_a_missing_key_fails_the_stage_before_it_runs_naming_stage_key_and_file(tmp_path):
    folder = write_keys_project(tmp_path)
    manifest = folder / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('params = ["evaluate"]', 'params = ["evaluate.treshold"]'))
    done = wb(tmp_path, "run", "keys", "--runner", "local")
    assert done.returncode == 1
    assert ("stage evaluate failed: key 'evaluate.treshold' is not in params.toml ([evaluate] has: threshold), "
            "which stages.evaluate.params names") in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    record = json.loads(wb(tmp_path, "show", "1", "--json").stdout)
    evaluate = next(s for s in record["stages"] if s["stage"] == "evaluate")
    assert evaluate["status"] == "failed" and evaluate["started_at"] is None and evaluate["output_dir"] == ""


def test_a_params_file_that_does_not_parse_is_a_stage_error_with_its_line(tmp_path):
    write_keys_project(tmp_path, "params.yaml", "split:\n  seed: 1\ntrain: [unclosed\n")
    done = wb(tmp_path, "run", "keys", "--runner", "local")
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert "stage train failed: stages.train.params: params.yaml is not valid YAML" in done.stdout
    assert "line 4" in done.stdout


@pytest.mark.slow
def test_lineage_holds_the_values_each_stage_ran_with(tmp_path):
    write_keys_project(tmp_path)
    first = run(tmp_path)
    lineage = json.loads(wb(tmp_path, "lineage", str(first["id"]), "--json").stdout)
    values = {s["stage"]: s["param_values"] for s in lineage["stages"]}
    assert values == {"train": {"params.toml:train": '{"lr":0.1}', "params.toml:split.seed": "1"},
                      "evaluate": {"params.toml:evaluate": '{"threshold":0.5}'}}
    assert all("params.toml" not in {f["path"] for f in s["inputs"]} for s in lineage["stages"])
    text = wb(tmp_path, "lineage", str(first["id"])).stdout
    assert 'key  params.toml:train = {"lr":0.1}' in text and "key  params.toml:split.seed = 1" in text
    # a reused stage records the values it was reused for
    (tmp_path / "keys" / "params.toml").write_text(TOML.replace("threshold = 0.5", "threshold = 0.6"))
    second = run(tmp_path)
    lineage = json.loads(wb(tmp_path, "lineage", str(second["id"]), "--json").stdout)
    values = {s["stage"]: (s["status"], s["param_values"]) for s in lineage["stages"]}
    assert values["train"] == ("reused", {"params.toml:train": '{"lr":0.1}', "params.toml:split.seed": "1"})
    assert values["evaluate"] == ("succeeded", {"params.toml:evaluate": '{"threshold":0.6}'})


@asyncio_test
async def test_the_diff_screen_shows_a_changed_key_old_to_new(tmp_path):
    write_keys_project(tmp_path)
    session = WorkbenchSession(tmp_path, runner="local")
    first = session.run("keys")
    (tmp_path / "keys" / "params.toml").write_text(TOML.replace("threshold = 0.5", "threshold = 0.75"))
    second = session.run("keys")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot, runs=2)
        await pilot.press("tab", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen), what="the diff screen")
        diff = app.screen.diff
        assert (diff.base, diff.run) == (first.id, second.id)
        assert [(c.name, c.before, c.after) for c in diff.param_keys] == [
            ("params.toml:evaluate", '{"threshold":0.5}', '{"threshold":0.75}')]
        await shown(pilot, "params.toml:evaluate", '{"threshold":0.5} → {"threshold":0.75}')


def test_init_writes_keys_for_a_script_that_reads_params_train(tmp_path):
    folder = tmp_path / "fresh"
    folder.mkdir()
    (folder / "params.toml").write_text("[train]\nscale = 2.0\n\n[evaluate]\nthreshold = 0.5\n")
    (folder / "train.py").write_text(
        "import tomllib, wb\n\nparams = tomllib.load(open('params.toml', 'rb'))\n"
        "wb.log_metrics({'scale': params['train']['scale']})\n")
    done = wb(tmp_path, "init", "fresh")
    assert done.returncode == 0, done.stderr
    manifest = parse_manifest((folder / "workbench.toml").read_text())
    assert manifest.stages["train"].params == (ParamRef("train.scale"),)
    assert manifest.stages["train"].inputs == ("train.py",)
    record = json.loads(wb(tmp_path, "run", "fresh", "--runner", "local", "--json").stdout)
    assert record["status"] == "succeeded" and metrics(record) == {"scale": 2.0}
    (folder / "params.toml").write_text("[train]\nscale = 2.0\n\n[evaluate]\nthreshold = 0.9\n")
    again = json.loads(wb(tmp_path, "run", "fresh", "--runner", "local", "--json").stdout)
    assert statuses(again) == {"train": "reused"}


# -- watch mode ------------------------------------------------------------------------------


@pytest.mark.slow
def test_watch_reruns_only_the_stages_whose_keys_changed(tmp_path):
    folder = write_keys_project(tmp_path)
    session = WorkbenchSession(tmp_path, runner="local")
    assert session.run("keys").status is RunStatus.SUCCEEDED
    events = Events()
    service = WatchService(session, events)
    try:
        service.watch("keys")
        events.wait_for(WatchStarted)
        params = folder / "params.toml"

        def change_and_run(text: str, count: int):
            params.write_text(text)
            change = events.wait_for(ChangeDetected, count=count)
            started = events.wait_for(RunStarted, count=count)
            events.wait_for(RunFinished, lambda e: e.record.id == started.run_id)
            return change, session.get_run(started.run_id)

        change, record = change_and_run(TOML.replace("threshold = 0.5", "threshold = 0.7"), 1)
        assert change.stages == ("evaluate",)
        assert {s.stage: str(s.status) for s in record.stages} == {"train": "reused", "evaluate": "succeeded"}
        assert record.stage_filter == ["evaluate"]

        text = TOML.replace("threshold = 0.5", "threshold = 0.7").replace("lr = 0.1", "lr = 0.3")
        change, record = change_and_run(text, 2)
        assert change.stages == ("train", "evaluate")
        assert {s.stage: str(s.status) for s in record.stages} == {"train": "succeeded", "evaluate": "succeeded"}

        params.write_text(text + "\n[unused]\nx = 1\n")  # no stage's key: nothing runs
        ignored = events.wait_for(ChangeIgnored)
        assert ignored.reason == "no params key a stage reads changed" and ignored.paths == ("params.toml",)
        assert len(events.of(ChangeDetected)) == 2
    finally:
        service.close()
    assert wait_until(lambda: all(r.status != "running" for r in session.runs()))
    assert len(session.runs()) == 3

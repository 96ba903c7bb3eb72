"""Explanations (issue 12 item 4): gain and split importance read from a LightGBM model's text
agree with LightGBM's own; wb.explain's mean |SHAP| agrees with pred_contrib; a real run keeps
them per version; `workbench explain` and the run diff compare two versions; a model that is
not LightGBM is a note, not a crash; the host never imports lightgbm."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from tests.test_cli import wb
from tests.test_tui import private_config  # noqa: F401  (HOME and config kept in the test's folder)
from workbench.cli.main import main
from workbench.core.explain import NotLightGBMModel, diff_explanations, parse_lightgbm_model
from workbench.runtime import wb as wb_runtime

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "projects" / "telco-churn"
P = "telco-churn"


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, np.ndarray]:
    """The example's real data, encoded as its stages do: text columns as pandas categories."""
    df = pd.read_csv(EXAMPLE / "data" / "churn.csv")
    y = (df.pop("churn") == "Yes").astype(int).to_numpy()
    for column in df.select_dtypes(exclude="number").columns:
        df[column] = df[column].astype("category")
    return df, y


def train(X, y, rounds: int = 200, **overrides) -> lgb.Booster:
    params = tomllib.loads((EXAMPLE / "params.toml").read_text())["train"]
    params.pop("num_boost_round")
    return lgb.train({**params, **overrides}, lgb.Dataset(X, label=y), num_boost_round=rounds)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_importance_parsed_from_model_text_agrees_with_lightgbm(churn, tmp_path, kind):
    X, y = churn
    if kind == "multiclass":  # the contract type, three classes: a tree per class per round
        target = X["contract"].cat.codes.to_numpy()
        booster = train(X.drop(columns="contract"), target, rounds=40, objective="multiclass", num_class=3)
    else:
        booster = train(X, y)
    path = tmp_path / "model.txt"
    booster.save_model(path)

    parsed = parse_lightgbm_model(path.read_text(), "model.txt")
    loaded = lgb.Booster(model_file=str(path))
    assert list(parsed.features) == loaded.feature_name()
    np.testing.assert_allclose(parsed.gain, loaded.feature_importance("gain"), rtol=0, atol=1e-9)
    assert list(parsed.split) == loaded.feature_importance("split").tolist()
    # The trained booster counts the same splits (its gains print to 6 digits in the file).
    assert list(parsed.split) == booster.feature_importance("split").tolist()
    assert parsed.trees == loaded.num_trees()


@pytest.mark.parametrize("content", [b"\x80\x04\x95 pickled", b'{"data": "A\\nB", "scale": 1.5}', b""])
def test_a_file_that_is_not_a_lightgbm_model_is_named_as_such(content):
    with pytest.raises(NotLightGBMModel, match="model.bin is not a LightGBM model"):
        parse_lightgbm_model(content.decode("latin-1"), "model.bin")


def test_wb_explain_means_agree_with_pred_contrib(churn, tmp_path, monkeypatch):
    X, y = churn
    booster = train(X, y, rounds=60)
    model_file = tmp_path / "model.txt"
    booster.save_model(model_file)
    monkeypatch.setenv("WB_OUTPUT_DIR", str(tmp_path / "out"))

    # Every row (fewer rows than the sample): against pred_contrib over all of them.
    means = wb_runtime.explain(booster, X, sample=len(X) + 1, model_file=str(model_file))
    direct = np.abs(booster.predict(X, pred_contrib=True))[:, :-1].mean(axis=0)
    np.testing.assert_allclose([means[name] for name in booster.feature_name()], direct, rtol=1e-12, atol=0)
    written = json.loads((tmp_path / "out" / "explanations.json").read_text())
    assert written["rows"] == written["total_rows"] == len(X)
    assert written["model_sha256"] == __import__("hashlib").sha256(model_file.read_bytes()).hexdigest()
    assert written["mean_abs_shap"] == means

    # A sample: the rows a seeded draw picks, the same on every call.
    sampled = wb_runtime.explain(booster, X, sample=500)
    rows = sorted(random.Random(0).sample(range(len(X)), 500))
    direct = np.abs(booster.predict(X.iloc[rows], pred_contrib=True))[:, :-1].mean(axis=0)
    np.testing.assert_allclose([sampled[name] for name in booster.feature_name()], direct, rtol=1e-12, atol=0)
    assert json.loads((tmp_path / "out" / "explanations.json").read_text())["rows"] == 500
    assert wb_runtime.explain(booster, X, sample=500) == sampled
    with pytest.raises(ValueError, match="sample must be at least 1"):
        wb_runtime.explain(booster, X, sample=0)

    # Multiclass: each class's block of contributions, summed over the classes.
    target = X["contract"].cat.codes.to_numpy()
    features = X.drop(columns="contract")
    multi = train(features, target, rounds=20, objective="multiclass", num_class=3)
    means = wb_runtime.explain(multi, features, sample=len(features))
    blocks = np.abs(multi.predict(features, pred_contrib=True)).mean(axis=0).reshape(3, -1)[:, :-1].sum(axis=0)
    np.testing.assert_allclose([means[name] for name in multi.feature_name()], blocks, rtol=1e-12, atol=0)


def test_the_diff_of_two_explanations_ranks_by_share():
    def payload(**gains):
        return {"features": [{"feature": f, "gain": g, "split": 1, "mean_abs_shap": None} for f, g in gains.items()]}

    shifts = diff_explanations(payload(a=6.0, b=3.0, c=1.0), payload(a=20.0, c=60.0, d=20.0))
    by_name = {s.feature: s for s in shifts}
    assert [s.feature for s in shifts] == ["c", "a", "d", "b"]  # the newer order, then the one gone
    assert (by_name["c"].rank_before, by_name["c"].rank_after, by_name["c"].rank_change) == (3, 1, 2)
    assert by_name["a"].rank_change == -1 and by_name["a"].share_change == pytest.approx(0.2 - 0.6)
    assert by_name["d"].rank_before is None and by_name["b"].rank_after is None


def _copy_example(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(EXAMPLE, ws / P, ignore=shutil.ignore_patterns(".workbench", "__pycache__"))
    manifest = ws / P / "workbench.toml"
    # Single-row latency on a busy shared host is not what this test is about.
    manifest.write_text(manifest.read_text().replace('latency_p95_ms = "<= 50"', 'latency_p95_ms = "<= 1000"'))
    return ws


HOST_RUN = """
import sys
from workbench.cli.main import main
code = main(sys.argv[1:])
print("LIGHTGBM IMPORTED" if "lightgbm" in sys.modules else "no lightgbm", file=sys.stderr)
sys.exit(code)
"""


def host(ws: Path, *args: str) -> subprocess.CompletedProcess:
    """The `workbench` command in a process that says whether it imported lightgbm."""
    done = subprocess.run([sys.executable, "-c", HOST_RUN, "-w", str(ws), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "120"})
    assert "no lightgbm" in done.stderr, f"the host imported lightgbm for {args}:\n{done.stderr}"
    return done


@pytest.mark.slow
def test_real_runs_keep_explanations_per_version_and_compare_them(churn, tmp_path, capsys):
    from workbench.services.inspect import compare_runs
    from workbench.services.session import WorkbenchSession

    ws = _copy_example(tmp_path)
    first = host(ws, "run", P, "--runner", "local", "-q")
    assert first.returncode == 0, first.stdout + first.stderr
    params = ws / P / "params.toml"
    params.write_text(params.read_text().replace("learning_rate = 0.03", "learning_rate = 0.1")
                      .replace("num_leaves = 15", "num_leaves = 4"))
    session = WorkbenchSession(ws, runner="local")
    second = session.run(P)
    assert str(second.status) == "succeeded", second.reason
    for run_id in (1, 2):
        payload = session.explanations(run_id)["train"]
        assert set(payload) == {"model", "model_sha256", "shap_rows", "features"}
        assert payload["model"] == "model.txt" and payload["shap_rows"] == 1000
        model = session.get_run(run_id).stages[1].artifacts[0]
        assert payload["model_sha256"] == model.sha256
        loaded = lgb.Booster(model_file=model.path)
        gains = dict(zip(loaded.feature_name(), loaded.feature_importance("gain")))
        splits = dict(zip(loaded.feature_name(), loaded.feature_importance("split").tolist()))
        assert [f["feature"] for f in payload["features"]] == sorted(gains, key=lambda f: (-gains[f], f))
        for f in payload["features"]:
            assert f["gain"] == pytest.approx(gains[f["feature"]], rel=0, abs=1e-9)
            assert f["split"] == splits[f["feature"]]
            assert (f["mean_abs_shap"] > 0) == (f["split"] > 0), "a feature no tree splits on contributes 0"
    assert session.version_explanations(P, 2) == {"train": session.explanations(2)["train"]}
    weights = session.importance_weights(P, 1)
    assert sum(weights.values()) == pytest.approx(1.0) and max(weights, key=weights.get) == "contract"

    shown = host(ws, "explain", P, "2", "--against", "1", "--top", "6")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "telco-churn version 2" in lines[0] and "mean |SHAP| over 1,000 rows" in lines[0]
    assert "vs v1" in lines[1] and [line.split()[0] for line in lines[2:8]] == ["1", "2", "3", "4", "5", "6"]
    assert "█" in lines[2] and "contract" in lines[2] and "13 more feature(s) not shown" in lines[8]
    assert any("↑" in line for line in lines) and any("↓" in line for line in lines)

    capsys.readouterr()
    assert main(["-w", str(ws), "explain", P, "2", "--against", "1", "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["version"] == 2 and as_json["against"]["version"] == 1
    assert len(as_json["explanation"]["features"]) == 19 == len(as_json["changes"])
    moved = {c["feature"]: c["rank_change"] for c in as_json["changes"] if c["rank_change"]}
    assert moved, "num_leaves 15 -> 4 moves some features"

    diff = compare_runs(session, 1, 2)
    assert {s.feature: s.rank_change for s in diff.importance if s.rank_change} == moved
    assert diff.importance_note == ""


def test_a_model_that_is_not_lightgbm_gets_a_note(tmp_path, capsys):
    from tests.test_pipeline_local import write_project

    write_project(tmp_path)  # its fit stage logs model.json as the model
    assert wb(tmp_path, "run", "tiny", "--runner", "local", "-q").returncode == 0
    shown = host(tmp_path, "explain", "tiny", "1")
    assert shown.returncode == 0, shown.stderr
    assert "note: model.json is not a LightGBM model" in shown.stdout and "no feature importance" in shown.stdout
    capsys.readouterr()
    assert main(["-w", str(tmp_path), "explain", "tiny", "1", "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["explanation"] is None and "not a LightGBM model" in as_json["notes"][0]
    assert main(["-w", str(tmp_path), "explain", "tiny", "7"]) == 3
    assert "tiny has no model version 7: its versions are 1" in capsys.readouterr().err


# A fit stage that writes a LightGBM text model by hand (two features, their gains from the
# params) and the explanations.json wb.explain would: the host's reading is what is under test,
# and a stage without lightgbm starts in milliseconds.
TEXT_MODEL_FIT = """
import json, wb
gains = wb.load_params("params.toml", "fit")["gains"]
lines = ["tree", "version=v4", "num_class=1", "num_tree_per_iteration=1", "label_index=0", "max_feature_idx=1",
         "objective=binary sigmoid:1", "feature_names=age income", "", "Tree=0", "num_leaves=3",
         "split_feature=0 1", "split_gain=%r %r" % tuple(gains), "", "end of trees", ""]
open(wb.output_path("model.txt"), "w").write("\\n".join(lines))
wb.log_artifact("model.txt", "model")
json.dump({"rows": 10, "mean_abs_shap": {"age": gains[0] / 10, "income": gains[1] / 10}},
          open(wb.output_path("explanations.json"), "w"))
wb.log_metrics({"score": 1.0})
"""


def text_model_project(root: Path, gains: str = "[5.0, 1.0]") -> Path:
    from tests.test_pipeline_local import MANIFEST, write_project

    return write_project(root, **{"fit.py": TEXT_MODEL_FIT, "params.toml": f"[fit]\ngains = {gains}\n",
                                  "workbench.toml": MANIFEST.replace('"model.json"', '"model.txt"')})


def test_a_run_recorded_without_its_explanation_is_explained_when_first_asked(tmp_path):
    from workbench.services.pipeline import PipelineService
    from workbench.services.session import WorkbenchSession

    text_model_project(tmp_path)
    session = WorkbenchSession(tmp_path, runner="local")
    # The pipeline alone records the run, as a workbench that stopped before explaining it did.
    record = PipelineService(session.workspace, session.store, session.runner).run(session.project("tiny"))
    assert not session.explainer.store.examined(record.id)
    payload = session.explanations(record.id)["fit"]
    assert payload["shap_rows"] == 10 and [(f["feature"], f["gain"], f["split"], f["mean_abs_shap"])
                                          for f in payload["features"]] == [("age", 5.0, 1, 0.5), ("income", 1.0, 1, 0.1)]
    assert session.explainer.store.examined(record.id) and session.explanation_notes(record.id) == {}


def test_the_diff_screen_shows_which_features_moved(tmp_path, private_config):
    from tests.test_tui import SIZE, asyncio_test, make_app, opened, shown, wait_for
    from workbench.services.session import WorkbenchSession
    from workbench.ui.screens.diff import DiffScreen

    project = text_model_project(tmp_path)
    session = WorkbenchSession(tmp_path, runner="local")
    first = session.run("tiny")
    (project / "params.toml").write_text("[fit]\ngains = [1.0, 5.0]\n")
    second = session.run("tiny")

    @asyncio_test
    async def drive():
        app = make_app(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, runs=2)
            await pilot.press("tab", "d")
            await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen), what="the diff screen")
            diff = app.screen.diff
            assert (diff.base, diff.run) == (first.id, second.id)
            assert [(s.feature, s.rank_before, s.rank_after) for s in diff.importance] == [("income", 2, 1), ("age", 1, 2)]
            await shown(pilot, "feature importance (gain share)", "↑1", "income", "#2 → #1", "16.7% → 83.3%", "↓1")

    drive()


def test_a_declared_output_that_is_a_lightgbm_model_is_explained_without_log_artifact(tmp_path):
    """A stage that only lists model.txt in `outputs` (no wb.log_artifact(..., "model")) still
    has its LightGBM model explained; its other outputs are left alone."""
    from workbench.services.session import WorkbenchSession

    project = text_model_project(tmp_path)
    fit = project / "fit.py"
    fit.write_text(fit.read_text().replace('wb.log_artifact("model.txt", "model")\n', ""))
    session = WorkbenchSession(tmp_path, runner="local")
    record = session.run("tiny")
    assert [a.kind for a in record.stages[1].artifacts] == ["output"]
    assert [f["feature"] for f in session.explanations(record.id)["fit"]["features"]] == ["age", "income"]
    assert "prep" not in session.explanations(record.id) and session.explanation_notes(record.id) == {}

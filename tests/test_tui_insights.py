"""The run detail's Evaluation and Explanations tabs, the keys that get around the TUI (Enter on
a run, 1-9 for the detail's tabs, H for the audit history), the footer showing the focused
view's keys, the Models tab's hash and deploy pointer columns, and the reproducibility verdict
kept in the run's detail. Driven by Pilot on a tiny project (local runner, real DuckDB): the
payloads of a real run are written through the store APIs the pipeline uses."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from textual.widgets import TabbedContent

from tests.test_pipeline_local import write_project
from tests.test_registry import run_with_scale
from tests.test_tui import (  # noqa: F401 (private_config: fixture)
    asyncio_test, make_app, opened, private_config, screen_text, shown, static_text, wait_for,
)
from tests.test_tui_snapshots import THEMES, check_text, colours, history, normalised, render, theme_colour  # noqa: F401
from workbench.adapters.duckdb_evaluation import DuckDBEvaluationStore
from workbench.services.session import WorkbenchSession
from workbench.ui import format as fmt
from workbench.ui.actions import DETAIL_TABS
from workbench.ui.config import load_config
from workbench.ui.screens.history import HistoryScreen
from workbench.ui.widgets.evaluation import CurvePlot, EvaluationView
from workbench.ui.widgets.explanations import ExplanationsView
from workbench.ui.widgets.models import ModelsView

SMALL = (80, 24)


def binary_evaluation() -> dict:
    return {"task": "binary", "rows": 1409, "threshold": 0.5, "label": "churn",
            "confusion": {"labels": ["no", "yes"], "matrix": [[930, 105], [170, 204]]},
            "roc": {"fpr": [0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0], "tpr": [0, 0.3, 0.5, 0.68, 0.8, 0.88, 0.95, 1.0],
                    "auc": 0.8412},
            "pr": {"recall": [0, 0.2, 0.4, 0.6, 0.8, 1.0], "precision": [1.0, 0.8, 0.7, 0.6, 0.45, 0.27],
                   "average_precision": 0.6523},
            "calibration": {"prob_pred": [0.05, 0.15, 0.3, 0.5, 0.7, 0.9],
                            "prob_true": [0.04, 0.17, 0.28, 0.52, 0.66, 0.85],
                            "counts": [400, 300, 250, 200, 150, 109], "ece": 0.0213},
            "log_loss": 0.4123, "regression": None,
            "groups": {"senior_citizen": [
                {"group": "0", "size": 1180, "base_rate": 0.23, "prediction_rate": 0.17, "tpr": 0.5, "fpr": 0.08,
                 "auc": 0.83, "mae": None},
                {"group": "1", "size": 229, "base_rate": 0.42, "prediction_rate": 0.45, "tpr": 0.7, "fpr": 0.25,
                 "auc": 0.79, "mae": None}]},
            "fairness": {"senior_citizen": {"demographic_parity_difference": 0.28,
                                            "equalized_odds_difference": 0.2}}}


def regression_evaluation() -> dict:
    return {"task": "regression", "rows": 500, "threshold": None, "label": "price", "confusion": None, "roc": None,
            "pr": None, "calibration": None, "log_loss": None,
            "regression": {"mae": 12.5, "rmse": 17.25, "r2": 0.81,
                           "residuals": {"edges": [-40, -30, -20, -10, 0, 10, 20, 30, 40],
                                         "counts": [5, 20, 60, 160, 150, 70, 25, 10]}},
            "groups": {"region": [
                {"group": "north", "size": 250, "base_rate": 100.0, "prediction_rate": 98.0, "tpr": None,
                 "fpr": None, "auc": None, "mae": 11.0},
                {"group": "south", "size": 250, "base_rate": 110.0, "prediction_rate": 109.0, "tpr": None,
                 "fpr": None, "auc": None, "mae": 14.0}]},
            "fairness": {"region": {"demographic_parity_difference": 0.05, "equalized_odds_difference": None}}}


def explanation() -> dict:
    return {"model": "model.txt", "model_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "shap_rows": 500,
            "features": [{"feature": "tenure", "gain": 1204.5, "split": 311, "mean_abs_shap": 0.812},
                         {"feature": "contract", "gain": 1500.0, "split": 120, "mean_abs_shap": 0.6},
                         {"feature": "monthly_charges", "gain": 880.1, "split": 402, "mean_abs_shap": 0.421},
                         {"feature": "senior_citizen", "gain": 40.2, "split": 30, "mean_abs_shap": 0.02}]}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    write_project(root)
    return root


def recorded(root: Path, evaluation: dict | None = None, explained: dict | None = None) -> WorkbenchSession:
    """One real run of the tiny project; its evaluation and explanation written through the stores."""
    session = WorkbenchSession(root, runner="local")
    record = session.run("tiny")
    if evaluation is not None:
        DuckDBEvaluationStore(session.store).save(record.id, "fit", evaluation)
    if explained is not None:
        from workbench.adapters.duckdb_explanations import DuckDBExplanationStore

        with session.store.transaction(write=True) as con:  # the pipeline explained it already ("examined")
            for table in ("feature_importance", "explanations", "explained_runs"):
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", [record.id])
        assert DuckDBExplanationStore(session.store).save(record.id, {"fit": explained}, {})
    return session


async def detail_loaded(pilot, runs: int = 1):
    main = await opened(pilot, runs=runs)
    await wait_for(pilot, lambda: main.detail.record is not None and main.detail.insights is not None,
                   what="the run's detail")
    return main


def tab(app) -> str:
    return app.main_screen.detail.query_one(TabbedContent).active


# -- Evaluation -------------------------------------------------------------------------------


@asyncio_test
async def test_the_evaluation_tab_draws_the_runs_recorded_evaluation(root):
    recorded(root, binary_evaluation())
    app = make_app(root)
    async with app.run_test(size=SMALL) as pilot:
        main = await detail_loaded(pilot)
        await pilot.press("5")
        assert tab(app) == "evaluation"
        view = main.detail.query_one(EvaluationView)
        assert app.focused is view  # the footer shows the view's keys; ↑↓ scroll it
        text = await shown(pilot, "AUC 0.8412", "ROC · AUC 0.8412 · TPR by FPR", "PR · AP 0.6523")
        assert "fit · binary · 1,409 rows · label churn · threshold 0.5" in text
        for part in ("#eval-roc", "#eval-pr", "#eval-calibration", "#eval-confusion", "#eval-groups"):
            assert view.query_one(part).display, part
        assert not view.query_one("#eval-residuals").display  # a classifier has no residuals
        confusion = static_text(view.query_one("#eval-confusion"))
        assert "930 (90%)" in confusion and "204 (55%)" in confusion
        groups = static_text(view.query_one("#eval-groups"))
        assert "senior_citizen · demographic parity diff 0.280 · equalized odds diff 0.200" in groups
        assert "229" in groups and "0.790" in groups
        roc = view.query_one("#eval-roc", CurvePlot)
        assert roc._spec["series"][0][:2] == (binary_evaluation()["roc"]["fpr"], binary_evaluation()["roc"]["tpr"])


@asyncio_test
async def test_a_regression_evaluation_shows_its_residuals_not_curves(root):
    recorded(root, regression_evaluation())
    app = make_app(root)
    async with app.run_test(size=(120, 35)) as pilot:
        main = await detail_loaded(pilot)
        await pilot.press("5")
        view = main.detail.query_one(EvaluationView)
        text = await shown(pilot, "MAE 12.5 · RMSE 17.25 · R² 0.81", "residuals: label - prediction")
        groups = static_text(view.query_one("#eval-groups"))  # below the histogram: scrolled to
        assert "region · demographic parity diff 0.050" in groups and "MAE" in groups and "14.000" in groups
        assert view.query_one("#eval-residuals").display
        assert not any(view.query_one(p).display for p in ("#eval-curves", "#eval-more"))


@asyncio_test
async def test_a_run_without_a_predictions_file_says_so(root):
    recorded(root)
    app = make_app(root)
    async with app.run_test(size=SMALL) as pilot:
        await detail_loaded(pilot)
        await pilot.press("5")
        await shown(pilot, "no evaluation recorded")
        await pilot.press("6")
        assert tab(app) == "explanations"
        await shown(pilot, "no explanations recorded")


# -- Explanations -----------------------------------------------------------------------------


@asyncio_test
async def test_the_explanations_tab_draws_importance_bars_and_o_changes_the_order(root):
    recorded(root, explained=explanation())
    app = make_app(root)
    async with app.run_test(size=SMALL) as pilot:
        main = await detail_loaded(pilot)
        await pilot.press("6")
        view = main.detail.query_one(ExplanationsView)
        assert app.focused is view
        text = await shown(pilot, "mean |SHAP| on 500 rows", "o Sort by")  # the key is in the footer
        order = lambda t: [name for name in ("tenure", "contract", "monthly_charges", "senior_citizen")  # noqa: E731
                           if name in t]
        lines = [line for line in text.splitlines() if any(f in line for f in order(line))]
        assert [order(line)[0] for line in lines][:4] == ["tenure", "contract", "monthly_charges", "senior_citizen"]
        assert "████████████" in lines[0]  # the largest mean |SHAP| fills its bar
        await pilot.press("o")  # by gain
        assert view.by == "gain"
        text = static_text(view.query_one("#explain-table"))
        lines = [line for line in text.splitlines() if order(line)]
        assert [order(line)[0] for line in lines][:2] == ["contract", "tenure"]
        assert "sorted by gain" in static_text(view.query_one("#explain-heading"))
        await pilot.press("o")  # by splits
        text = static_text(view.query_one("#explain-table"))
        lines = [line for line in text.splitlines() if order(line)]
        assert [order(line)[0] for line in lines][:1] == ["monthly_charges"]


# -- getting around ---------------------------------------------------------------------------


@asyncio_test
async def test_enter_on_a_run_opens_its_detail_and_escape_comes_back(root):
    session = WorkbenchSession(root, runner="local")
    session.run("tiny")
    run_with_scale(session, root, 1.8)
    app = make_app(root)
    async with app.run_test(size=SMALL) as pilot:
        main = await opened(pilot, runs=2)
        await pilot.press("enter")  # the project: to its runs
        assert app.focused is main.table
        await pilot.press("down", "enter")  # the older run: into its detail
        await wait_for(pilot, lambda: main.detail.run_id == 1, what="run 1's detail")
        assert main.detail.has_focus_within and app.focused.id == "stages-table"
        await pilot.press("4")
        assert tab(app) == "gates" and app.focused.id == "gates-table"
        await pilot.press("escape")
        assert app.focused is main.table


@pytest.mark.slow
@asyncio_test
async def test_each_tab_key_opens_its_tab_and_keys_remap_by_id(root, private_config):
    recorded(root)
    private_config.mkdir(parents=True, exist_ok=True)
    (private_config / "config.toml").write_text('[keys]\ntab_models = "f9"\ntab_lineage = "8,L"\n')
    app = make_app(root)
    app.config = load_config()
    async with app.run_test(size=SMALL) as pilot:
        await detail_loaded(pilot)
        for number, (tab_id, _what) in enumerate(DETAIL_TABS, start=1):
            if tab_id == "models":
                continue
            await pilot.press(str(number))
            assert tab(app) == tab_id, f"key {number}"
            assert app.main_screen.detail.has_focus_within, f"key {number}: focus in the tab"
        await pilot.press("1", "9")  # 9 is no longer the Models tab's key
        assert tab(app) == "stages"
        await pilot.press("f9")
        assert tab(app) == "models"
        await pilot.press("1", "L")
        assert tab(app) == "lineage"


@asyncio_test
async def test_the_footer_shows_the_keys_of_the_focused_view(root, private_config):
    recorded(root)
    app = make_app(root)
    async with app.run_test(size=SMALL) as pilot:
        await detail_loaded(pilot)
        footer = lambda: screen_text(app).splitlines()[-1]  # noqa: E731
        await wait_for(pilot, lambda: footer().startswith("r Run w Watch c Cancel D Drift H History"),
                       what="the projects pane's keys")
        assert footer().rstrip().endswith("q Quit")  # fits 80 columns
        await pilot.press("9")
        await wait_for(pilot, lambda: footer().startswith("s Staging p Prod b Rollback B Rollback stg"),
                       what="the Models tab's keys")
        assert "D Drift" not in footer() and footer().rstrip().endswith("q Quit")
        await pilot.press("escape")  # to the runs
        await wait_for(pilot, lambda: "R Cold d Diff m Mark" in footer(), what="the runs table's keys")
        assert "s Staging" not in footer() and footer().rstrip().endswith("q Quit")


@asyncio_test
async def test_a_remapped_promotion_key_shows_and_works_in_the_models_footer(root, private_config):
    session = recorded(root)
    private_config.mkdir(parents=True, exist_ok=True)
    (private_config / "config.toml").write_text('[keys]\npromote_staging = "S"\n')
    app = make_app(root, session=session)
    app.config = load_config()
    app.set_keymap(app.config.keys)
    async with app.run_test(size=SMALL) as pilot:
        await detail_loaded(pilot)
        models = app.main_screen.query_one(ModelsView)
        await wait_for(pilot, lambda: models.versions, what="the versions")
        await pilot.press("9")
        text = await shown(pilot, "S Staging", "p Prod")
        assert "s Staging" not in text
        await pilot.press("S")
        await shown(pilot, "audit reason")  # the staging confirmation


# -- the audit history ------------------------------------------------------------------------


@asyncio_test
async def test_h_shows_the_audit_history_with_its_verification(root):
    session = WorkbenchSession(root, runner="local")
    run_with_scale(session, root, 1.5)
    run_with_scale(session, root, 1.8)
    registry = session.registry
    assert registry.promote("tiny", 1, "staging", reason="first", user="ana").applied
    assert registry.promote("tiny", 2, "staging", reason="better", user="bo").applied
    assert not registry.promote("tiny", 2, "production", reason="skip", user="bo").applied or True
    rows = len(registry.history("tiny"))
    app = make_app(root, session=session)
    async with app.run_test(size=SMALL) as pilot:
        await opened(pilot)
        await pilot.press("H")
        screen = await wait_for(pilot, lambda: app.screen if isinstance(app.screen, HistoryScreen) else None,
                                what="the history screen")
        text = await shown(pilot, "✓ audit trail intact", "bo", "ana")
        assert screen.table.row_count == rows
        assert "v1 → v2" in text and "better" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, HistoryScreen), what="closed")
    with duckdb.connect(str(root / ".workbench" / "lineage.duckdb")) as con:  # someone edits a reason
        con.execute("UPDATE audit SET reason = 'approved by the board' WHERE id = 1")
    app = make_app(root)
    async with app.run_test(size=SMALL) as pilot:
        await opened(pilot)
        await pilot.press("H")
        text = await shown(pilot, "✗ audit trail altered", "approved by the board")
        row = next(line for line in text.splitlines() if "approved by the board" in line)
        assert "✗1" in row.replace(" ", "")  # the edited row is marked, the others are not
        assert any("✓2" in line.replace(" ", "") for line in text.splitlines())


@asyncio_test
async def test_the_audit_history_shows_whole_cells(root):
    """A user's history read `12-0  roo  promot  produ  — →`: the columns kept their titles'
    widths. Each cell shows whole: the date and time, who, the action, the alias, the move."""
    session = WorkbenchSession(root, runner="local")
    run_with_scale(session, root, 1.5)
    registry = session.registry
    assert registry.promote("tiny", 1, "staging", user="operations").applied
    assert registry.promote("tiny", 1, "production", reason="weekly release", user="operations").applied
    app = make_app(root, session=session)
    async with app.run_test(size=(100, 30)) as pilot:
        await opened(pilot)
        await pilot.press("H")
        text = await shown(pilot, "✓ audit trail intact", "weekly release")
        row = next(line for line in text.splitlines() if "weekly release" in line)
        for whole in ("operations", "promote", "production", "— → v1"):
            assert whole in row, row
        when = fmt.when(registry.history("tiny")[0].at)
        assert when in row, (when, row)


# -- the Models tab ---------------------------------------------------------------------------


@asyncio_test
async def test_the_models_tab_shows_the_model_hash_and_each_aliases_deploy_pointer(root):
    session = WorkbenchSession(root, runner="local")
    v1 = run_with_scale(session, root, 1.5)
    v2 = run_with_scale(session, root, 1.8)
    registry = session.registry
    assert registry.promote("tiny", 1, "staging").applied and registry.promote("tiny", 1, "production").applied
    assert registry.promote("tiny", 2, "staging").applied
    folders = {alias: Path(registry.deployed("tiny", alias)["path"]).name for alias in ("production", "staging")}
    assert folders["production"].startswith("1-") and folders["staging"].startswith("2-")
    app = make_app(root, session=session)
    async with app.run_test(size=SMALL) as pilot:
        await opened(pilot)
        await pilot.press("9")
        text = await shown(pilot, v1.sha256[:12], v2.sha256[:12], timeout=30)
        heading = static_text(app.main_screen.query_one("#models-heading"), width=200)
        assert f"production → {folders['production']} (v1)" in heading
        assert f"staging → {folders['staging']} (v2)" in heading
        assert "model" in text.splitlines()[[i for i, l in enumerate(text.splitlines()) if "version" in l][0]]


@asyncio_test
async def test_the_models_table_is_sized_to_its_cells_when_filled_not_on_its_next_idle(root):
    """The CI-only timeout above: under load, the table was refilled while the screen drew, and
    its auto-width columns kept cells cut at the header's width (`eb5f1`, `▲ stag`)."""
    from workbench.ui.widgets.models import ModelsView

    session = WorkbenchSession(root, runner="local")
    run_with_scale(session, root, 1.5)
    v2 = run_with_scale(session, root, 1.8)
    assert session.registry.promote("tiny", 1, "staging").applied
    app = make_app(root, session=session)
    async with app.run_test(size=SMALL) as pilot:
        await opened(pilot)
        view = app.main_screen.query_one(ModelsView)
        view.show("tiny", session.registry.models("tiny"), "score")  # no pause: before any idle
        widths = {str(c.label): (c.width, c.auto_width) for c in view.table.columns.values()}
        assert widths["model"] == (len(v2.sha256[:12]), False), widths
        assert widths["status"] == (len("· registered"), False) and widths["created"][0] >= len("12-01 16:13"), widths


# -- the reproducibility verdict --------------------------------------------------------------


@asyncio_test
async def test_the_reproducibility_verdict_stays_in_the_runs_detail(root):
    recorded(root)
    app = make_app(root)
    async with app.run_test(size=(120, 36)) as pilot:
        main = await detail_loaded(pilot)
        await pilot.press("tab")  # to the runs table
        await pilot.press("R")
        await wait_for(pilot, lambda: any(title == "reproduced" for _s, _m, title in app.notes), timeout=30,
                       what="the cold rerun")
        await wait_for(pilot, lambda: main.table.total == 2, what="the rerun listed")
        await pilot.press("end")  # back to run 1 (the rerun is the newest)
        await wait_for(pilot, lambda: main.detail.run_id == 1 and main.detail.insights.reproduction is not None,
                       what="run 1's detail read again")
        await shown(pilot, "✓ reproduced by cold run 2: 2 metrics equal, model files byte-identical")
    app = make_app(root)  # another process, no toast: the store has it
    async with app.run_test(size=(120, 36)) as pilot:
        main = await opened(pilot, runs=2)
        await pilot.press("tab", "end")
        await wait_for(pilot, lambda: main.detail.run_id == 1, what="run 1")
        await shown(pilot, "✓ reproduced by cold run 2")


# -- snapshots at 80x24, every theme ----------------------------------------------------------


@pytest.mark.parametrize("theme", THEMES)
@asyncio_test
async def test_the_new_tabs_at_80x24_in_every_theme(theme, history):
    """The Evaluation and Explanations tabs of a recorded run (fixed values) at 80x24: the text
    equals its baseline (nothing cut off or overlapping) and the curves and bars are drawn in
    the theme's colours."""
    from workbench.adapters.duckdb_explanations import DuckDBExplanationStore

    session = WorkbenchSession(history, runner="local")
    DuckDBEvaluationStore(session.store).save(40, "evaluate", binary_evaluation())
    DuckDBExplanationStore(session.store).save(40, {"train": explanation()}, {})
    app = make_app(history, session=session)
    app.theme = theme
    async with app.run_test(size=SMALL) as pilot:
        main = await opened(pilot, runs=40)
        await wait_for(pilot, lambda: main.detail.run_id == 40 and main.detail.insights is not None
                       and main.runner_name == "local", what="run 40's detail")
        await pilot.press("5")
        await shown(pilot, "ROC · AUC 0.8412")
        await pilot.pause(0.2)
        text, segments = render(app)
        check_text("evaluation-80x24", normalised(text, history))
        primary = theme_colour(app, "primary")
        assert any(fg == primary for fg, _bg in colours(segments, "⠁") | colours(segments, "⣀")
                   | colours(segments, "⠒")), "the ROC curve is not in the theme's primary colour"
        await pilot.press("6")
        await shown(pilot, "mean |SHAP| on 500 rows")
        await pilot.pause(0.2)
        text, segments = render(app)
        check_text("explanations-80x24", normalised(text, history))
        assert theme_colour(app, "accent") in {fg for fg, _bg in colours(segments, "████")}, \
            "the mean |SHAP| bars are not in the theme's accent colour"


@asyncio_test
async def test_the_verdict_appears_in_the_open_detail_when_the_cold_rerun_ends(root):
    """The cursor stays on the older run it was on: its detail is read again when its cold rerun
    is recorded, so the verdict shows there without a key."""
    session = WorkbenchSession(root, runner="local")
    session.run("tiny")
    run_with_scale(session, root, 1.8)
    app = make_app(root)
    async with app.run_test(size=(120, 36)) as pilot:
        main = await opened(pilot, runs=2)
        await pilot.press("tab", "down")
        await wait_for(pilot, lambda: main.detail.run_id == 1 and main.detail.insights is not None, what="run 1")
        await pilot.press("R")
        await wait_for(pilot, lambda: any(title == "reproduced" for _s, _m, title in app.notes), timeout=30,
                       what="the cold rerun")
        assert main.table.current.id == 1
        await shown(pilot, "✓ reproduced by cold run 3")

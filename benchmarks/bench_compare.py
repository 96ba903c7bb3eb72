"""How fast runs are compared once a project has a long history: 10,000 runs of one project,
each with 30 params and 30 metrics (24 of the params differ between runs, 6 do not).

  * `workbench compare --limit 10000 --json` as a whole process (interpreter start to exit);
  * the same with `--where` (filtered in SQL) and as the human table;
  * the in-process service call (WorkbenchSession.compare), which both front ends make;
  * the TUI's compare view: from the key (C) until the table is drawn, and a sort (s) on a
    metric column until it is drawn again (headless App.run_test, 160x48).

    python benchmarks/bench_compare.py [--runs 10000] [--repeats 5]

The history is written straight into the store's tables in bulk (as bench_tui.py does): the
skeleton of each run from bench_lineage.generate_history, then 30 params and 30 metrics per run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PARAMS, METRICS, CONSTANT_PARAMS = 30, 30, 6


def prepare(ws: Path, runs: int) -> None:
    import duckdb

    from bench_lineage import history_workspace

    started = time.perf_counter()
    db = history_workspace(ws, runs)
    with duckdb.connect(str(db)) as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM params")
        con.execute("DELETE FROM metrics")
        # p00..p05 are the same in every run (hidden by default); the rest differ. A few params
        # are recorded by two stages, the later one's value winning, as real pipelines do.
        con.execute(f"""
            INSERT INTO params
            SELECT r.id, CASE WHEN p.i % 3 = 0 THEN 'validate' ELSE 'train' END, printf('p%02d', p.i),
                   CASE WHEN p.i < {CONSTANT_PARAMS} THEN '0.5'
                        WHEN p.i % 5 = 0 THEN (['gbdt', 'dart', 'goss'])[(hash(r.id, p.i) % 3)::BIGINT + 1]
                        ELSE ((hash(r.id, p.i) % 1000) / 1000.0)::VARCHAR END
            FROM runs r CROSS JOIN range({PARAMS}) p(i)""")
        con.execute(f"""
            INSERT INTO metrics
            SELECT r.id, CASE WHEN m.i < 10 THEN 'train' ELSE 'evaluate' END,
                   CASE WHEN m.i = 0 THEN 'auc' ELSE printf('m%02d', m.i) END,
                   CASE WHEN m.i = 0 THEN r.primary_value ELSE (hash(r.id, m.i, 'm') % 10000) / 10000.0 END
            FROM runs r CROSS JOIN range({METRICS}) m(i)""")
        con.execute("COMMIT")
    print(f"generated {runs:,} runs x {PARAMS} params x {METRICS} metrics in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)


def median_s(action, repeats: int) -> tuple[float, float]:
    """(median, worst) seconds."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), max(timings)


def cli(ws: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "workbench", "-w", str(ws), "compare", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ | {"COLUMNS": "400"})
    if done.returncode != 0:
        raise SystemExit(done.stderr.decode())
    if not done.stdout:
        raise SystemExit("compare printed nothing")


def repaint(app) -> None:
    app.screen._compositor.render_update(full=True)


async def tui(ws: Path, runs: int, repeats: int) -> dict[str, tuple[float, float]]:
    from textual import events

    from workbench.ui.app import WorkbenchApp
    from workbench.ui.config import UiConfig
    from workbench.ui.screens.compare import CompareScreen

    app = WorkbenchApp(ws, "local", config=UiConfig(ws / "bench-config.toml"), watch_on_start=False)
    opens, sorts = [], []
    async with app.run_test(size=(160, 48)) as pilot:
        main = app.main_screen
        while not (main.table.loaded and main.table.row(0) is not None):
            await asyncio.sleep(0.01)
        await pilot.pause(1.5)  # let the start-up work (services, trend) settle first
        for _ in range(repeats):
            main.table.focus()
            await pilot.pause(0.1)
            started = time.perf_counter()
            app._driver.send_message(events.Key("C", "C"))
            while not (isinstance(app.screen, CompareScreen) and app.screen.table is not None):
                await asyncio.sleep(0.001)
            repaint(app)
            opens.append(time.perf_counter() - started)
            screen = app.screen
            assert len(screen.table.rows) == runs, len(screen.table.rows)
            grid = screen.grid
            grid.cursor_column = next(i for i, c in enumerate(grid.columns) if c.column.label == "auc")
            await pilot.pause(0.05)
            before = screen.table
            started = time.perf_counter()
            app._driver.send_message(events.Key("s", "s"))
            while screen.table is before:
                await asyncio.sleep(0.001)
            repaint(app)
            sorts.append(time.perf_counter() - started)
            await pilot.press("escape")
            await pilot.pause(0.1)
    return {"open": (statistics.median(opens), max(opens)), "sort": (statistics.median(sorts), max(sorts))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        prepare(ws, args.runs)
        os.environ.update(XDG_CONFIG_HOME=str(Path(tmp) / "config"), HOME=str(Path(tmp) / "home"))
        limit = str(args.runs)
        figures = {
            "workbench compare --json (process)": median_s(lambda: cli(ws, "--limit", limit, "--json"), args.repeats),
            "workbench compare --where 'auc > 0.8' --sort -auc --json (process)": median_s(
                lambda: cli(ws, "--limit", limit, "--where", "auc > 0.8", "--sort=-auc", "--json"), args.repeats),
            "workbench compare, the table (process)": median_s(lambda: cli(ws, "--limit", limit), args.repeats),
            "workbench --version (interpreter start-up, for scale)": median_s(
                lambda: subprocess.run([sys.executable, "-m", "workbench", "--version"], capture_output=True),
                args.repeats),
        }
        from workbench.services.compare import CompareRequest
        from workbench.services.session import WorkbenchSession

        session = WorkbenchSession(ws, runner="local")
        request = CompareRequest(project="telco-churn", limit=args.runs)
        table = session.compare(request)
        assert len(table.rows) == args.runs and len(table.params) == PARAMS - CONSTANT_PARAMS, table.params
        assert len(table.metrics) == METRICS and len(table.hidden) == CONSTANT_PARAMS
        figures["service call in process (session.compare)"] = median_s(lambda: session.compare(request), args.repeats)
        ui = asyncio.run(tui(ws, args.runs, args.repeats))
        figures["TUI: C until the compare view is drawn"] = ui["open"]
        figures["TUI: s on a metric column until drawn again"] = ui["sort"]
    print(f"\ncompare over {args.runs:,} runs of one project, {PARAMS} params ({PARAMS - CONSTANT_PARAMS} differ), "
          f"{METRICS} metrics; median of {args.repeats} (worst):")
    for name, (median, worst) in figures.items():
        print(f"  {name:<70} {median * 1000:7.0f} ms  ({worst * 1000:.0f})")


if __name__ == "__main__":
    main()

"""How numbers read, the same in the CLI and the TUI (issue 11 item 9: metrics printed as
`1e+04`; the CLI's progress lines skipped a step: 50, 100, 150, 250, 300)."""

from __future__ import annotations

import io
import math
from datetime import datetime, timezone

import pytest
from rich.console import Console

from workbench.cli.render import Printer
from workbench.core.events import StageProgress
from workbench.core.formatting import metric, signed
from workbench.core.gates import evaluate_gates, parse_gate
from workbench.core.model import RunRecord, RunStatus, StageResult, StageStatus, Trigger


@pytest.mark.parametrize("value, shown", [
    (10432, "10,432"),
    (10432.7, "10,433"),
    (1_234_567.0, "1,234,567"),
    (999.95, "1,000"),
    (1234.5, "1,234"),
    (0.75, "0.75"),
    (0.8123456, "0.8123"),
    (12.3456, "12.35"),
    (3, "3"),
    (100.0, "100"),
    (0.0001234, "0.0001234"),
    (0.00001234, "0.00001234"),
    (-0.008169, "-0.008169"),
    (0.0, "0"),
    (None, "—"),
    (math.nan, "—"),
    (math.inf, "∞"),
])
def test_metrics_read_in_plain_digits(value, shown):
    assert metric(value) == shown
    assert "e+" not in metric(value) and "e-" not in metric(value)


@pytest.mark.parametrize("value, shown", [(0.008169, "+0.008169"), (-0.15, "-0.15"), (0.0, "±0"),
                                          (10432, "+10,432"), (None, "—")])
def test_differences_carry_their_sign(value, shown):
    assert signed(value) == shown


def test_a_gate_on_a_large_metric_reads_in_plain_digits():
    [result] = evaluate_gates([parse_gate("rmse", "<= 9000")], {"rmse": 10432.0}, True)
    assert result.detail == "10,432 is not <= 9000"


def printer() -> tuple[Printer, io.StringIO]:
    out = io.StringIO()
    p = Printer()
    p.out = Console(file=out, width=120, highlight=False, soft_wrap=True)
    return p, out


def test_the_cli_prints_large_metrics_in_plain_digits():
    p, out = printer()
    now = datetime.now(timezone.utc)
    stage = StageResult("train", StageStatus.SUCCEEDED, "python train.py", "k", "", metrics={"rmse": 10432.0,
                                                                                             "rows": 7043.0})
    p.run_summary(RunRecord(1, "p", Trigger.MANUAL, RunStatus.SUCCEEDED, "local", now, now, stages=[stage]))
    text = out.getvalue()
    assert "10,432" in text and "7,043" in text and "e+" not in text


@pytest.mark.parametrize("reports, shown", [
    (range(50, 301, 50), [50, 100, 150, 200, 250, 300]),          # LightGBM every 50 of 300 rounds: all
    (range(1, 1001), [1, 101, 201, 301, 401, 501, 601, 701, 801, 901, 1000]),  # every round: a tenth apart
    (list(range(1, 5)) + list(range(1, 5)), [1, 2, 3, 4, 1, 2, 3, 4]),  # two passes of 4 steps each
])
def test_progress_lines_skip_no_step_a_stage_reports(reports, shown):
    p, out = printer()
    total = max(reports)
    for done in reports:
        p.event(StageProgress(1, "train", done, total, "rounds"))
    printed = [int(line.split("│")[1].split("/")[0]) for line in out.getvalue().splitlines()]
    assert printed == shown

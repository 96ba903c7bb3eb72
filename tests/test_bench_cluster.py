"""The pieces of benchmarks/bench_cluster.py that need no cluster (the benchmark itself starts a
Dask scheduler and workers and is run by hand, see its docstring): its arguments, the project it
times and the figures it computes from its measurements."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_cluster import (CHAIN, SLEEPY_MANIFEST, chain_manifest, parser, per_stage_ms,  # noqa: E402
                           steady_rate, write_sleepy)

from workbench.core.manifest import parse_manifest  # noqa: E402


def test_the_sections_default_to_all_and_an_unknown_one_is_refused():
    args = parser().parse_args([])
    assert args.section == ["overhead", "bytes", "sweep"] and args.repeats == 7 and args.trials == 9
    assert args.sweep_projects == ["telco-churn", "sleepy"]
    assert parser().parse_args(["--section", "bytes", "--trials", "4"]).section == ["bytes"]
    with pytest.raises(SystemExit):
        parser().parse_args(["--section", "latency"])


def test_the_timed_project_is_a_chain_every_stage_of_which_a_params_edit_reruns():
    stages = parse_manifest(chain_manifest()).stages
    assert list(stages) == [f"s{n}" for n in range(1, CHAIN + 1)]
    assert [stages[f"s{n}"].depends_on for n in range(1, CHAIN + 1)] == [()] + [(f"s{n}",) for n in range(1, CHAIN)]
    assert all([ref.key for ref in stage.params] == ["common"] for stage in stages.values())


def test_the_sleepy_project_has_the_swept_params_and_its_stage_reads_them(tmp_path):
    import tomllib

    write_sleepy(tmp_path, 0.5)
    stage = parse_manifest(SLEEPY_MANIFEST).stages["train"]
    assert [ref.key for ref in stage.params] == ["train"]
    params = tomllib.loads((tmp_path / "sleepy" / "params.toml").read_text())["train"]
    assert set(params) == {"learning_rate", "num_leaves"}
    assert "time.sleep(0.5)" in (tmp_path / "sleepy" / "train.py").read_text()


def test_per_stage_is_the_median_run_over_its_stages_and_the_steady_rate_skips_the_first_trial():
    assert per_stage_ms([1.0, 0.5, 9.0], stages=5) == 200.0
    # Starts at 0, 10, 12, 14 and the end at 16: trials 2..N took 2 s each, the first 10 s.
    assert steady_rate([0.0, 10.0, 12.0, 14.0, 16.0]) == 30.0

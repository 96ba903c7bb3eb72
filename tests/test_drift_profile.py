"""Fast drift (issue 13 item 1): the comparison through a reference profile and DuckDB column
statistics agrees with the comparison of full columns it replaced (tests/drift_oracle.py,
that code verbatim): exactly, except a large reference's Wasserstein distance, which is within
the bound the profile states (workbench.core.drift_profile), itself checked against scipy.
And the profile is stored once per reference content, used instead of the reference, rebuilt
when the content changes or the file is damaged."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pytest
from scipy import stats

from tests.drift_oracle import compare as oracle_compare
from tests.test_drift import ws  # noqa: F401 (a fixture: the shop project)
from workbench.adapters.batch_files import read_table
from workbench.adapters.profile_store import ProfileStore, profile_key
from workbench.adapters.table_stats import TableStats
from workbench.core.drift import ColumnData, column_from_values, compare
from workbench.core.drift_profile import (
    ATOMS, EXACT_ROWS, atom_ranks, compression_error, exact_rows_for, numeric_profile,
)
from workbench.core.drift_stats import wasserstein_sorted
from workbench.core.manifest import DriftSpec
from workbench.services.drift_columns import build_profile, check_table

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "projects" / "telco-churn"
SPEC = DriftSpec()


# -- the Wasserstein bound ----------------------------------------------------------------------

def samples(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(50, 10, n)
    if kind == "lognormal":  # a heavy right tail: the widest top block
        return rng.lognormal(0, 2, n)
    if kind == "discrete":
        return rng.integers(0, 40, n).astype(float) * 2.5
    values = rng.normal(0, 1, n)  # with missing values, dropped as a column's are
    values[rng.random(n) < 0.1] = np.nan
    return values[~np.isnan(values)]


@pytest.mark.parametrize("kind", ["normal", "lognormal", "discrete", "nans"])
@pytest.mark.parametrize("n", [12_345, 200_000])
def test_atoms_move_a_wasserstein_distance_by_at_most_the_stated_bound(kind, n):
    reference = samples(kind, n, seed=1)
    ordered = np.sort(reference)
    atoms = ordered[atom_ranks(len(ordered), ATOMS)]
    error = compression_error(ordered, atoms)
    # The stored error is W1(reference, atoms), exactly as scipy computes it ...
    assert error == pytest.approx(stats.wasserstein_distance(ordered, atoms), rel=1e-9, abs=1e-12)
    # ... and within the documented bound (max - min) / ATOMS.
    assert error <= (ordered[-1] - ordered[0]) / ATOMS + 1e-12
    profile = numeric_profile("x", "DOUBLE", reference, 10, EXACT_ROWS)
    assert profile.wasserstein_error == error and not profile.values.size
    for shift, seed in ((0.0, 2), (0.3, 3), (2.0, 4)):
        batch = samples(kind, 5_000, seed) * (1 + shift) + shift
        exact = stats.wasserstein_distance(reference, batch)
        approximate = wasserstein_sorted(atoms, np.sort(batch))
        assert abs(approximate - exact) <= error + 1e-9 * max(1.0, exact)


@pytest.mark.parametrize("seed", range(4))
def test_wasserstein_of_sorted_samples_is_scipy_s(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 30, rng.integers(1, 3000)).astype(float)  # ties within and across
    b = rng.integers(5, 40, rng.integers(1, 3000)).astype(float)
    assert wasserstein_sorted(np.sort(a), np.sort(b)) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-12)


# -- agreement with the full comparison ------------------------------------------------------------

def assert_agree(new, old, approximate: bool = False) -> None:
    """Two reports are the same, field by field. A Wasserstein statistic (and the bar it makes)
    may differ by rounding (a sum in another order than scipy's); with `approximate` (a reference
    kept as atoms) by its bound, which the caller checks, and so may its detail and verdict."""
    assert [c.column for c in new.columns] == [c.column for c in old.columns]
    assert new.findings == old.findings
    for a, b in zip(new.columns, old.columns):
        if a.test != "wasserstein":
            assert a == b, (a, b)
            continue
        assert replace(a, statistic=0.0, score=0.0, detail="", drifted=False) == \
            replace(b, statistic=0.0, score=0.0, detail="", drifted=False), a.column
        if not approximate:
            assert a.statistic == pytest.approx(b.statistic, rel=1e-9, abs=1e-15)
            assert a.score == pytest.approx(b.score, rel=1e-9, abs=1e-15)
            assert (a.detail, a.drifted) == (b.detail, b.drifted)
    if not approximate:
        assert (new.verdict, new.rule, new.share, new.drifted, new.has_labels, new.rows, new.reference_rows) == \
            (old.verdict, old.rule, old.share, old.drifted, old.has_labels, old.rows, old.reference_rows)


def mixed(rows: int, seed: int, shift: float = 0.0, nulls: bool = True) -> dict[str, ColumnData]:
    rng = np.random.default_rng(seed)
    amount = rng.normal(50 + 10 * shift, 10, rows).round(2).tolist()
    heavy = rng.lognormal(1 + shift, 1.5, rows).round(4).tolist()
    counts = rng.integers(0, 400, rows).tolist()  # integers, but too many for categories
    if nulls:
        for values in (amount, heavy):
            for i in rng.choice(rows, rows // 20, replace=False):
                values[i] = None
    mix = (0.5, 0.3, 0.2) if shift == 0 else (0.3, 0.3, 0.4)
    return {
        "amount": column_from_values("amount", amount),
        "heavy": column_from_values("heavy", heavy),
        "counts": column_from_values("counts", counts),
        "flag": column_from_values("flag", rng.integers(0, 3, rows).tolist()),
        "plan": column_from_values("plan", rng.choice(["basic", "plus", "pro"], rows, p=mix).tolist()),
        "city": column_from_values("city", rng.choice([f"c{i}" for i in range(30)], rows).tolist()),
        "label": column_from_values("label", rng.choice(["no", "yes"], rows, p=(0.7, 0.3)).tolist()),
    }


@pytest.mark.parametrize("ref_rows", [700, 5_000])
@pytest.mark.parametrize("shift", [0.0, 0.2, 1.0])
def test_small_and_exactly_kept_references_agree_exactly(ref_rows, shift):
    reference = mixed(ref_rows, seed=1)
    for batch_rows, seed in ((300, 2), (2_000, 3)):
        batch = mixed(batch_rows, seed, shift)
        new = compare(reference, batch, batch_rows, SPEC, target="label")
        assert_agree(new, oracle_compare(reference, batch, batch_rows, SPEC, target="label"))


@pytest.mark.parametrize("shift", [0.0, 0.12, 1.0])
def test_a_large_reference_agrees_but_for_wasserstein_which_is_within_its_bound(shift):
    reference = mixed(30_000, seed=1)
    batch = mixed(3_000, seed=4, shift=shift)
    new = compare(reference, batch, 3_000, SPEC, target="label")
    old = oracle_compare(reference, batch, 3_000, SPEC, target="label")
    assert_agree(new, old, approximate=True)
    for a, b in zip(new.columns, old.columns):
        if a.test == "wasserstein":
            values = reference[a.column].numbers[~np.isnan(reference[a.column].numbers)]
            bound = (values.max() - values.min()) / (ATOMS * np.std(values))
            assert abs(a.statistic - b.statistic) <= bound, a.column
            assert a.drifted == b.drifted or abs(b.statistic - b.threshold) <= bound


def test_the_verdict_cases_of_the_core_tests_agree_exactly():
    from tests.test_drift_core import numbers_table, resample, wide_table

    reference = numbers_table(5000, 13, seed=1)
    batch = numbers_table(1000, 13, seed=2, shifts={0: 1.0, 1: 0.4, 2: 0.4})
    assert_agree(compare(reference, batch, 1000, SPEC), oracle_compare(reference, batch, 1000, SPEC))
    reference = wide_table(5000, seed=1)
    batch = resample(reference, 200, 2)
    assert_agree(compare(reference, batch, 200, SPEC), oracle_compare(reference, batch, 200, SPEC))


def bad_batch(rows: int) -> dict[str, ColumnData]:
    """Every finding at once: a retyped, an all-null, a missing and a new column, new categories."""
    batch = mixed(rows, seed=9, shift=0.3)
    amount = [str(v) for v in batch["amount"].text]
    amount[:4] = ["n/a", "lots", "n/a", "inf"]
    batch["amount"] = column_from_values("amount", amount)
    batch["city"] = column_from_values("city", [None] * rows)
    plans = list(batch["plan"].text)
    plans[:3] = ["gold", "gold", "trial"]
    batch["plan"] = column_from_values("plan", plans)
    batch.pop("counts")
    batch["extra"] = column_from_values("extra", [1] * rows)
    return batch


@pytest.mark.parametrize("ref_rows", [800, 20_000])
def test_bad_batches_make_the_same_findings(ref_rows):
    reference = mixed(ref_rows, seed=1) | {"id": column_from_values("id", [f"u{i}" for i in range(ref_rows)])}
    batch = bad_batch(400) | {"id": column_from_values("id", [f"n{i}" for i in range(400)])}
    new = compare(reference, batch, 400, SPEC, target="label")
    old = oracle_compare(reference, batch, 400, SPEC, target="label")
    assert_agree(new, old, approximate=ref_rows > EXACT_ROWS)
    assert {f.kind for f in new.findings} >= {"type_change", "all_null", "missing_column", "new_column",
                                              "new_category", "not_compared"}
    empty = compare(reference, {}, 0, SPEC)
    assert empty == oracle_compare(reference, {}, 0, SPEC)


# -- the same through files: DuckDB statistics ------------------------------------------------------

def write_table(columns: dict[str, ColumnData], path: Path) -> Path:
    """The columns as a CSV (text as it is) or a Parquet file (numbers typed where they all are)."""
    con = duckdb.connect()
    names = list(columns)
    if path.suffix == ".csv":
        import csv

        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(names)
            for row in zip(*(columns[n].text for n in names)):
                writer.writerow(["" if v is None else v for v in row])
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name in names:
        col = columns[name]
        present = col.text != None  # noqa: E711
        if np.all(~np.isnan(col.numbers[present])):
            arrays[name] = pa.array(col.numbers, mask=~present)
        else:
            arrays[name] = pa.array(col.text.tolist(), type=pa.string())
    pq.write_table(pa.table(arrays), path)
    con.close()
    return path


def through_files(reference: Path, batch: Path, spec: DriftSpec, target: str | None):
    with TableStats(reference) as table:
        profile = build_profile(table, spec.psi_bins, exact_rows_for(spec.small_reference_rows))
    with TableStats(batch) as table:
        return check_table(table, profile, spec, target=target, batch_name="batch", reference_name="reference")


def read_back(reference: Path, batch: Path, spec: DriftSpec, target: str | None):
    ref, cur = read_table(reference), read_table(batch)
    return oracle_compare(ref.columns, cur.columns, cur.rows, spec, target=target, batch_name="batch",
                          reference_name="reference", reference_rows=ref.rows)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("ref_rows", [800, 6_000, 20_000])
def test_duckdb_statistics_agree_with_reading_the_whole_table(tmp_path, suffix, ref_rows):
    reference = write_table(mixed(ref_rows, seed=1) | {"id": column_from_values("id", [f"u{i}" for i in
                                                                                        range(ref_rows)])},
                            tmp_path / f"ref{suffix}")
    for name, columns in (("clean", mixed(500, seed=2)), ("shifted", mixed(500, seed=3, shift=1.0)),
                          ("bad", bad_batch(500))):
        batch = write_table(columns, tmp_path / f"{name}{suffix}")
        new = through_files(reference, batch, SPEC, "label")
        assert_agree(new, read_back(reference, batch, SPEC, "label"), approximate=ref_rows > EXACT_ROWS)


def example_batch(tmp_path: Path, kind: str, rows: int, seed: int) -> Path:
    out = tmp_path / f"{kind}-{rows}-{seed}.csv"
    subprocess.run([sys.executable, str(EXAMPLE / "tools" / "make_batch.py"), "--kind", kind, "--rows", str(rows),
                    "--seed", str(seed), "--labels", "--out", str(out)], check=True, capture_output=True)
    return out


def test_the_example_s_batches_agree_exactly(tmp_path):
    from workbench.services.workspace import load_manifest

    manifest, _ = load_manifest(EXAMPLE)
    reference = EXAMPLE / "data" / "churn.csv"
    for kind, rows, seed in (("clean", 1000, 1), ("drifted", 1000, 1), ("drifted", 200, 5)):
        batch = example_batch(tmp_path, kind, rows, seed)
        new = through_files(reference, batch, manifest.drift, "churn")
        assert_agree(new, read_back(reference, batch, manifest.drift, "churn"))
        assert new.verdict == ("no drift" if kind == "clean" else "drifted"), new.summary


# -- the profile store ---------------------------------------------------------------------------

def test_a_profile_survives_the_store_and_compares_the_same(tmp_path):
    reference = mixed(20_000, seed=1)
    with TableStats(write_table(reference, tmp_path / "ref.parquet")) as table:
        profile = build_profile(table, 10, exact_rows_for(1000))
    store = ProfileStore(tmp_path / "state")
    key = profile_key(10, exact_rows_for(1000))
    path = store.save("ab" * 32, key, profile)
    assert path.name == f"{'ab' * 32}-{key}.npz" and (path.stat().st_mode & 0o777) == 0o644
    loaded = store.load("ab" * 32, key)
    assert loaded is not None and list(loaded.columns) == list(profile.columns)
    batch = write_table(mixed(500, seed=3, shift=0.5), tmp_path / "b.parquet")
    with TableStats(batch) as table:
        a = check_table(table, profile, SPEC, target="label", batch_name="b", reference_name="r")
    with TableStats(batch) as table:
        b = check_table(table, loaded, SPEC, target="label", batch_name="b", reference_name="r")
    assert a == b
    assert store.load("cd" * 32, key) is None and store.load("ab" * 32, profile_key(20, 1000)) is None


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other version", "empty"])
def test_a_damaged_profile_loads_as_none(tmp_path, damage):
    with TableStats(write_table(mixed(3_000, seed=1), tmp_path / "ref.csv")) as table:
        profile = build_profile(table, 10, EXACT_ROWS)
    store = ProfileStore(tmp_path)
    key = profile_key(10, EXACT_ROWS)
    path = store.save("ef" * 32, key, profile)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with np.load(path) as saved:
            arrays = dict(saved)
        arrays["meta"] = np.array(str(arrays["meta"]).replace('"format": 1', '"format": 0'))
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    assert store.load("ef" * 32, key) is None


def test_constant_and_tiny_columns_agree_too():
    for values in ([5.5] * 20_000, [0.0] * 3 + [0.5] * 19_997, [1.5, 2.5], list(np.linspace(0, 1, 11))):
        profile = numeric_profile("x", "DOUBLE", np.array(values), 10, EXACT_ROWS)
        assert profile.present == len(values) and math.isfinite(profile.scale) and profile.scale > 0
        reference = {"x": column_from_values("x", values)}
        batch = {"x": column_from_values("x", [5.5, 0.5, 2.0, 1.0] * 50)}
        new, old = compare(reference, batch, 200, SPEC), oracle_compare(reference, batch, 200, SPEC)
        assert_agree(new, old, approximate=len(values) > EXACT_ROWS)
        assert new.columns[0].statistic == pytest.approx(old.columns[0].statistic, abs=profile.wasserstein_error
                                                         / profile.scale + 1e-12)


# -- the service: stored once per reference content ----------------------------------------------

def shop(ws: Path):
    from workbench.services.drift import DriftService
    from workbench.services.session import WorkbenchSession

    return DriftService(WorkbenchSession(ws, runner="local"))


def profiles(ws: Path) -> list[Path]:
    return sorted((ws / ".workbench" / "drift" / "profiles").glob("*.npz"))


def same_rows(ws: Path, name: str, seed: int) -> Path:
    """A batch with the same values as sales(300, seed) in another column order: new content
    (a batch is checked once per content), the same comparison."""
    from tests.test_drift import batch, sales

    orders = {"a.csv": ["bought", "plan", "amount"], "b.csv": ["plan", "amount", "bought"],
              "c.csv": ["amount", "bought", "plan"]}
    return batch(ws, name, sales(300, seed=seed), columns=orders[name])


def columns_of(outcome) -> list:
    assert outcome.fresh  # checked now, not read back from an earlier check
    return list(outcome.report.columns)


def test_a_second_check_uses_the_stored_profile_and_never_reads_the_reference(ws):
    from tests.test_drift import in_production
    from workbench.services.session import WorkbenchSession

    in_production(WorkbenchSession(ws, runner="local"))
    service = shop(ws)
    progress = []
    first = service.check_batch("shop", same_rows(ws, "a.csv", 3), on_progress=lambda *a: progress.append(a))
    reference = service.reference("shop")
    assert service.profiles_built == 1
    assert [p.name for p in profiles(ws)] == [f"{reference.sha256}-{profile_key(10, exact_rows_for(1000))}.npz"]
    assert (profiles(ws)[0].stat().st_mode & 0o777) == 0o644
    assert progress[0] == (0, 3, "profiling reference") and progress[3] == (3, 3, "profiling reference")
    assert progress[-1] == (3, 3, "checking batch")

    # The reference object, damaged: a check that read it would fail or say something else.
    os.chmod(reference.file, 0o644)
    reference.file.write_text("amount,plan,bought\nnot,what,it was\n")
    again = shop(ws)  # another process: the profile comes from disk
    second = again.check_batch("shop", same_rows(ws, "b.csv", 3))
    assert again.profiles_built == 0 and columns_of(second) == columns_of(first)
    assert second.report.reference_rows == first.report.reference_rows == 1500

    profiles(ws)[0].unlink()  # the same service: from memory, the file is not looked for
    third = service.check_batch("shop", same_rows(ws, "c.csv", 3))
    assert service.profiles_built == 1 and profiles(ws) == [] and columns_of(third) == columns_of(first)


def test_a_changed_reference_gets_a_new_profile(ws):
    from tests.test_drift import sales, write_csv

    service = shop(ws)  # no run: the reference is data/sales.csv as it is now
    first = service.check_batch("shop", same_rows(ws, "a.csv", 3))
    old_sha = service.reference("shop").sha256
    write_csv(ws / "shop" / "data" / "sales.csv", sales(1500, seed=1) + sales(500, seed=2, shift=5))
    second = service.check_batch("shop", same_rows(ws, "b.csv", 3))
    new_sha = service.reference("shop").sha256
    assert service.profiles_built == 2 and new_sha != old_sha
    assert sorted(p.name.split("-")[0] for p in profiles(ws)) == sorted([old_sha, new_sha])
    assert (first.report.reference_rows, second.report.reference_rows) == (1500, 2000)
    assert columns_of(first) != columns_of(second)


@pytest.mark.parametrize("damage", ["truncated", "emptied"])
def test_a_damaged_profile_file_is_rebuilt_not_trusted(ws, damage):
    first = shop(ws).check_batch("shop", same_rows(ws, "a.csv", 3))
    (path,) = profiles(ws)
    path.write_bytes(path.read_bytes()[:200] if damage == "truncated" else b"")
    service = shop(ws)
    second = service.check_batch("shop", same_rows(ws, "b.csv", 3))
    assert service.profiles_built == 1 and columns_of(second) == columns_of(first)
    assert ProfileStore(ws / ".workbench").load(path.name[:64], path.name[65:-4]) is not None  # rewritten whole


# -- progress -------------------------------------------------------------------------------------

class Terminal:
    """stderr as a terminal sees it: what was written, and isatty."""

    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_cli_shows_columns_done_on_a_terminal_and_nothing_when_piped(ws, monkeypatch, capsys, tty):
    from tests.test_drift import batch, sales
    from workbench.cli import progress_line
    from workbench.cli.main import main

    batch(ws, "clean.csv", sales(400, seed=7))
    monkeypatch.setattr(progress_line, "DELAY_S", 0.0)  # the check is quicker than half a second
    monkeypatch.setattr(progress_line, "REDRAW_S", 0.0)
    stderr = Terminal(tty)
    monkeypatch.setattr(sys, "stderr", stderr)
    code = main(["-w", str(ws), "drift", "shop", "clean.csv", "--runner", "local", "--no-retrain"])
    out = capsys.readouterr().out
    assert code == 0 and "no drift" in out
    if tty:
        assert "\r\x1b[Kchecking clean.csv: 1/3 columns (profiling reference)" in stderr.text
        assert "\r\x1b[Kchecking clean.csv: 2/3 columns" in stderr.text
        assert stderr.text.endswith("\r\x1b[K")  # erased before the result
    else:
        assert stderr.text == ""
    assert "columns\r" not in out and "\x1b[K" not in out  # stdout untouched either way


def test_a_distance_within_its_bound_of_the_threshold_says_so():
    reference = {"x": column_from_values("x", list(np.random.default_rng(1).lognormal(0, 1, 30_000)))}
    batch = {"x": column_from_values("x", list(np.random.default_rng(2).lognormal(0.5, 1, 2_000)))}
    column = compare(reference, batch, 2_000, SPEC).columns[0]
    assert "kept as" not in column.detail
    at_threshold = replace(SPEC, wasserstein=column.statistic)
    column = compare(reference, batch, 2_000, at_threshold).columns[0]
    assert "of the exact distance: the reference is kept as 4,096 quantiles" in column.detail, column.detail


def test_a_quick_check_draws_no_progress_line_even_on_a_terminal(monkeypatch):
    from workbench.cli import progress_line

    clock = [100.0]
    monkeypatch.setattr(progress_line.time, "monotonic", lambda: clock[0])
    terminal = Terminal(True)
    with progress_line.ProgressLine("checking b.csv", terminal) as progress:
        progress(1, 50, "checking batch")
        clock[0] += 0.4
        progress(20, 50, "checking batch")
    assert terminal.text == ""
    with progress_line.ProgressLine("checking c.csv", terminal) as progress:
        clock[0] += 0.6
        progress(20, 50, "checking batch")
        clock[0] += 0.01
        progress(21, 50, "checking batch")  # within REDRAW_S: not drawn again
    assert terminal.text == "\r\x1b[Kchecking c.csv: 20/50 columns\r\x1b[K"

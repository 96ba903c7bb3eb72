"""The pure half of watch mode (core/changes.py): debouncing, ignoring, mapping changes to stages."""

from __future__ import annotations

import pytest

from workbench.core.changes import (
    ChangeKind, Debouncer, GlobSet, RunRequest, affected_stages, content_changed, stage_inputs_matcher,
)
from workbench.core.manifest import DEFAULT_IGNORES, parse_manifest
from workbench.core.model import Trigger
from workbench.core.planning import matches_any

MANIFEST = parse_manifest("""
[project]
name = "demo"

[environment]
requirements = "requirements.txt"

[stages.prep]
command = "python prep.py"
inputs = ["prep.py", "data/*.csv"]

[stages.fit]
command = "python fit.py"
inputs = ["fit.py", "params.toml", "lib"]
depends_on = ["prep"]

[stages.report]
command = "python report.py"
inputs = ["report/**/*.md"]
depends_on = ["fit"]

[stages.lint]
command = "python lint.py"
inputs = ["**/*.py"]

[watch]
ignore = ["scratch", "*.log"]
""")

C, M, D, MV = ChangeKind.CREATED, ChangeKind.MODIFIED, ChangeKind.DELETED, ChangeKind.MOVED


@pytest.mark.parametrize("pattern, path", [
    ("data/*.csv", "data/a.csv"), ("data/*.csv", "data/sub/a.csv"), ("data/*.csv", "data/a.csvx"),
    ("**/*.py", "a.py"), ("**/*.py", "x/y/a.py"), ("**/*.py", "a.pyc"),
    ("lib", "lib"), ("lib", "lib/x.py"), ("lib", "library.py"), ("lib/", "lib/x.py"),
    ("./params.toml", "params.toml"), ("data/[ab].csv", "data/a.csv"), ("data/[ab].csv", "data/c.csv"),
    ("**/__pycache__/**", "x/__pycache__/m.pyc"), ("**/__pycache__/**", "__pycache__/m.pyc"),
    (".workbench/**", ".workbench/lineage.duckdb"), ("**/*~", "notes.md~"), ("**/.#*", "src/.#fit.py"),
    ("report/**/*.md", "report/a.md"), ("report/**/*.md", "report/x/y/a.md"), ("f?t.py", "fit.py"),
])
def test_globset_matches_exactly_what_matches_any_does(pattern, path):
    assert GlobSet([pattern, "unrelated/**"])(path) == matches_any(path, (pattern,))


def test_empty_globset_matches_nothing():
    assert not GlobSet([])("anything")


def feed(debouncer: Debouncer, events: list[tuple]) -> None:
    for event in events:
        path, kind, at, *is_dir = event
        debouncer.feed(path, kind, at, bool(is_dir and is_dir[0]))


@pytest.mark.parametrize("name, events, at, expected_paths", [
    ("nothing happened", [], 10.0, None),
    ("one save, quiet period not over", [("fit.py", M, 1.0)], 1.29, None),
    ("one save, quiet period over", [("fit.py", M, 1.0)], 1.3, ("fit.py",)),
    ("a burst is one change, timed from its last event",
     [("a.py", C, 1.0), ("b.py", C, 1.2), ("c.py", C, 1.4)], 1.69, None),
    ("... and due after it", [("a.py", C, 1.0), ("b.py", C, 1.2), ("c.py", C, 1.4)], 1.7, ("a.py", "b.py", "c.py")),
    ("editor save: temp written, renamed over the target",
     [(".fit.py.tmp", C, 1.0), (".fit.py.tmp", M, 1.0), (".fit.py.tmp", MV, 1.01), ("fit.py", MV, 1.01)], 1.4,
     (".fit.py.tmp", "fit.py")),
    ("vim: write test file, swap file, backup", [("4913", C, 1.0), ("4913", D, 1.0), (".fit.py.swp", M, 1.0),
                                                 ("fit.py~", C, 1.0), ("fit.py", M, 1.0)], 1.4, ("fit.py",)),
    ("emacs lock file and auto-save", [(".#fit.py", C, 1.0), ("#fit.py#", C, 1.0)], 5.0, None),
    ("JetBrains safe write", [("fit.py___jb_tmp___", C, 1.0), ("fit.py___jb_old___", MV, 1.0),
                              ("fit.py", MV, 1.0)], 1.4, ("fit.py",)),
    ("VCS, state and cache folders, at any depth",
     [(".git/index", M, 1.0), ("sub/.git/HEAD", M, 1.0), (".workbench/lineage.duckdb", M, 1.0),
      ("x/__pycache__/m.pyc", C, 1.0), ("__pycache__", C, 1.0, True), (".git", M, 1.0, True)], 5.0, None),
    ("the manifest's watch.ignore", [("scratch/a.txt", C, 1.0), ("run.log", M, 1.0), ("scratch", C, 1.0, True)],
     5.0, None),
    ("a renamed folder: both names, marked as folders", [("data", MV, 1.0, True), ("data2", MV, 1.0, True),
                                                         ("data2/a.csv", MV, 1.0)], 1.4,
     ("data", "data2", "data2/a.csv")),
])
def test_debouncer(name, events, at, expected_paths):
    debouncer = Debouncer(0.3, MANIFEST.ignores)
    feed(debouncer, events)
    change = debouncer.due(at)
    assert (change.paths if change else None) == expected_paths, name


def test_ignored_events_do_not_extend_the_quiet_period():
    debouncer = Debouncer(0.3, MANIFEST.ignores)
    debouncer.feed("fit.py", M, 1.0)
    assert not debouncer.feed(".fit.py.swp", M, 1.2)  # vim rewrites its swap file as you type
    assert debouncer.deadline() == pytest.approx(1.3)
    assert debouncer.due(1.3).events == 1


def test_change_is_handed_out_once_and_records_folders_kinds_and_counts():
    debouncer = Debouncer(0.3)
    feed(debouncer, [("data", MV, 1.0, True), ("data2", MV, 1.0, True), ("data2/a.csv", MV, 1.0),
                     ("params.toml", M, 1.1), ("params.toml", D, 1.2)])
    change = debouncer.due(2.0)
    assert change.folders == ("data", "data2")
    assert change.kinds["params.toml"] == "deleted"
    assert change.events == 5 and (change.first_event_at, change.last_event_at) == (1.0, 1.2)
    assert debouncer.due(3.0) is None and not debouncer.pending


def test_max_wait_makes_a_never_ending_burst_due():
    debouncer = Debouncer(0.3, max_wait_s=2.0)
    for i in range(40):
        debouncer.feed("data/big.csv", M, 1.0 + i * 0.1)
    assert debouncer.deadline() == pytest.approx(3.0)
    assert debouncer.due(3.0).paths == ("data/big.csv",)


def test_overflow_asks_for_a_rescan():
    debouncer = Debouncer(0.3)
    debouncer.feed("", ChangeKind.OVERFLOW, 1.0, True)
    change = debouncer.due(1.3)
    assert change.rescan and change.paths == ()


def test_new_ignores_apply_from_now_on():
    debouncer = Debouncer(0.3)
    assert debouncer.feed("notes/a.md", C, 1.0)
    debouncer.set_ignores(DEFAULT_IGNORES + ("notes",))
    assert not debouncer.feed("notes/b.md", C, 1.1)
    assert debouncer.due(2.0).paths == ("notes/a.md",)


@pytest.mark.parametrize("paths, expected", [
    ([], set()),
    (["README.md"], set()),
    (["data/a.csv"], {"prep", "fit", "report"}),            # downstream comes along
    (["data/sub/a.csv"], set()),                            # `*` stays within its folder
    (["params.toml"], {"fit", "report"}),
    (["lib/util/x.txt"], {"fit", "report"}),                # a plain folder covers what is under it
    (["report/2024/q1.md"], {"report"}),
    (["fit.py"], {"fit", "report", "lint"}),                # two stages read it
    (["tools/x.py"], {"lint"}),
    (["requirements.txt"], {"prep", "fit", "report", "lint"}),  # the image changes: everything
    (["workbench.toml"], {"prep", "fit", "report", "lint"}),
])
def test_affected_stages(paths, expected):
    assert affected_stages(MANIFEST, paths) == expected


def test_stage_inputs_matcher_knows_what_is_read():
    reads = stage_inputs_matcher(MANIFEST)
    assert [p for p in ["workbench.toml", "requirements.txt", "data/a.csv", "README.md", "x.py"] if reads(p)] == \
        ["workbench.toml", "requirements.txt", "data/a.csv", "x.py"]


@pytest.mark.parametrize("before, after, expected", [
    ({"a": "1"}, {"a": "1"}, []),                 # touch, save without an edit
    ({"a": "1"}, {"a": "2"}, ["a"]),              # edit
    ({"a": "1"}, {"a": None}, ["a"]),             # delete
    ({}, {"b": "1"}, ["b"]),                      # create
    ({}, {"a.tmp": None}, []),                    # a temp file created and renamed away
    ({"a": "1", "b": "2"}, {"b": "3", "a": "1"}, ["b"]),
])
def test_content_changed(before, after, expected):
    assert content_changed(before, after) == expected


@pytest.mark.parametrize("older, newer, stages, trigger, paths", [
    (RunRequest(frozenset({"prep"}), Trigger.WATCH, ("data/a.csv",)),
     RunRequest(frozenset({"fit"}), Trigger.WATCH, ("params.toml",)),
     frozenset({"prep", "fit"}), Trigger.WATCH, ("data/a.csv", "params.toml")),
    (RunRequest(None, Trigger.WATCH, ("workbench.toml",)), RunRequest(frozenset({"fit"}), Trigger.WATCH, ("fit.py",)),
     None, Trigger.WATCH, ("workbench.toml", "fit.py")),
    (RunRequest(frozenset({"fit"}), Trigger.WATCH, ("fit.py",)), RunRequest(None, Trigger.MANUAL),
     None, Trigger.MANUAL, ("fit.py",)),
    (RunRequest(frozenset({"fit"}), Trigger.WATCH, ("a", "b")), RunRequest(frozenset({"fit"}), Trigger.WATCH, ("b", "c")),
     frozenset({"fit"}), Trigger.WATCH, ("a", "b", "c")),
])
def test_a_superseded_request_is_merged_into_its_replacement(older, newer, stages, trigger, paths):
    merged = older.merged_with(newer)
    assert (merged.stages, merged.trigger, merged.changed_paths) == (stages, trigger, paths)


@pytest.mark.parametrize("stages, expected", [
    (None, None),
    (frozenset({"report", "fit"}), ["fit", "report"]),       # run order
    (frozenset({"gone"}), None),                             # removed from the manifest: run all
    (frozenset({"prep", "fit", "report", "lint"}), None),    # all of them: a full run
])
def test_request_targets(stages, expected):
    assert RunRequest(stages).targets(MANIFEST) == expected

"""Project symlinks through `workbench run`: a dangling one was left out of the snapshot without
a word (the stage later failed on a missing file); links leaving the project were named a few
at a time (three, then "and N more"), so fixing them took a run per three."""

from __future__ import annotations

import json

from tests.test_cli import wb
from tests.test_pipeline_local import write_project

LOCAL = ("--runner", "local")
MIRROR_OFF = {"WORKBENCH_MLFLOW_URI": "off"}


def test_a_dangling_symlink_is_named_with_its_missing_target_in_the_run(tmp_path):
    project = write_project(tmp_path)
    (project / "extra.csv").symlink_to("exports/extra.csv")  # the export has not been made yet
    done = wb(tmp_path, "run", "tiny", *LOCAL, "-q", env=MIRROR_OFF)
    assert done.returncode == 0, (done.stdout, done.stderr)
    warning = ("symlink extra.csv -> exports/extra.csv (its target does not exist): left out of the snapshot, so a "
               "stage reading it will not find it")
    assert f"env │ warning: {warning}" in done.stdout, done.stdout  # as the run starts, even with -q
    assert done.stdout.count(f"warning: {warning}") == 2, done.stdout  # and again as it ends
    record = json.loads(wb(tmp_path, "run", "tiny", *LOCAL, "--json", env=MIRROR_OFF).stdout)
    assert record["snapshot_warnings"] == [warning]


def test_every_link_leaving_the_project_is_named_in_one_error(tmp_path):
    project = write_project(tmp_path)
    targets = {f"link{i}": target for i, target in enumerate(["/etc/hostname", "/etc/hosts", "/etc/passwd",
                                                               "/etc/group", "/etc/os-release"])}
    for name, target in targets.items():
        (project / name).symlink_to(target)
    (project / "etc").symlink_to("/etc", target_is_directory=True)
    done = wb(tmp_path, "run", "tiny", *LOCAL, env=MIRROR_OFF)
    assert done.returncode == 3, (done.stdout, done.stderr)
    error = done.stderr.replace("\n", "")
    assert "6 symlinks:" in error and "more" not in error, error
    assert "etc -> /etc (outside the project)" in error
    for name, target in targets.items():
        assert f"{name} -> {target} (outside the project)" in error, error
    allow = ", ".join(f'"{name}"' for name in ["etc", *targets])
    assert f"list the links in workbench.toml: [project] external_links = [{allow}]" in error, error

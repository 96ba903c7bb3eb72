"""A full disk, for real: the workspace on a small tmpfs that a file then fills. The command
fails with one line that says so, the store keeps every run it had, and once space is freed
the same command works (root only: it mounts a tmpfs)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_pipeline_local import write_project

MIRROR_OFF = {"WORKBENCH_MLFLOW_URI": "off"}  # no background process writing to the small disk


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_a_full_disk_is_one_clear_error_and_loses_nothing(small_disk):
    write_project(small_disk)
    first = wb(small_disk, "run", "tiny", "--runner", "local", "-q", env=MIRROR_OFF)
    assert first.returncode == 0, first.stderr
    (small_disk / "tiny" / "params.toml").write_text("[fit]\nscale = 0.5\n")

    filler = fill(small_disk)
    full = wb(small_disk, "run", "tiny", "--runner", "local", "-q", env=MIRROR_OFF)
    assert full.returncode == 3
    assert full.stderr.startswith("error: disk full") and "Traceback" not in full.stderr, full.stderr
    assert "lineage.duckdb" in full.stderr or ".workbench" in full.stderr

    filler.unlink()
    runs = json.loads(wb(small_disk, "runs", "tiny", "--json", env=MIRROR_OFF).stdout)
    assert [(r["id"], r["status"]) for r in runs] == [(1, "succeeded")], "the run before the full disk is intact"
    again = wb(small_disk, "run", "tiny", "--runner", "local", "--json", env=MIRROR_OFF)
    assert again.returncode == 2, again.stderr  # scale 0.5 fails the gate, as it should
    record = json.loads(again.stdout)
    fit = next(stage for stage in record["stages"] if stage["stage"] == "fit")
    assert record["status"] == "gate_failed" and fit["metrics"]["score"] == 0.25

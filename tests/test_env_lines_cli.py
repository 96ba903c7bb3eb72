"""`workbench run` says which base image it uses once per process (and again when it changes),
and that the environment image is up to date only with -v: every run, and every watch rerun,
said both, burying what a run was actually waiting for (issue 11 item 10)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from workbench.adapters import docker_images
from workbench.cli.main import main

MANIFEST = """
[project]
name = "envlines"

[stages.hello]
command = "python hello.py"
inputs = ["hello.py"]
outputs = ["out.txt"]
"""


def _project(ws: Path) -> None:
    project = ws / "envlines"
    project.mkdir(parents=True)
    (project / "workbench.toml").write_text(textwrap.dedent(MANIFEST))
    (project / "hello.py").write_text("import os\nopen(os.path.join(os.environ['WB_OUTPUT_DIR'], 'out.txt'), 'w')"
                                      ".write('hi')\n")


@pytest.mark.docker
@pytest.mark.slow
def test_the_base_image_is_said_once_per_process_and_up_to_date_only_with_v(
        tmp_path, capsys, monkeypatch, docker_base_image):
    if docker_base_image != docker_images.BOOTSTRAP_BASE_IMAGE:
        pytest.skip("the offline base image is what this process would announce")
    monkeypatch.delenv("WORKBENCH_BASE_IMAGE", raising=False)
    monkeypatch.setattr(docker_images, "DEFAULT_BASE_IMAGE", "workbench-test/absent:0")
    monkeypatch.setattr(docker_images, "_base_choice_said", None)  # as in a fresh process
    _project(tmp_path)
    offline = f"using the offline base image {docker_images.BOOTSTRAP_BASE_IMAGE}"

    def run(*extra: str) -> str:
        # Cold: a warm worker would outlive the test; the environment lines are the same.
        code = main(["-w", str(tmp_path), "run", "envlines", "--runner", "docker", "--cold", *extra])
        out = capsys.readouterr().out
        assert code == 0, out
        return out

    first = run()
    assert first.count(offline) == 1, first
    (tmp_path / "envlines" / "hello.py").write_text((tmp_path / "envlines" / "hello.py").read_text() + "# edit\n")
    second = run()
    assert offline not in second and "is up to date" not in second, second
    verbose = run("-v")
    assert "environment image workbench-env/envlines:" in verbose and "is up to date" in verbose, verbose

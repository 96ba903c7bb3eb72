"""Manifest values as a user meets them through `workbench`: a value out of range is one
`error:` line naming the file and the key, and one project's unreadable manifest is that
project's problem only (issue 10 item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_pipeline_local import MANIFEST, write_project


def _write(folder: Path, text: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "workbench.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _tiny_with(tmp_path: Path, environment: str) -> Path:
    text = MANIFEST.replace('primary_metric = "score"\n', f'primary_metric = "score"\n\n[environment]\n{environment}\n')
    write_project(tmp_path, **{"workbench.toml": text})
    return tmp_path


POISONS = {
    "nested 10,000 deep": ('[project]\nname = "poison"\nx = ' + "[" * 10_000 + "]" * 10_000
                           + '\n[stages.a]\ncommand = "true"\n', "nested too deeply"),
    "not UTF-8": (b'[project]\nname = "poison"\ndescription = "caf\xe9"\n[stages.a]\ncommand = "true"\n',
                  "not UTF-8"),
    "a number of 5,000 digits": ('[project]\nname = "poison"\nx = ' + "9" * 5000 + '\n[stages.a]\ncommand = "true"\n',
                                 "too large"),
}


def _main(capsys, *args: str) -> tuple[int, str, str]:
    from workbench.cli.main import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("poison", POISONS, ids=list(POISONS))
def test_one_unreadable_manifest_leaves_the_other_projects_listed_and_running(tmp_path, monkeypatch, capsys, poison):
    text, problem = POISONS[poison]
    write_project(tmp_path)
    poisoned = _write(tmp_path / "poison", text)
    elsewhere = tmp_path / "elsewhere"  # not the workspace: `tiny` is found by name, not as a folder
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ws = ("-w", str(tmp_path))

    code, out, err = _main(capsys, *ws, "projects")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert any(line.startswith("✓ tiny") for line in lines)
    poison_line = next(line for line in lines if "poison" in line)
    assert poison_line.startswith("✗") and str(poisoned) in poison_line and problem in poison_line

    code, out, _err = _main(capsys, *ws, "projects", "--json")
    assert {p["name"]: p["error"] is None for p in json.loads(out)} == {"tiny": True, "poison": False}
    code, _out, err = _main(capsys, *ws, "models", "tiny")
    assert code == 0 and err == ""
    code, _out, err = _main(capsys, *ws, "run", "tiny", "--runner", "local", "--quiet")
    assert code == 0, err
    code, _out, err = _main(capsys, *ws, "run", "poison", "--runner", "local")
    assert code == 3 and err.startswith("error: ") and problem in err


def test_an_incoming_folder_outside_the_project_is_refused_and_nothing_outside_is_listed(tmp_path):
    write_project(tmp_path)
    manifest = tmp_path / "tiny" / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('primary_metric = "score"\n',
                                                     'primary_metric = "score"\n\n[data]\nincoming = "../../../../etc"\n'))
    done = wb(tmp_path, "drift", "tiny")
    assert done.returncode == 3, done.stdout
    assert done.stderr.startswith(f"error: {manifest}: data.incoming: '../../../../etc' must be a path inside the project")
    assert "/etc/" not in done.stdout


BAD_LIMITS = [
    ("cpus = nan", "environment.cpus: must be a finite number, got nan"),
    ("cpus = 1e308", "environment.cpus: must be at least 0.01 and at most 1024, got 1e+308"),
    ('memory = "99999999999999g"', "environment.memory: must be at most 1t (1 TiB), got '99999999999999g'"),
    ("timeout_s = inf", "environment.timeout_s: must be a finite number, got inf"),
]


@pytest.mark.parametrize("line,message", BAD_LIMITS, ids=[b[0] for b in BAD_LIMITS])
def test_a_limit_out_of_range_is_one_error_naming_the_key_not_a_traceback(tmp_path, line, message):
    ws = _tiny_with(tmp_path, line)
    done = wb(ws, "run", "tiny", "--runner", "local")
    assert done.returncode == 3
    assert done.stderr == f"error: {ws / 'tiny' / 'workbench.toml'}: {message}\n"
    assert done.stdout == ""  # refused before any stage ran


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["warm", "cold"])
def test_more_cpus_than_the_engine_has_names_the_key_and_the_machine(tmp_path, docker_engine, docker_base_image, mode):
    cpus = docker_engine.info()["NCPU"] + 2
    ws = _tiny_with(tmp_path, f'cpus = {cpus}\nbase_image = "{docker_base_image}"')
    done = wb(ws, "run", "tiny", "--runner", "docker", *(["--cold"] if mode == "cold" else []), "--json")
    assert done.returncode == 1, done.stderr
    record = json.loads(done.stdout)
    prep = record["stages"][0]
    assert prep["status"] == "failed"
    assert prep["reason"] == (f"environment.cpus = {cpus:g} but this machine has "
                              f"{docker_engine.info()['NCPU']} CPUs: lower it in workbench.toml")
    assert "Range of CPUs" not in done.stdout + done.stderr


def test_the_tui_starts_beside_a_manifest_nested_10000_deep(tmp_path, monkeypatch):
    import asyncio

    from tests.test_tui import make_app, opened

    home = tmp_path / "home"  # the developer's config and themes stay out, as in test_tui.py
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    write_project(tmp_path)
    _write(tmp_path / "poison", POISONS["nested 10,000 deep"][0])

    async def drive():
        app = make_app(tmp_path)
        async with app.run_test(size=(120, 36)) as pilot:
            main = await opened(pilot)
            rows = main.projects.rows
            assert not rows["tiny"].error
            assert "nested too deeply" in rows["poison"].error

    asyncio.run(drive())

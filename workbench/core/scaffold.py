"""A first manifest for a folder of ML code: what `workbench init` writes.

Pure: it is handed the folder's file list (project-relative POSIX paths) and returns the
manifest's text, which parses (the caller checks it before writing anything). It only writes
down what it found: stages for the scripts with the usual names, chained in the usual order;
the data files, params file and requirements every stage may read. What it cannot know (the
label column, the primary metric, gates) is left as commented lines that say what to put there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

STAGE_ORDER = ("validate", "prepare", "preprocess", "featurize", "features", "train", "evaluate", "score")
"""Script names that become stages, in pipeline order (each depends on the one before)."""
SCRIPT_FOLDERS = ("", "stages", "src", "scripts")
DATA_SUFFIXES = (".csv", ".parquet", ".tsv")
PARAMS_FILES = ("params.toml", "params.yaml", "params.yml", "params.json", "config.toml", "config.yaml")
IGNORED_PARTS = {".workbench", ".git", ".venv", "venv", "__pycache__", "node_modules", ".ipynb_checkpoints"}


class NothingToRun(ValueError):
    """No script with a stage's name: there is no pipeline to write down."""


@dataclass(frozen=True)
class Scaffold:
    name: str
    stages: tuple[tuple[str, str], ...]
    """(stage name, script path), in pipeline order."""
    data: tuple[str, ...]
    params: str | None
    requirements: str | None


def project_name(folder_name: str) -> str:
    """The folder's name as a project name (letters, digits, '-', '_' and '.')."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", folder_name).strip("-.")
    return name or "project"


def survey(folder_name: str, files: list[str]) -> Scaffold:
    """What a manifest for these files would hold. Raises NothingToRun without stage scripts."""
    visible = [f for f in files if not IGNORED_PARTS.intersection(PurePosixPath(f).parts)]
    present = set(visible)
    stages = []
    for stage in STAGE_ORDER:
        script = next((f"{folder}/{stage}.py".lstrip("/") for folder in SCRIPT_FOLDERS
                       if f"{folder}/{stage}.py".lstrip("/") in present), None)
        if script is not None:
            stages.append((stage, script))
    if not stages:
        looked = ", ".join(f"{stage}.py" for stage in ("validate", "train", "evaluate"))
        raise NothingToRun(f"no stage scripts found (looked for {looked} and the like, at the top and under "
                           f"{', '.join(f + '/' for f in SCRIPT_FOLDERS if f)})")
    data = tuple(sorted(f for f in visible if f.lower().endswith(DATA_SUFFIXES)))
    params = next((p for p in PARAMS_FILES if p in present), None)
    requirements = "requirements.txt" if "requirements.txt" in present else None
    return Scaffold(project_name(folder_name), tuple(stages), data, params, requirements)


def manifest_text(scaffold: Scaffold) -> str:
    """The manifest, commented so that its reader knows what each line is for."""
    q = _quote
    lines = [
        "# Written by `workbench init` from the files it found; edit freely (README: manifest reference).",
        "[project]",
        f"name = {q(scaffold.name)}",
        "# The metric the runs table, the trend and champion/challenger compare (a stage logs it",
        "# with wb.log_metrics), e.g.:",
        '# primary_metric = "auc"',
        "",
        "[data]",
        f"paths = [{', '.join(q(p) for p in scaffold.data)}]",
        "# The label column (drift checks report it; a labelled batch measures decay):",
        '# target = "label"',
        "",
        "[environment]",
    ]
    if scaffold.requirements:
        lines.append(f"requirements = {q(scaffold.requirements)}  # installed into the stage image once")
    else:
        lines.append("# requirements = \"requirements.txt\"  # what the stages import, installed into the image")
    lines += ['memory = "2g"', "cpus = 1.0", "network = false", ""]
    previous = None
    for stage, script in scaffold.stages:
        folder = str(PurePosixPath(script).parent)
        code = "*.py" if folder == "." else f"{folder}/*.py"  # the script and the modules beside it
        inputs = [code, *scaffold.data, *([scaffold.params] if scaffold.params else [])]
        lines += [f"[stages.{stage}]", f"command = {q('python ' + script)}",
                  f"inputs = [{', '.join(q(i) for i in inputs)}]"]
        if previous:
            lines.append(f"depends_on = [{q(previous)}]")
        lines.append("")
        previous = stage
    lines += [
        "[gates]",
        "# A run passes only if every gate holds, e.g.:",
        '# auc = ">= 0.80"',
        "",
        "[watch]",
        "enabled = true",
        "debounce_ms = 300",
    ]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

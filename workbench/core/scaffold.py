"""A first manifest for a folder of ML code: what `workbench init` writes.

Pure: it is handed the folder's file list (project-relative POSIX paths) and the text of its
Python files, and returns the manifest's text, which parses (the caller checks it before
writing anything). It only writes down what it found: stages for the scripts with the usual
names, and for every script in a `stages/` folder whatever its name, that are scripts (they do
their work when run; a `features.py` of functions that the others import is a module, not a
stage). A stage follows the stages whose outputs it reads (`wb.upstream("fit", ...)`); the usual
names with no such call are chained in the usual order. Each reads its own
script, the local modules it imports and the data and params files it names; when `ast` can tell which
keys of a params file a stage reads (`params["train"]`, `wb.load_params("params.toml", "train")`),
those keys (`params = ["train"]`) instead of the whole file. What it cannot know (the
label column, the primary metric, gates) is left as commented lines that say what to put there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import PurePosixPath

from workbench.core.params_keys import default_params_file
from workbench.core.script_facts import ScriptFacts, local_modules, read_facts

STAGE_ORDER = ("validate", "prepare", "preprocess", "featurize", "features", "train", "evaluate", "score")
"""Script names that become stages, in pipeline order (each depends on the one before)."""
SCRIPT_FOLDERS = ("", "stages", "src", "scripts")
DATA_SUFFIXES = (".csv", ".parquet", ".tsv")
PARAMS_FILES = ("params.toml", "params.yaml", "params.yml", "params.json", "config.toml", "config.yaml")
IGNORED_PARTS = {".workbench", ".git", ".venv", "venv", "__pycache__", "node_modules", ".ipynb_checkpoints"}


class NothingToRun(ValueError):
    """No script that is a stage: there is no pipeline to write down."""


@dataclass(frozen=True)
class StagePlan:
    name: str
    script: str
    inputs: tuple[str, ...]
    """The script, the project's modules it imports, and the data and params files it names."""
    why: str
    """What showed it is a stage (`if __name__ == "__main__"`, top-level calls)."""
    params: tuple[str, ...] = ()
    """The params keys it reads (`train`, `split.seed`, `other.yaml:lr`), when `ast` could tell
    them all for a file; that file is then not among its inputs."""
    depends_on: tuple[str, ...] = ()
    """The stages it follows: those it reads outputs of, else the usual name before it."""


@dataclass(frozen=True)
class Scaffold:
    name: str
    stages: tuple[StagePlan, ...]
    """In pipeline order."""
    data: tuple[str, ...]
    params: str | None
    requirements: str | None
    not_stages: tuple[tuple[str, str], ...] = ()
    """(script, why not): files with a stage's name that are modules (or unreadable)."""


def project_name(folder_name: str) -> str:
    """The folder's name as a project name (letters, digits, '-', '_' and '.')."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", folder_name).strip("-.")
    return name or "project"


def survey(folder_name: str, files: list[str], sources: Mapping[str, str]) -> Scaffold:
    """What a manifest for these files would hold; `sources` is the text of their Python files.
    Raises NothingToRun when no file with a stage's name is a script that does work when run."""
    visible = [f for f in files if not IGNORED_PARTS.intersection(PurePosixPath(f).parts)]
    present = set(visible)
    facts = {path: read_facts(text) for path, text in sources.items() if path in present and path.endswith(".py")}
    data = tuple(sorted(f for f in visible if f.lower().endswith(DATA_SUFFIXES)))
    params = next((p for p in PARAMS_FILES if p in present), None)
    importers = _importers(facts, visible)
    stages, not_stages = [], []
    for script in _candidates(present):
        why, why_not = _verdict(script, facts.get(script), importers.get(script, []))
        if why_not:
            not_stages.append((script, why_not))
            continue
        modules = local_modules(script, facts, visible)
        named = {s for path in (script, *modules) if path in facts for s in facts[path].strings}
        read = [f for f in (*data, *([params] if params else [])) if _names(f, named)]
        keys, by_key, whole = _params_keys([facts[p] for p in (script, *modules) if p in facts], present)
        # `wb.load_params()` reads params.toml without writing its name down
        read = [f for f in read if f not in by_key] + [f for f in whole if f not in read]
        stages.append(StagePlan(PurePosixPath(script).stem, script, (script, *modules, *read), why, keys))
    stages = _ordered(stages, facts)
    if not stages:
        looked = ", ".join(f"{stage}.py" for stage in ("validate", "train", "evaluate"))
        skipped = "".join(f"; {script} is not one: {why}" for script, why in not_stages)
        raise NothingToRun(f"no stage scripts found (looked for {looked} and the like, at the top and under "
                           f"{', '.join(f + '/' for f in SCRIPT_FOLDERS if f)}, and any script in stages/){skipped}")
    requirements = "requirements.txt" if "requirements.txt" in present else None
    return Scaffold(project_name(folder_name), tuple(stages), data, params, requirements, tuple(not_stages))


def _candidates(present: set[str]) -> list[str]:
    """Scripts that may be stages: the usual names (in pipeline order, the first folder that has
    one), then every other script directly in a `stages/` folder (by name): a folder of that name
    says what its scripts are, whatever they are called."""
    usual = []
    for stage in STAGE_ORDER:
        script = next((f"{folder}/{stage}.py".lstrip("/") for folder in SCRIPT_FOLDERS
                       if f"{folder}/{stage}.py".lstrip("/") in present), None)
        if script:
            usual.append(script)
    taken = {PurePosixPath(s).stem for s in usual}
    others = sorted(f for f in present if PurePosixPath(f).parent.as_posix() == "stages" and f.endswith(".py")
                    and not f.startswith("stages/_") and PurePosixPath(f).stem not in taken
                    and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", PurePosixPath(f).stem))
    return usual + others


def _ordered(stages: list[StagePlan], facts: Mapping[str, ScriptFacts]) -> list[StagePlan]:
    """Each stage after the ones it follows. A stage that reads another's outputs by name
    (`wb.upstream("fit", ...)`) follows those; one of the usual names that reads none follows
    the usual name before it (validate, then train, then evaluate); any other follows nothing
    (the manifest says so, for its reader to decide)."""
    names = [s.name for s in stages]
    usual = [s.name for s in stages if s.name in STAGE_ORDER]
    planned: dict[str, StagePlan] = {}
    for stage in stages:
        read = tuple(n for n in facts[stage.script].upstream if n in names and n != stage.name)
        if not read and stage.name in usual and usual.index(stage.name) > 0:
            read = (usual[usual.index(stage.name) - 1],)
        planned[stage.name] = StagePlan(stage.name, stage.script, stage.inputs, stage.why, stage.params, read)
    ordered: list[StagePlan] = []
    placing: set[str] = set()

    def place(name: str) -> None:
        if name in placing or any(s.name == name for s in ordered):
            return  # placed already, or a cycle (the manifest's own check names it)
        placing.add(name)
        for dep in planned[name].depends_on:
            place(dep)
        ordered.append(planned[name])

    for name in names:
        place(name)
    return ordered


def _params_keys(used: list[ScriptFacts], present: set[str]) -> tuple[tuple[str, ...], set[str], list[str]]:
    """(the keys a stage reads, as a manifest writes them; the files they come from; the files
    it reads whole). A file some code reads whole, or in a way `ast` cannot follow, stays a
    whole-file input; if even the file cannot be told (`wb.load_params(path)`), no keys at all."""
    keys = [k for facts in used for k in facts.params.keys]
    whole = {f for facts in used for f in facts.params.whole}
    whole_present = sorted(f for f in whole if f in present)
    if "?" in whole:
        return (), set(), whole_present
    default, _ = default_params_file(None, present)
    chosen = [(file, key) for file, key in dict.fromkeys(keys) if file in present and file not in whole]
    # `split` covers `split.seed`: keep only the widest key read of each part of a file.
    chosen = [(file, key) for file, key in chosen
              if not any(f == file and key.startswith(k + ".") for f, k in chosen)]
    written = tuple(key if file == default else f"{file}:{key}" for file, key in chosen)
    return written, {file for file, _ in chosen}, whole_present


def _verdict(script: str, facts: ScriptFacts | None, importers: list[str]) -> tuple[str, str | None]:
    """(why it is a stage, why it is not): a stage does its job when run; a module that other
    files import and that does nothing on its own is what the stages depend on."""
    if facts is None:
        return "", "it could not be read"
    if facts.problem:
        return "", facts.problem
    if facts.main_guard:
        return 'it runs under `if __name__ == "__main__"`', None
    if importers:
        return "", f"a module imported by {', '.join(importers)}, not a script"
    if facts.does_work:
        return "it does its work at the top level when run", None
    return "", "it only defines functions and classes, so running it does nothing"


def _importers(facts: dict[str, ScriptFacts], files: list[str]) -> dict[str, list[str]]:
    """For each Python file, the files that import it directly."""
    found: dict[str, list[str]] = {}
    for path in facts:
        direct = ScriptFacts(imports=facts[path].imports)  # one level: whom `path` names itself
        for module in local_modules(path, {path: direct}, files):
            found.setdefault(module, []).append(path)
    return {module: sorted(paths) for module, paths in found.items()}


def _names(path: str, strings: set[str]) -> bool:
    """Whether one of a script's string constants names this file: its path, its file name, a
    glob that matches it, or the folder it is in (`os.listdir("data")`)."""
    name = PurePosixPath(path).name
    for text in strings:
        text = text.replace("\\", "/").removeprefix("./").strip()
        if not text or len(text) > 300:
            continue
        if text in (path, name) or (path.endswith("/" + text) and "." in text):
            return True
        if any(c in text for c in "*?[") and (fnmatch(path, text) or fnmatch(name, text)):
            return True
        if "/" in path and path.startswith(text.rstrip("/") + "/") and "." not in PurePosixPath(text).name:
            return True
    return False


def manifest_text(scaffold: Scaffold) -> str:
    """The manifest, commented so that its reader knows what each line is for."""
    q = _quote
    lines = [
        "# Written by `workbench init` from the files it found; edit freely (docs/manifest.md: the reference).",
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
    if scaffold.not_stages:
        lines.append("# Not made stages (a stage is a script that does its work when run):")
        lines += [f"#   {script}: {why}" for script, why in scaffold.not_stages]
        lines.append("")
    lines += ["# Each stage's inputs: its script, the project's modules it imports, and the data and",
              "# params files it names; a file it reads by another name belongs here too.", ""]
    for stage in scaffold.stages:
        lines += [f"[stages.{stage.name}]", f"# a stage because {stage.why}",
                  f"command = {q('python ' + stage.script)}",
                  f"inputs = [{', '.join(q(i) for i in stage.inputs)}]"]
        if stage.params:
            lines += ["# the params keys it reads: an edit elsewhere in the file does not rerun it",
                      f"params = [{', '.join(q(k) for k in stage.params)}]"]
        if stage.depends_on:
            lines.append(f"depends_on = [{', '.join(q(d) for d in stage.depends_on)}]")
        elif stage is not scaffold.stages[0]:
            lines.append("# depends_on = [...]  # it reads no other stage's outputs by name: list the stages it must follow")
        lines.append("")
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

"""What a Python file of a project does when run, read with `ast` (never imported or run).

`workbench init` uses it to tell a stage (a script that does its work when run) from a module
the stages import (`features.py` that only defines functions), and to find what a stage reads:
the local modules it imports and the file names it writes down.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from workbench.core.params_keys import PARAMS_SUFFIXES

WORK_STATEMENTS = (ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith)


LOAD_PARAMS = "load_params"
"""wb.load_params(path="params.toml", section=None)"""
FILE_LOADERS = {("tomllib", "load"), ("tomllib", "loads"), ("toml", "load"), ("yaml", "safe_load"),
                ("yaml", "load"), ("json", "load"), ("json", "loads")}
"""Calls that parse a whole params file, when a params file's name is what they read."""


@dataclass(frozen=True)
class ParamsUse:
    """The params a file reads: (file, dotted key) pairs, and the files read whole or in a way
    `ast` cannot follow (a dict passed on, iterated, indexed by a variable)."""

    keys: tuple[tuple[str, str], ...] = ()
    whole: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScriptFacts:
    problem: str | None = None
    """Why the file could not be read as Python (then nothing else is known)."""
    main_guard: bool = False
    """It has an `if __name__ == "__main__":` block."""
    does_work: bool = False
    """Its top level calls, loops or opens something, or reads sys.argv: running it does a job."""
    imports: tuple[tuple[str, int], ...] = ()
    """(dotted module, relative level) of every import, `from a import b` also as `a.b`."""
    strings: tuple[str, ...] = ()
    """Every string constant, where file names (`data/churn.csv`, `params.toml`) are written."""
    params: ParamsUse = field(default_factory=lambda: ParamsUse())
    """Which keys of which params files it reads, as far as `ast` can tell."""
    upstream: tuple[str, ...] = ()
    """The stages whose outputs it reads by name: `wb.upstream("train", "model.txt")`."""


def read_facts(source: str) -> ScriptFacts:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:  # ValueError: a NUL byte in the source
        line = getattr(exc, "lineno", None)
        return ScriptFacts(problem=f"it does not parse as Python{f' (line {line})' if line else ''}")
    except (RecursionError, MemoryError):
        return ScriptFacts(problem="it is nested too deeply to read")
    imports: list[tuple[str, int]] = []
    strings: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            imports.append((base, node.level))
            imports += [(f"{base}.{alias.name}" if base else alias.name, node.level)
                        for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 500:
            strings.append(node.value)
    body = [s for s in tree.body if not _is_docstring(s)]
    return ScriptFacts(
        main_guard=any(_is_main_guard(s) for s in body),
        does_work=any(_does_work(s) for s in body),
        imports=tuple(dict.fromkeys(imports)),
        strings=tuple(dict.fromkeys(strings)),
        params=_params_use(tree),
        upstream=_upstream_stages(tree),
    )


def _upstream_stages(tree: ast.AST) -> tuple[str, ...]:
    """The first argument of every `upstream("stage", ...)` call (the `wb` helper's way to an
    upstream stage's outputs) that is written as a constant: the stages this one follows."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            stage = _constant(node.args[0])
            if name == "upstream" and stage:
                found.append(stage)
    return tuple(dict.fromkeys(found))


def _params_use(tree: ast.AST) -> ParamsUse:
    """The keys read from params files: `wb.load_params("params.toml", "train")` reads [train];
    a whole file loaded into a name (`params = wb.load_params()`, `tomllib.load(open(...))`)
    reads the keys it is indexed with: `params["split"]["seed"]` is split.seed. Names are
    matched by name, not scope: a guess that init writes down for the user to check."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    opened = {}  # `with open("params.yaml") as fh`: fh -> params.yaml
    for node in ast.walk(tree):
        if isinstance(node, ast.withitem) and isinstance(node.optional_vars, ast.Name):
            name = _params_file_arg(node.context_expr)
            if name:
                opened[node.optional_vars.id] = name
    keys: list[tuple[str, str]] = []
    whole: list[str] = []
    holders: dict[str, str] = {}  # a name holding a whole params file -> the file
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        file, section = _params_call(node, opened)
        if file is None:
            continue
        if section == "":
            whole.append(file)
            continue
        if section is not None:
            keys.append((file, section))
            continue
        parent = parents.get(node)
        target = parent.targets[0] if isinstance(parent, ast.Assign) and len(parent.targets) == 1 else None
        if isinstance(target, ast.Name):
            holders[target.id] = file
        else:
            subscript = _key_path(node, parents)
            if subscript:
                keys.append((file, subscript))
            else:
                whole.append(file)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in holders:
            key = _key_path(node, parents)
            if key:
                keys.append((holders[node.id], key))
            else:
                whole.append(holders[node.id])
    return ParamsUse(tuple(dict.fromkeys(keys)), tuple(dict.fromkeys(whole)))


def _params_call(call: ast.Call, opened: dict[str, str]) -> tuple[str | None, str | None]:
    """(params file, section) of a call that loads params; (None, None) for any other call. A
    section of "" means one `ast` cannot read (a variable): the whole file, to be safe."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name == LOAD_PARAMS:
        args = {**dict(zip(("path", "section"), call.args)), **{k.arg: k.value for k in call.keywords if k.arg}}
        path, section = args.get("path"), args.get("section")
        file = _constant(path) if path is not None else "params.toml"
        if file is None:  # a path in a variable: which file is not known
            return "?", ""
        if section is None:
            return file, None
        return file, _constant(section) or ""  # "": a section in a variable, so the whole file
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and (func.value.id, name) in FILE_LOADERS:
        for arg in call.args:
            if isinstance(arg, ast.Name) and arg.id in opened:
                return opened[arg.id], None
            file = _params_file_arg(arg)
            if file:
                return file, None
    return None, None


def _params_file_arg(node: ast.AST) -> str | None:
    """The params file an expression opens or names (`open("params.yaml")`, `"params.json"`)."""
    for sub in ast.walk(node):
        text = _constant(sub)
        if text and text.lower().endswith(PARAMS_SUFFIXES) and "/" not in text.strip("./"):
            return text.removeprefix("./")
    return None


def _key_path(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str | None:
    """The dotted key a chain of constant subscripts (or `.get("k")` calls) on `node` reads."""
    parts: list[str] = []
    while True:
        parent = parents.get(node)
        if isinstance(parent, ast.Subscript) and parent.value is node and _constant(parent.slice) is not None:
            parts.append(_constant(parent.slice))
            node = parent
        elif (isinstance(parent, ast.Attribute) and parent.value is node and parent.attr == "get"
              and isinstance(parents.get(parent), ast.Call) and parents[parent].args
              and _constant(parents[parent].args[0]) is not None):
            parts.append(_constant(parents[parent].args[0]))
            node = parents[parent]
        else:
            return ".".join(parts) if parts and all("." not in p and p.strip() for p in parts) else None


def _constant(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def local_modules(script: str, facts: dict[str, ScriptFacts], files: Collection[str]) -> list[str]:
    """The project's own Python files that `script` imports, directly or through each other.

    An absolute import is looked up beside the script (Python puts its folder first on
    sys.path) and at the project's top (the working directory of every stage); a relative one
    beside the importing module."""
    present = set(files)
    script_folder = PurePosixPath(script).parent
    found: list[str] = []
    pending = [script]
    while pending:
        module = pending.pop()
        module_facts = facts.get(module)
        if module_facts is None:
            continue
        for name, level in module_facts.imports:
            if level:
                bases = [PurePosixPath(module).parents[level - 1]] if level <= len(PurePosixPath(module).parents) else []
            else:
                bases = [script_folder, PurePosixPath(".")]
            for path in _candidates(name, bases, present):
                if path != script and path not in found:
                    found.append(path)
                    pending.append(path)
    return sorted(found)


def _candidates(name: str, bases: list[PurePosixPath], present: set[str]) -> list[str]:
    parts = [p for p in name.split(".") if p]
    hits = []
    for base in bases:
        for depth in range(1, len(parts) + 1):  # a.b.c also needs a/__init__.py and a/b/__init__.py
            stem = base.joinpath(*parts[:depth])
            for path in (f"{stem}.py", f"{stem}/__init__.py"):
                path = path.removeprefix("./")
                if path in present and path not in hits:
                    hits.append(path)
    return hits


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) \
        and isinstance(statement.value.value, str)


def _is_main_guard(statement: ast.stmt) -> bool:
    if not isinstance(statement, ast.If) or not isinstance(statement.test, ast.Compare):
        return False
    sides = [statement.test.left, *statement.test.comparators]
    names = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    main = any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)
    return names and main


def _does_work(statement: ast.stmt) -> bool:
    """Whether a top-level statement does something when the file runs, beyond defining names:
    a call (`main()`, `wb.log_metrics(...)`), a loop, a `with open(...)`, or a read of sys.argv."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
        return False
    if isinstance(statement, WORK_STATEMENTS):
        return True
    if isinstance(statement, ast.Expr):
        return isinstance(statement.value, (ast.Call, ast.Await))
    if isinstance(statement, (ast.If, ast.Try)):
        blocks = [statement.body, statement.orelse, *(getattr(h, "body", []) for h in getattr(statement, "handlers", []))]
        return any(_does_work(s) for block in blocks for s in block)
    return any(_reads_argv(node) for node in ast.walk(statement))


def _reads_argv(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "argv" and isinstance(node.value, ast.Name)
            and node.value.id == "sys") or (isinstance(node, ast.Attribute) and node.attr == "ArgumentParser")

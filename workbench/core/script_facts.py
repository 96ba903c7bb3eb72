"""What a Python file of a project does when run, read with `ast` (never imported or run).

`workbench init` uses it to tell a stage (a script that does its work when run) from a module
the stages import (`features.py` that only defines functions), and to find what a stage reads:
the local modules it imports and the file names it writes down.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import PurePosixPath

WORK_STATEMENTS = (ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith)


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
    )


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

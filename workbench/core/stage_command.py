"""The project files a stage's shell command runs, read from the command itself.

`python stages/train.py --fast`, `./run.sh`, `FOO=1 bash scripts/prep.sh && python -u fit.py`:
each simple command's script is a file of the project. Knowing them lets the manifest refuse a
script outside the project and the pipeline say "stages.train.command: no file stages/trian.py"
before it starts a container, instead of a FileNotFoundError from inside the worker.

What cannot be known from the text is left alone: a module (`python -m pkg`), inline code
(`python -c ...`, `sh -c ...`), a program found on PATH, and words the shell expands
(`$SCRIPT`, `*.py`, backquotes).
"""

from __future__ import annotations

import difflib
import functools
import posixpath
import re
import shlex
from collections.abc import Collection
from pathlib import PurePosixPath

INTERPRETER_RE = re.compile(r"^(python[0-9.]*|pypy[0-9.]*|sh|bash|dash|zsh|ksh|Rscript|julia|node|perl|ruby)$")
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "\n", ";;", "|&"}
REDIRECTIONS = {"<", ">", ">>", "<<", "<<<", ">&", "<&", "&>", "&>>", ">|"}
WRAPPERS = {"exec", "time", "nohup", "nice", "env", "command", "stdbuf"}
OPERATOR_CHARS = set(";&|()<>")
OPERATORS = sorted(SEPARATORS | REDIRECTIONS | set(OPERATOR_CHARS), key=len, reverse=True)
SHELL_EXPANSION = re.compile(r"[$`*?\[\]{}]")
LIKELY_PROGRAMS = {"python": 2, "python3": 2, "Rscript": 2, "bash": 1}
"""Programs a typo usually meant, with how many edits away a word still reads as a typo of it.
`bash` allows one: two edits from it are ordinary programs (make, java)."""
NEAR_BUT_REAL = {"ipython", "bpython", "cython", "jython", "hash"}
"""Real programs (or shell builtins) within those edits: never called a typo."""
NOT_FOUND_RE = re.compile(r"(?:^|: )([^\s:]+): (?:command )?not found\s*$")
"""How sh, dash and bash say a program is missing: `sh: 1: pyhton: not found`, `bash: pyhton: command not found`."""


def command_scripts(command: str) -> list[str]:
    """The project-relative scripts the command runs, in order (absolute ones as written).
    Cached: every listing of the workspace parses every manifest's commands again."""
    return list(_command_scripts(command))


@functools.lru_cache(maxsize=1024)
def _command_scripts(command: str) -> tuple[str, ...]:
    """command_scripts, uncached.

    A `cd sub` before them is followed (`cd src && python train.py` runs src/train.py), inside
    its parentheses only; after a `cd` to somewhere unknown ($VAR, an absolute path) nothing
    more can be said, so nothing more is returned."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        tokens = [part for token in lexer for part in _split_operators(token)]
    except ValueError:
        return ()  # unbalanced quotes: the shell itself says so when the stage runs
    scripts = []
    folder, outer = PurePosixPath("."), []
    for words in _simple_commands(tokens):
        if words == ["("]:
            outer.append(folder)
        elif words == [")"]:
            folder = outer.pop() if outer else folder
        elif words[0] in ("cd", "pushd"):
            target = words[1] if len(words) > 1 else "/"
            if target.startswith(("/", "~", "-")) or SHELL_EXPANSION.search(target):
                break
            folder = folder / target
        else:
            script = _script_of(words)
            if script is not None and not SHELL_EXPANSION.search(script):
                scripts.append(script if script.startswith("/") else posixpath.normpath(str(folder / script)))
    return tuple(scripts)


def missing_scripts(command: str, files: Collection[str]) -> list[tuple[str, str | None]]:
    """Scripts the command runs that are not among the project's `files` (relative POSIX
    paths), each with the closest existing path as a suggestion (or None)."""
    present = set(files)
    folders = {str(parent) for f in present for parent in PurePosixPath(f).parents}
    missing = []
    for script in command_scripts(command):
        if script.startswith("/"):
            continue  # a program of the image, not of the project
        normal = str(PurePosixPath(script))
        if normal in present or normal in folders:  # `python pkg` runs pkg/__main__.py
            continue
        close = difflib.get_close_matches(normal, sorted(present), n=1, cutoff=0.8)
        missing.append((normal, close[0] if close else None))
    return missing


def _split_operators(token: str) -> list[str]:
    """shlex keeps a run of operator characters as one token (`);`, `&&(`): split it into
    the shell's operators, longest first."""
    if not token or any(c not in OPERATOR_CHARS for c in token):
        return [token]
    parts = []
    while token:
        operator = next(op for op in OPERATORS if token.startswith(op))
        parts.append(operator)
        token = token[len(operator):]
    return parts


def _simple_commands(tokens: list[str]) -> list[list[str]]:
    commands: list[list[str]] = [[]]
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in ("(", ")"):
            commands += [[token], []]  # a subshell: a `cd` inside it ends with it
        elif token in SEPARATORS:
            commands.append([])
        elif token in REDIRECTIONS or token.rstrip("0123456789") in REDIRECTIONS:
            skip_next = True  # the redirection's target is a file the command writes, not a script
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _script_of(words: list[str]) -> str | None:
    index = 0
    while index < len(words) and ("=" in words[index] and not words[index].startswith("-")
                                  or PurePosixPath(words[index]).name in WRAPPERS
                                  or index and words[index].startswith("-")):
        index += 1  # `FOO=1 python x.py`, `exec python x.py`, `/usr/bin/env -u X python x.py`
    if index >= len(words):
        return None
    program = words[index]
    name = PurePosixPath(program).name
    if INTERPRETER_RE.match(name):
        return _interpreter_script(name, words[index + 1:])
    if "/" in program and not program.startswith("/"):
        return program  # `./run.sh`, `scripts/prep.sh`: the program is a project file
    return None


def _interpreter_script(interpreter: str, args: list[str]) -> str | None:
    """The first argument that is the script, or None when the code comes from elsewhere or
    the options before it cannot be read for sure (a wrong guess would block a good stage)."""
    if interpreter.startswith(("python", "pypy")):
        inline, with_value = "cm", "WX"
    elif interpreter in ("sh", "bash", "dash", "zsh", "ksh"):
        inline, with_value = "c", "o"
    else:
        inline, with_value = None, None  # perl -I lib, node -r mod, julia -p 4: options vary
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "-":
            return None  # the code comes from stdin
        elif arg.startswith("-"):
            if inline is None or (arg.startswith("--") and "=" not in arg):
                return None  # an option that may take the next word: the script is not known
            if arg.startswith("--"):
                continue
            flags = arg[1:]
            for position, flag in enumerate(flags):
                if flag in inline:
                    return None  # inline code or a module (`-c ...`, `-uc ...`, `-m pkg`): no script file
                if flag in with_value:
                    skip = position == len(flags) - 1  # `-W ignore` takes the next word, `-Wignore` not
                    break
        else:
            return arg
    return None


def misspelt_programs(command: str, files: Collection[str]) -> list[tuple[str, str]]:
    """Programs the command runs that read as a typo of an interpreter (`pyhton`, `pyton3`,
    `bsah`), each with the one it likely meant. The image cannot be seen from here, so only
    words close to python/python3/Rscript/bash that are no file of the project are named."""
    present = set(files)
    found = []
    for program in _programs(command):
        if "/" in program or program in present or program in NEAR_BUT_REAL or INTERPRETER_RE.match(program):
            continue
        close = [(_edit_distance(program, name), name) for name, most in LIKELY_PROGRAMS.items()
                 if _edit_distance(program, name) <= most]
        if close:
            found.append((program, min(close)[1]))
    return found


def not_found_problem(source_key: str, exit_code: int | None, lines: list[str]) -> str | None:
    """A stage that exited 127 because the shell found no such program: the message naming the
    manifest key and the program; None for any other failure."""
    if exit_code != 127:
        return None
    for line in reversed(lines):
        match = NOT_FOUND_RE.search(line.strip())
        if match:
            return (f"workbench.toml: {source_key} runs {match.group(1)}, a program the stage's environment does "
                    f"not have (exit code 127: {line.strip()[:200]})")
    return None


def _programs(command: str) -> list[str]:
    """The program of each simple command (after `FOO=1`, `exec`, `env`...), as written."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        tokens = [part for token in lexer for part in _split_operators(token)]
    except ValueError:
        return []
    programs = []
    for words in _simple_commands(tokens):
        index = 0
        while index < len(words) and ("=" in words[index] and not words[index].startswith("-")
                                      or PurePosixPath(words[index]).name in WRAPPERS
                                      or index and words[index].startswith("-")):
            index += 1
        if index < len(words) and words[index] not in ("(", ")") and not SHELL_EXPANSION.search(words[index]):
            programs.append(words[index])
    return programs


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, with a swap of two neighbours as one edit (`pyhton` is one from `python`)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


def missing_script_problem(source_key: str, command: str, files: Collection[str]) -> str | None:
    """The message for a command whose script is not in the project, or whose program reads as
    a typo of an interpreter, naming the manifest key (`stages.train.command`), the word and the
    likeliest intended one; None when all are there."""
    misspelt = misspelt_programs(command, files)
    if misspelt:
        program, meant = misspelt[0]
        return (f"workbench.toml: {source_key} runs the program {program}, which is no file of the project "
                f"(did you mean {meant}?)")
    missing = missing_scripts(command, files)
    if not missing:
        return None
    script, close = missing[0]
    hint = f" (did you mean {close}?)" if close else ""
    return f"workbench.toml: {source_key} runs {script}, which is not in the project{hint}"

"""Which stages a run needs, in what order, and whether a stage's earlier result can be reused.

A stage is reused when its cache key matches an earlier successful stage run. The key covers
everything that can change the stage's outputs: its command, the content of the files its
declared inputs match, the values of the params keys it names, the environment image, and the
content of its upstream stages' outputs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache


class CycleError(ValueError):
    pass


def topological_order(deps: dict[str, tuple[str, ...]]) -> list[str]:
    """Order stages so each comes after its dependencies; ties keep declaration order."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == "done":
            return
        if state.get(node) == "visiting":
            cycle = " -> ".join(path[path.index(node):] + [node])
            raise CycleError(f"stages depend on each other in a cycle: {cycle}")
        state[node] = "visiting"
        for dep in deps[node]:
            visit(dep, path + [node])
        state[node] = "done"
        order.append(node)

    for node in deps:
        visit(node, [])
    return order


def select_stages(deps: dict[str, tuple[str, ...]], targets: list[str] | None) -> list[str]:
    """The targets plus everything they depend on, in run order (all stages if no targets)."""
    order = topological_order(deps)
    if not targets:
        return order
    unknown = [t for t in targets if t not in deps]
    if unknown:
        raise KeyError(f"unknown stage {unknown[0]!r} (stages: {', '.join(order)})")
    needed: set[str] = set()
    stack = list(targets)
    while stack:
        node = stack.pop()
        if node not in needed:
            needed.add(node)
            stack.extend(deps[node])
    return [n for n in order if n in needed]


def downstream_of(deps: dict[str, tuple[str, ...]], roots: set[str]) -> set[str]:
    """The roots and every stage that depends on them, directly or not."""
    affected = set(roots)
    changed = True
    while changed:
        changed = False
        for node, node_deps in deps.items():
            if node not in affected and affected.intersection(node_deps):
                affected.add(node)
                changed = True
    return affected


@lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a project glob: `*` stays within a folder, `**/` spans folders."""
    parts, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(parts) + "$")


def glob_match(path: str, pattern: str) -> bool:
    pattern = pattern.removeprefix("./")
    if any(ch in pattern for ch in "*?["):
        if "[" in pattern:
            return fnmatch.fnmatchcase(path, pattern)
        return bool(_glob_regex(pattern).match(path))
    # A plain folder name matches everything under it.
    return path == pattern or path.startswith(pattern.rstrip("/") + "/")


def matches_any(path: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return any(glob_match(path, p) for p in patterns)


def glob_regex(pattern: str) -> str:
    """The anchored regular expression that matches what glob_match(path, pattern) matches,
    so many globs can be compiled into one expression (one call per path, not one per glob)."""
    pattern = pattern.removeprefix("./")
    if any(ch in pattern for ch in "*?["):
        if "[" in pattern:
            return "^" + fnmatch.translate(pattern)
        return _glob_regex(pattern).pattern
    folder = re.escape(pattern.rstrip("/"))
    return f"^(?:{re.escape(pattern)}|{folder}/.*)$"


def stage_inputs(files: dict[str, str], patterns: tuple[str, ...]) -> dict[str, str]:
    """The subset of the project's {path: sha256} that a stage's input globs match."""
    return {path: digest for path, digest in sorted(files.items()) if matches_any(path, patterns)}


@dataclass(frozen=True)
class CacheKeyParts:
    stage: str
    command: str
    inputs: dict[str, str]
    image_id: str
    upstream: dict[str, str]
    network: bool
    params: dict[str, str] = field(default_factory=dict)
    """The params keys the stage names (`file:key` -> canonical JSON of the value): only these
    values, not the params file's hash, unless the stage also lists the file in `inputs`."""
    evaluation: str = ""
    """What the workbench's evaluation of the stage's predictions file is computed with (file,
    task, threshold, target, sensitive columns): its metrics are part of the stage's result."""

    def digest(self) -> str:
        fields = {
            "v": 1,
            "stage": self.stage,
            "command": self.command,
            "inputs": sorted(self.inputs.items()),
            "image": self.image_id,
            "upstream": sorted(self.upstream.items()),
            "network": self.network,
        }
        if self.params:  # absent, not empty: a stage without keys keeps the key it always had
            fields["params"] = sorted(self.params.items())
        if self.evaluation:  # likewise: only stages that declare a predictions file
            fields["evaluation"] = self.evaluation
        payload = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def tree_digest(files: dict[str, str]) -> str:
    """One digest for a set of {relative path: sha256}; used for outputs and snapshots."""
    h = hashlib.sha256()
    for path, digest in sorted(files.items()):
        h.update(f"{path}\0{digest}\n".encode())
    return h.hexdigest()

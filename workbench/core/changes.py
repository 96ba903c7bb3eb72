"""From file events to changes: bursts become one change, and a change maps to the stages it affects.

Pure: no threads, no clock, no file system. The watch service feeds raw events in with the time
it saw them and asks, with the current time, whether a change is due.

What is ignored, and where:
  * by name, here: the manifest's ignores (VCS folders, `.workbench/`, `__pycache__`, swap and
    backup files, `watch.ignore`), the same folders at any depth (snapshots skip them there too),
    and the names editors use for scratch files (vim's `4913` write test, JetBrains'
    `___jb_tmp___`, gedit's `.goutputstream-*`, ...). Ignored events do not even extend the quiet
    period, so an editor rewriting its swap file every few seconds never delays a change.
  * by content, in the service: a temp file written and renamed over its target inside one burst
    (`x.tmp` -> `x`) is gone when the change is due, and a touch or a save without an edit leaves
    the content hash as it was; neither is a change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Iterable, Mapping

from workbench.core.contract import CONTRACT_SUFFIX
from workbench.core.manifest import MANIFEST_NAME, Manifest
from workbench.core.model import Trigger
from workbench.core.planning import downstream_of, glob_regex

WATCH_IGNORES = (
    # Snapshots skip these folders at any depth, so the watcher does too.
    "**/.workbench/**",
    "**/.git/**",
    "**/.hg/**",
    "**/.svn/**",
    "**/__pycache__/**",
    # Editors' scratch files.
    "**/4913",                  # vim: checks the folder is writable before saving
    "**/.*.sw?",                # vim swap files (.x.swp, .x.swo, .x.swn, ...)
    "**/*___jb_tmp___",         # JetBrains safe write
    "**/*___jb_old___",
    "**/.goutputstream-*",      # gedit, GIO
    "**/*.kate-swp",
    "**/.~lock.*#",             # LibreOffice
)


class ChangeKind(StrEnum):
    CREATED = "created"
    MODIFIED = "modified"
    DELETED = "deleted"
    MOVED = "moved"
    """Both ends of a rename are fed with this kind: the old path and the new one."""
    OVERFLOW = "overflow"
    """The operating system dropped events; what changed is unknown, so rescan everything."""


class GlobSet:
    """Many project globs compiled into one expression, matching exactly as `matches_any` does.

    A burst of a thousand events is checked against twenty-odd ignore globs: one regex call per
    path instead of twenty keeps that under a few milliseconds.
    """

    def __init__(self, patterns: Iterable[str]):
        self.patterns = tuple(patterns)
        source = "|".join(f"(?:{glob_regex(p)})" for p in self.patterns)
        self._match = re.compile(source).match if self.patterns else None

    def __call__(self, path: str) -> bool:
        return self._match is not None and self._match(path) is not None

    def __repr__(self) -> str:
        return f"GlobSet({self.patterns!r})"


@lru_cache(maxsize=256)
def glob_set(patterns: tuple[str, ...]) -> GlobSet:
    return GlobSet(patterns)


@dataclass(frozen=True)
class ChangeSet:
    """One debounced change: every path a burst of events touched."""

    paths: tuple[str, ...]
    """Relative to the project, forward slashes, sorted; files and folders."""
    folders: tuple[str, ...] = ()
    """The paths that were folders (created, deleted or renamed as a whole): whatever was or
    is under them changed too."""
    kinds: dict[str, str] = field(default_factory=dict)
    """The last kind of event seen for each path."""
    events: int = 0
    """How many raw events the burst had (ignored ones not counted)."""
    rescan: bool = False
    """Events were lost: compare every file, not only `paths`."""
    first_event_at: float = 0.0
    last_event_at: float = 0.0


class Debouncer:
    """Folds bursts of file events into one ChangeSet once `quiet_s` passes without an event.

    Time is whatever the caller passes in (the service uses time.monotonic()), so tests drive it
    by hand. `max_wait_s`, when set, makes a change due even while events keep coming (off by
    default: a slow copy of a large file would otherwise start a run on half a file).
    """

    def __init__(self, quiet_s: float, ignores: Iterable[str] = (), max_wait_s: float | None = None):
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self.set_ignores(ignores)
        self._reset()

    def _reset(self) -> None:
        self._kinds: dict[str, str] = {}
        self._folders: set[str] = set()
        self._events = 0
        self._rescan = False
        self._first: float | None = None
        self._last = 0.0

    def set_ignores(self, ignores: Iterable[str]) -> None:
        self._ignored = glob_set(tuple(ignores) + WATCH_IGNORES)

    def ignored(self, path: str, is_dir: bool = False) -> bool:
        return self._ignored(path) or (is_dir and self._ignored(path + "/"))

    @property
    def pending(self) -> bool:
        return self._first is not None

    def feed(self, path: str, kind: str, now: float, is_dir: bool = False) -> bool:
        """Take one event; False when it is ignored (and so does not extend the quiet period)."""
        if kind == ChangeKind.OVERFLOW:
            self._rescan = True
        elif not path or self.ignored(path, is_dir):
            return False
        else:
            self._kinds[path] = str(kind)
            if is_dir:
                self._folders.add(path)
        self._events += 1
        if self._first is None:
            self._first = now
        self._last = max(self._last, now)
        return True

    def deadline(self) -> float | None:
        """When the pending change becomes due, if nothing else arrives; None if none pending."""
        if self._first is None:
            return None
        due = self._last + self.quiet_s
        if self.max_wait_s is not None:
            due = min(due, self._first + self.max_wait_s)
        return due

    def due(self, now: float) -> ChangeSet | None:
        """The pending change if its quiet period is over (and forget it); else None."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        change = ChangeSet(
            paths=tuple(sorted(self._kinds)), folders=tuple(sorted(self._folders)), kinds=dict(self._kinds),
            events=self._events, rescan=self._rescan, first_event_at=self._first or 0.0,
            last_event_at=self._last,
        )
        self._reset()
        return change


def stage_inputs_matcher(manifest: Manifest, params_files: tuple[str, ...] = ()) -> GlobSet:
    """Matches every path some stage reads (or that changes every stage: manifest, requirements);
    `params_files`: the files stages read keys of (workbench.core.params_keys)."""
    patterns = [MANIFEST_NAME, *params_files] + [p for spec in manifest.stages.values() for p in spec.inputs]
    patterns += contract_patterns(manifest)
    if manifest.environment.requirements:
        patterns.append(manifest.environment.requirements)
    return glob_set(tuple(patterns))


def contract_patterns(manifest: Manifest) -> list[str]:
    """The data contracts beside the data files (`<data file>.contract.toml`, docs/contracts.md)."""
    return [p.removeprefix("./") + CONTRACT_SUFFIX for p in manifest.data.paths]


def changes_everything(manifest: Manifest, path: str) -> bool:
    """The manifest itself, the requirements the environment image is built from, or a data
    contract (checked before every stage: a run of all of them, reused where unchanged)."""
    return path == MANIFEST_NAME or (bool(manifest.environment.requirements)
                                     and path == manifest.environment.requirements.removeprefix("./")) \
        or (path.endswith(CONTRACT_SUFFIX) and glob_set(tuple(contract_patterns(manifest)))(path))


def affected_stages(manifest: Manifest, changed_paths: Iterable[str], keys_changed: Iterable[str] = ()) -> set[str]:
    """The stages whose declared inputs match a changed path, or whose params keys changed value
    (`keys_changed`, see params_changed), plus everything downstream of them.

    A change to the manifest (reloaded by the caller) or to the environment's requirements
    affects every stage.
    """
    paths = list(changed_paths)
    if any(changes_everything(manifest, p) for p in paths):
        return set(manifest.stages)
    direct = set(keys_changed) & set(manifest.stages)
    for name, spec in manifest.stages.items():
        reads = glob_set(spec.inputs)
        if any(reads(p) for p in paths):
            direct.add(name)
    return downstream_of({n: s.depends_on for n, s in manifest.stages.items()}, direct)


def params_changed(before: Mapping[str, object], after: Mapping[str, object]) -> set[str]:
    """The stages whose resolved params keys (values, or the problem reading them) differ: an
    edit of `[evaluate] threshold` changes evaluate's, not train's, so only evaluate reruns."""
    return {stage for stage in before.keys() | after.keys() if before.get(stage) != after.get(stage)}


def content_changed(before: dict[str, str], after: dict[str, str | None]) -> list[str]:
    """The paths of `after` ({path: sha256, or None when gone}) whose content differs from `before`."""
    return sorted(p for p, digest in after.items() if before.get(p) != digest)


@dataclass(frozen=True)
class RunRequest:
    """What the next run of a project must cover."""

    stages: frozenset[str] | None
    """Target stages (their upstream comes along in the run); None: the whole pipeline."""
    trigger: Trigger = Trigger.WATCH
    changed_paths: tuple[str, ...] = ()
    overrides: tuple[tuple[str, str], ...] = ()
    """(project path, file) pairs the run's snapshot holds instead of the project's files: a
    drift retrain's training data (workbench/services/drift.py)."""

    def merged_with(self, newer: "RunRequest") -> "RunRequest":
        """One request covering both. A superseded run's request is merged into the one that
        replaces it, so a later change that affects fewer stages cannot drop what the cancelled
        run was about to redo (nor a drift retrain its training data, nor its trigger)."""
        stages = None if self.stages is None or newer.stages is None else self.stages | newer.stages
        paths = tuple(dict.fromkeys(self.changed_paths + newer.changed_paths))
        overrides = tuple({**dict(self.overrides), **dict(newer.overrides)}.items())
        trigger = self.trigger if self.overrides and not newer.overrides else newer.trigger
        return RunRequest(stages, trigger, paths, overrides)

    def targets(self, manifest: Manifest) -> list[str] | None:
        """The target stages in run order, for `session.run(stages=...)`; None for every stage.

        Stages the (reloaded) manifest no longer has are dropped; if that leaves none, or all,
        the whole pipeline runs.
        """
        if self.stages is None:
            return None
        order = manifest.stage_order()
        targets = [s for s in order if s in self.stages]
        return targets if targets and len(targets) < len(order) else None

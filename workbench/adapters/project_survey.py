"""Which files make up a project: a walk of its folder, with the rules for its symlinks.

A project symlink is followed as its target's content while the target stays in the project;
one that leaves the project is refused unless the manifest lists it (`[project]
external_links`), and none may lead into the workspace's state folder or loop back on itself.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from workbench.core.errors import WorkbenchError
from workbench.core.planning import matches_any

ALWAYS_SKIPPED_DIRS = {".workbench", ".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints"}


class ProjectLinkError(WorkbenchError):
    """A project symlink leads outside the project (or in a loop) and the manifest does not list it."""


@dataclass
class ProjectScan:
    files: dict[str, os.stat_result]
    """Project-relative path -> the stat of the file it names (a symlink's target's)."""
    refused: list[str]
    """Symlinks not followed, each as `link -> target (why)`."""
    dangling: list[str] = field(default_factory=list)
    """Symlinks whose target is not there (or cannot be reached), each as `link -> target (why)`:
    left out of the snapshot, so the run says so (a stage would fail later on a missing file)."""


def scan_project(root: Path, ignores: tuple[str, ...], external: tuple[str, ...] = (),
                 forbidden: tuple[Path, ...] = ()) -> dict[str, os.stat_result]:
    """Every regular file under `root` that no ignore glob matches, with its stat.

    Symlinks are followed as their target's content while the target stays in the project, or
    in what `external` (the manifest's `[project] external_links`) lists; other links are left
    out here (SnapshotStore.take refuses them with survey_project's report)."""
    return survey_project(root, ignores, external, forbidden).files


def survey_project(root: Path, ignores: tuple[str, ...], external: tuple[str, ...] = (),
                   forbidden: tuple[Path, ...] = ()) -> ProjectScan:
    """scan_project's files, and the symlinks it refused to follow. `forbidden`: folders no
    link may lead into even when listed (the workspace's state folder)."""
    root_real = os.path.realpath(root)
    allowed = [root_real] + [os.path.realpath(os.path.join(root_real, rel)) for rel in external]
    closed = [os.path.realpath(p) for p in forbidden]
    scan = ProjectScan({}, [])

    def walk(folder: str, rel_dir: str, ancestors: tuple[str, ...]) -> None:
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError:
            return  # unreadable or removed since it was listed: as os.walk, not there
        for entry in entries:
            rel = rel_dir + entry.name
            try:
                is_link = entry.is_symlink()
                is_dir = not is_link and entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if entry.name not in ALWAYS_SKIPPED_DIRS and not matches_any(rel + "/", ignores):
                    real = os.path.join(ancestors[-1], entry.name)
                    walk(entry.path, rel + "/", ancestors + (real,))
                continue
            if matches_any(rel, ignores) or (is_link and matches_any(rel + "/", ignores)):
                continue
            if not is_link:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed since the folder was listed (an editor's temp file): not there
                if stat.S_ISREG(st.st_mode):
                    scan.files[rel] = st
                continue
            target = os.path.realpath(entry.path)
            try:
                st = os.stat(target)
            except OSError as exc:
                why = "its target does not exist" if isinstance(exc, FileNotFoundError) else \
                    f"its target cannot be reached: {exc.strerror or exc}"
                scan.dangling.append(f"{rel} -> {_readlink(entry.path)} ({why})")
                continue
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                continue  # `log -> /dev/null`: nothing a snapshot would copy, wherever it points
            refusal = _link_refusal(target, st, allowed, closed, ancestors)
            if refusal:
                scan.refused.append(f"{rel} -> {_readlink(entry.path)} ({refusal})")
            elif stat.S_ISDIR(st.st_mode):
                walk(target, rel + "/", ancestors + (target,))
            elif stat.S_ISREG(st.st_mode):
                scan.files[rel] = st

    walk(str(root), "", (root_real,))
    scan.files = dict(sorted(scan.files.items()))
    return scan


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _link_refusal(target: str, st: os.stat_result, allowed: list[str], closed: list[str],
                  ancestors: tuple[str, ...]) -> str:
    """Why a project symlink to `target` is not followed, or ""."""
    if any(_inside(target, folder) for folder in closed):
        return "into the workspace's state folder"
    if not any(_inside(target, folder) for folder in allowed):
        return "outside the project"
    if stat.S_ISDIR(st.st_mode) and any(_inside(folder, target) for folder in ancestors):
        return "a loop: it leads back to a folder that contains it"
    return ""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def refusal_message(project_dir: Path, refused: list[str]) -> str:
    """Every refused link in one message (showing a few made a user fix them a few at a time),
    and the external_links line that would allow those leaving the project."""
    listed = ", ".join(f'"{r.split(" -> ")[0]}"' for r in refused if r.endswith("(outside the project)"))
    allow = (f"; if the data is meant to live elsewhere, list the link{'s' if ', ' in listed else ''} in "
             f"workbench.toml: [project] external_links = [{listed}]") if listed else ""
    links = "symlink" if len(refused) == 1 else f"{len(refused)} symlinks:"
    return f"{project_dir}: {links} {'; '.join(refused)}. A snapshot holds only the project's own files{allow}"


def dangling_message(dangling: list[str]) -> str:
    """The run's warning about links left out of its snapshot, all of them in one line."""
    links = "symlink" if len(dangling) == 1 else f"{len(dangling)} symlinks:"
    return (f"{links} {'; '.join(dangling)}: left out of the snapshot, so a stage reading "
            f"{'it' if len(dangling) == 1 else 'them'} will not find {'it' if len(dangling) == 1 else 'them'}")

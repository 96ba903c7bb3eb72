"""Deploy pointers: the folder a serving process reads an alias's model from.

    .workbench/deploy/<project>/
        production -> releases/3-1f2e.../      (a symlink, switched atomically)
        staging    -> releases/4-9ab0.../
        releases/3-1f2e.../model.txt           (a copy of the version's model file)
        releases/3-1f2e.../metadata.json       (version, run, hashes, who promoted it and when)

A release folder is written completely (model copied and verified against its sha256,
metadata written and fsynced) before anything points at it; then a new symlink is made under a
temporary name and renamed over the alias, which POSIX makes atomic. A reader that resolves the
alias once (`os.path.realpath`) and reads both files from there never sees a half-written model
or a model with another version's metadata. Old releases are kept for a while (a reader may
still be in one) and then pruned.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from workbench.adapters.disk_writes import disk_error, fsync_dir
from workbench.adapters.regular_files import NotRegularFile, hash_file, open_regular
from workbench.adapters.locks import file_lock
from workbench.core.errors import WorkbenchError

METADATA = "metadata.json"
RELEASES = "releases"
KEEP_UNREFERENCED = 5
"""Releases no alias points at that are kept (newest first) for readers still in them."""
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Release:
    path: Path
    model_file: str
    """The model file's name inside the release folder."""
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelCheck:
    ok: bool
    problem: str = ""


class DeployPointers:
    def __init__(self, root: Path):
        self.root = root
        """`.workbench/deploy`"""

    def project_dir(self, project: str) -> Path:
        return self.root / project

    @contextmanager
    def locked(self, project: str, timeout_s: float = 60.0) -> Iterator[None]:
        """Serialise promotions of one project, so pointers switch in the order they committed."""
        with file_lock(self.project_dir(project) / ".lock", timeout_s, f"deploying {project}"):
            yield

    # -- checking and preparing -------------------------------------------------------------

    @staticmethod
    def check(model_path: str, sha256: str, version: int, run_id: int) -> ModelCheck:
        """Is the version's model file still there, with the bytes its run recorded?"""
        try:
            digest = hash_file(Path(model_path), follow=False)  # not through a symlink (see prepare)
        except FileNotFoundError:
            return ModelCheck(False, f"the model file of version {version} is gone: {model_path} "
                                     f"(run {run_id}'s outputs were deleted)")
        except NotRegularFile as exc:
            return ModelCheck(False, f"the model file of version {version} is not a file of its own: {exc}")
        except OSError as exc:
            return ModelCheck(False, f"cannot read the model file of version {version}, {model_path}: {exc.strerror}")
        if digest != sha256:
            return ModelCheck(False, f"the model file of version {version} changed since run {run_id} wrote it: "
                                     f"{model_path} has sha256 {digest[:12]}, the run recorded {sha256[:12]}")
        return ModelCheck(True)

    def prepare(self, project: str, version: int, run_id: int, model_path: str,
                sha256: str) -> tuple[Release | None, ModelCheck]:
        """Copy the model into a new release folder, verifying its sha256 while copying."""
        releases = self.project_dir(project) / RELEASES
        folder = releases / f"{version}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
        source = Path(model_path)
        name = source.name if source.name != METADATA else "model-" + METADATA
        try:
            folder.mkdir(parents=True)
            digest = hashlib.sha256()
            size = 0
            # Never through a symlink: a run's outputs are regular files, and a link put in
            # the model's place must not copy what it points at into a release.
            src_fd, _ = open_regular(source)
            with open(src_fd, "rb") as src, open(folder / name, "wb") as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        except FileNotFoundError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if exc.filename and Path(exc.filename) == source:
                return None, self.check(model_path, sha256, version, run_id)
            raise _disk_error(exc, folder) from None
        except NotRegularFile as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return None, ModelCheck(False, f"the model file of version {version} is not a file of its own: {exc}")
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise _disk_error(exc, folder) from None
        if digest.hexdigest() != sha256:
            shutil.rmtree(folder, ignore_errors=True)
            return None, ModelCheck(False, f"the model file of version {version} changed since run {run_id} wrote "
                                           f"it: {model_path} has sha256 {digest.hexdigest()[:12]}, the run "
                                           f"recorded {sha256[:12]}")
        os.chmod(folder / name, 0o444)
        return Release(folder, name, sha256, size), ModelCheck(True)

    @staticmethod
    def discard(release: Release | None) -> None:
        if release is not None:
            shutil.rmtree(release.path, ignore_errors=True)

    # -- switching ---------------------------------------------------------------------------

    def activate(self, project: str, alias: str, release: Release, metadata: dict[str, Any],
                 documents: dict[str, str] | None = None) -> Path:
        """Write the release's documents (the model card: `model-card.md`, `model-card.json`)
        and its metadata, then point `alias` at it in one rename."""
        meta = dict(metadata, model_file=release.model_file, sha256=release.sha256, size=release.size)
        tmp = release.path / f".{METADATA}.tmp"
        try:
            for name, text in (documents or {}).items():
                if name in (METADATA, release.model_file) or "/" in name or name.startswith("."):
                    raise WorkbenchError(f"a release document may not be named {name!r}")
                part = release.path / f".{name}.tmp"
                with open(part, "w", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(part, release.path / name)
            with open(tmp, "w") as fh:
                json.dump(meta, fh, indent=2, sort_keys=True, default=str)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, release.path / METADATA)
            fsync_dir(release.path)
            link = self.project_dir(project) / alias
            temp_link = link.with_name(f".{alias}.{secrets.token_hex(4)}.tmp")
            os.symlink(os.path.join(RELEASES, release.path.name), temp_link)
            os.replace(temp_link, link)
            fsync_dir(link.parent)
        except OSError as exc:
            raise _disk_error(exc, release.path) from None
        self.prune(project)
        return link

    def current(self, project: str, alias: str) -> dict[str, Any] | None:
        """The metadata the alias points at now, or None when it points nowhere."""
        link = self.project_dir(project) / alias
        try:
            folder = Path(os.path.realpath(link))
            return json.loads((folder / METADATA).read_text()) | {"path": str(folder)}
        except (OSError, ValueError):
            return None

    def prune(self, project: str) -> None:
        """Remove old releases no alias points at (keeping the newest few) and leftovers."""
        base = self.project_dir(project)
        releases = base / RELEASES
        try:
            entries = list(releases.iterdir())
        except OSError:
            return
        pointed = set()
        for link in base.iterdir():
            if link.is_symlink():
                pointed.add(Path(os.path.realpath(link)).name)
            elif link.name.endswith(".tmp") and link.name.startswith("."):
                link.unlink(missing_ok=True)  # a symlink a crashed switch left behind
        spare = sorted((e for e in entries if e.name not in pointed), key=_mtime, reverse=True)
        for old in spare[KEEP_UNREFERENCED:]:
            shutil.rmtree(old, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _disk_error(exc: OSError, where: Path) -> WorkbenchError:
    return disk_error(exc, f"the deploy folder {where}", retry="promote again")

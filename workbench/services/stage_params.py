"""The values of the params keys each stage names, read from a folder (a run's snapshot, or the
live project for the watcher)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from workbench.adapters.params_files import ParamsReader
from workbench.core.manifest import Manifest
from workbench.core.params_keys import (
    DEFAULT_PARAMS_FILES, StageParams, default_params_file, params_files, resolve_stage_params,
)


def project_params_file(manifest: Manifest, folder: Path, present: Collection[str] | None = None
                        ) -> tuple[str | None, str | None]:
    """(the file a bare key reads, or None with why not); `present`: the folder's files, when known."""
    if present is None:
        present = [name for name in DEFAULT_PARAMS_FILES if (folder / name).is_file()]
    return default_params_file(manifest.params_file, present)


def resolve_params(manifest: Manifest, folder: Path, present: Collection[str] | None = None,
                   stages: Collection[str] | None = None) -> dict[str, StageParams]:
    """Each stage's (or each of `stages`') resolved keys; a stage that names none gets an empty
    StageParams. Each file is read once."""
    default, why_not = project_params_file(manifest, folder, present)
    reader = ParamsReader(folder, set(present) if present is not None else None)
    return {name: resolve_stage_params(name, spec.params, default, why_not, reader)
            for name, spec in manifest.stages.items() if stages is None or name in stages}


def key_params_files(manifest: Manifest) -> tuple[str, ...]:
    """Every file a stage's keys may read: the named ones, `[project] params`, and the default
    candidates (creating a second candidate changes which file a bare key reads)."""
    if not any(spec.params for spec in manifest.stages.values()):
        return ()
    named = [f for spec in manifest.stages.values() for f in params_files(spec.params, None)]
    candidates = [manifest.params_file] if manifest.params_file else list(DEFAULT_PARAMS_FILES)
    return tuple(dict.fromkeys(f.removeprefix("./") for f in [*named, *candidates]))
